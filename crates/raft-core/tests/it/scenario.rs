//! Scenario scripts in etcd raft's datadriven style (`tests/testdata/*.txt`).
