//! TODO(owner): s302m
