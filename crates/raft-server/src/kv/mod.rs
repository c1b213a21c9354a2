//! The key-value state machine: commands, revisions, transactions and snapshots.
