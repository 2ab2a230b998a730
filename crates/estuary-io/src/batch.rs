//! TODO(owner): batch
