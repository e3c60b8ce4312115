//! impl-reuse (in progress)
