//! The MIT 6.824 Raft lab scenarios (3A-3C), on the simulator, bounded in ticks and
//! messages instead of wall time.
