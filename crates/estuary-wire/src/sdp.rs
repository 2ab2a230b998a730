//! TODO(owner): sdp
