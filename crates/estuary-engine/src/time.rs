//! TODO(owner): time
