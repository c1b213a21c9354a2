//! Linearizable reads and leader transfer on the simulator: scripted cases, and the
//! teeth that show the read check catches a read path without its quorum round.

use bytes::Bytes;
use raft_core::{Mutation, ReadMode};

use crate::sim::{Cluster, Faults, TICK};

/// A leader stalled (SIGSTOP) for six election timeouts while the others elect a new
/// leader that commits a write. The simulator has the old leader serve a lease read
/// as the first thing after it resumes, before any tick or message: its clock says
/// the lease ran out, so the read is not served at the old index. Before the stall,
/// with ticks and heartbeats flowing, lease reads are served at once.
#[test]
fn stalled_leader_serves_no_stale_lease_read() {
    let mut cluster = Cluster::new(3, 11);
    cluster.run_ticks(60);
    let old = cluster.leader().expect("a leader within 60 ticks");
    assert!(cluster.one(Bytes::from("before"), 3, 100).is_some());
    cluster.run_ticks(4); // a heartbeat round is answered
    let served = cluster.reads_served;
    cluster.read(old, ReadMode::Lease);
    assert_eq!(
        cluster.reads_served,
        served + 1,
        "with ticks and answers flowing a lease read is served at once"
    );

    cluster.stall(old, 60 * TICK);
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let mut new = None;
    for _ in 0..8 {
        cluster.run_ticks(5);
        new = cluster.leader_among(&others).filter(|&l| l != old);
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the others elect a new leader during the stall");
    let write = cluster
        .propose(new, Bytes::from("after"))
        .expect("the new leader takes the write");
    cluster.run_ticks(5);
    assert!(cluster.n_applied(write.index).0 >= 2, "the write committed");
    assert!(cluster.is_stalled(old), "still stalled");
    assert!(
        cluster.is_leader(old),
        "the stalled leader still thinks it leads"
    );

    let answered = cluster.reads_served + cluster.reads_retried;
    cluster.run_ticks(60);
    assert!(!cluster.is_stalled(old));
    assert!(
        cluster.reads_served + cluster.reads_retried > answered,
        "the read at resume was answered"
    );
    assert_eq!(cluster.violations, Vec::<String>::new());
}

/// A leader cut off from the rest keeps believing it leads (check-quorum off); the
/// majority elects a new leader that commits a write. A read at the old leader
/// started after that write was acknowledged must not be answered with an older
/// index. Returns the violations the simulator saw.
fn read_at_deposed_leader(mutation: Mutation) -> Vec<String> {
    let mut cluster = Cluster::with_tuning(5, 7, mutation, |config| config.check_quorum = false);
    cluster.run_ticks(60);
    let old = cluster.leader().expect("a leader within 60 ticks");
    assert!(cluster.one(Bytes::from("before"), 5, 100).is_some());
    cluster.isolate(old);
    let others: Vec<usize> = (0..5).filter(|&i| i != old).collect();
    let mut new = None;
    for _ in 0..100 {
        cluster.run_ticks(5);
        new = cluster.leader_among(&others).filter(|&l| l != old);
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the majority elects a new leader");
    assert!(
        cluster.is_leader(old),
        "without check-quorum the old leader keeps its role"
    );
    let write = cluster
        .propose(new, Bytes::from("after"))
        .expect("new leader takes the write");
    cluster.run_ticks(20);
    let (applied, _) = cluster.n_applied(write.index);
    assert!(applied >= 3, "the write committed on the majority");
    cluster.read(old, ReadMode::Quorum);
    cluster.run_ticks(20);
    cluster.violations.clone()
}

#[test]
fn deposed_leader_never_answers_a_linearizable_read() {
    assert_eq!(read_at_deposed_leader(Mutation::None), Vec::<String>::new());
}

/// Teeth: serving reads without the quorum round is caught by the read check.
#[test]
fn simulator_catches_reads_without_quorum_round() {
    let violations = read_at_deposed_leader(Mutation::ReadWithoutQuorum);
    assert!(
        violations.iter().any(|v| v.contains("stale read")),
        "{violations:#?}"
    );
}

#[test]
fn new_leader_serves_reads_only_after_committing_in_its_term() {
    let mut cluster = Cluster::new(3, 11);
    cluster.run_ticks(60);
    let leader = cluster.leader().expect("leader");
    // Reads at every member, in both modes, while writes flow.
    for round in 0..20u64 {
        cluster
            .one(Bytes::from(format!("w{round}")), 3, 100)
            .expect("write commits");
        for member in 0..3 {
            cluster.read(
                member,
                if round % 2 == 0 {
                    ReadMode::Quorum
                } else {
                    ReadMode::Lease
                },
            );
        }
        cluster.run_ticks(3);
    }
    cluster.run_ticks(20);
    assert!(cluster.violations.is_empty(), "{:#?}", cluster.violations);
    assert!(
        cluster.reads_served >= 55,
        "reads served: {}",
        cluster.reads_served
    );
    assert_eq!(cluster.leader(), Some(leader));
}

#[test]
fn leader_transfer_hands_over_and_refuses_proposals_meanwhile() {
    let mut cluster = Cluster::new(3, 5);
    cluster.run_ticks(60);
    let old = cluster.leader().expect("leader");
    assert!(cluster.one(Bytes::from("x"), 3, 100).is_some());
    let target = (old + 1) % 3;
    assert!(cluster.transfer(old, target));
    // While the transfer is in flight the old leader takes no proposals.
    assert!(cluster.propose(old, Bytes::from("during")).is_none() || !cluster.is_leader(old));
    cluster.run_ticks(30);
    assert_eq!(cluster.leader(), Some(target), "{}", cluster.describe());
    assert!(cluster.one(Bytes::from("y"), 3, 100).is_some());
    assert!(cluster.violations.is_empty(), "{:#?}", cluster.violations);
}

#[test]
fn leader_transfer_to_an_unreachable_member_times_out() {
    let mut cluster = Cluster::new(3, 9);
    cluster.run_ticks(60);
    let old = cluster.leader().expect("leader");
    let target = (old + 1) % 3;
    cluster.isolate(target);
    assert!(cluster.transfer(old, target));
    assert!(cluster.propose(old, Bytes::from("refused")).is_none());
    // After an election timeout the transfer is abandoned and proposals work again.
    cluster.run_ticks(25);
    assert!(cluster.is_leader(old));
    assert!(cluster.propose(old, Bytes::from("accepted")).is_some());
    cluster.reconnect(target);
    cluster.run_ticks(30);
    assert!(cluster.violations.is_empty(), "{:#?}", cluster.violations);
}

#[test]
fn reads_and_transfers_under_chaos() {
    for seed in 0..20 {
        let mut cluster = Cluster::new([3, 5][seed as usize % 2], 1000 + seed);
        cluster.faults = Faults {
            transfer_per_mille: 50,
            ..Faults::chaos()
        };
        cluster.set_chaos(true);
        cluster.run_ticks(300);
        cluster.check_liveness(1500).expect("converges");
        assert!(
            cluster.violations.is_empty(),
            "seed {seed}: {:#?}",
            cluster.violations
        );
        assert!(cluster.reads_served > 0, "seed {seed}: no read served");
    }
}
