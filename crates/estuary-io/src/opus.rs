//! TODO(owner): opus
