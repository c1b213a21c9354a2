//! An HTTP client for the API, shared by `raftctl` and `raft-bench`.
