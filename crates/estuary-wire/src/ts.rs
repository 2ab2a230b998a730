//! TODO(owner): ts
