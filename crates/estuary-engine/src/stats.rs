//! TODO(owner): stats
