//! TODO(owner): srt
