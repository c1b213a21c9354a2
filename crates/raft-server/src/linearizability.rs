//! A linearizability checker for histories of per-key register operations.
