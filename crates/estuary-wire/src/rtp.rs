//! TODO(owner): rtp
