//! TODO(owner): payload
