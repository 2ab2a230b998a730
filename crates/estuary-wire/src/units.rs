//! TODO(owner): units
