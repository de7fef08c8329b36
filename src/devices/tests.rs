//! Detection end to end.
