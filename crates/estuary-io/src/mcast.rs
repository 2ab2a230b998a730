//! TODO(owner): mcast
