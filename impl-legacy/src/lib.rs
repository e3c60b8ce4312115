//! impl-legacy (in progress)
