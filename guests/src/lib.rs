//! guests (in progress)
