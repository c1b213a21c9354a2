//! Property tests of the quorum and commit-index math against a naive reference.
