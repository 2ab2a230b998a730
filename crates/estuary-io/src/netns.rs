//! TODO(owner): netns
