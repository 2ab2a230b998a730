//! TODO(owner): jitter
