//! TODO(owner): tx
