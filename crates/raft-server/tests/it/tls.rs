//! Peer authentication with real processes: a member whose certificate chains to
//! another CA is refused, even when its id is in the membership and its certificate
//! names that id, and the cluster keeps serving without it.

use std::process::Command;
use std::time::{Duration, Instant};

use raft_server::api::AddMemberRequest;
use raft_server::client::Consistency;

use crate::cluster::{PATIENCE, TestCluster};

/// The value of the sample `series` (name and labels, exactly as exposed) in a
/// Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_another_cas_certificate_is_refused() {
    let mut cluster = TestCluster::with_spares(3, 1);
    for i in 0..3 {
        cluster.start(i);
    }
    let leader = cluster.wait_leader().await;
    let client = cluster.any_client();
    client.put("before", "1").await.expect("put");

    // Member 4 gets a certificate that names it (raft://member/4) but comes from a
    // second CA, which is also the only CA it trusts.
    let other = cluster.dir().join("other-ca");
    let certs = Command::new(env!("CARGO_BIN_EXE_raftd"))
        .args(["certs", "--nodes", "4", "--out"])
        .arg(&other)
        .output()
        .expect("run raftd certs");
    assert!(
        certs.status.success(),
        "raftd certs: {}",
        String::from_utf8_lossy(&certs.stderr)
    );
    cluster.use_certs(3, &other);
    cluster.start(3);
    let rogue = &cluster.members[3];
    client
        .add_member(&AddMemberRequest {
            id: rogue.id,
            peer_addr: rogue.peer_addr.to_string(),
            client_addr: rogue.client_addr.to_string(),
        })
        .await
        .expect("add member 4 as a learner");

    // The leader now replicates to member 4, and must refuse it for its certificate:
    // wait until it has counted that refusal.
    let refused = "raft_peer_connections_refused_total{reason=\"untrusted_certificate\"}";
    let deadline = Instant::now() + PATIENCE;
    let metrics = loop {
        let metrics = cluster.metrics(leader).await;
        if sample(&metrics, refused).is_some_and(|count| count > 0.0) {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never refused member 4's certificate:\n{metrics}\n\
             member 4's log:\n{}",
            cluster.log_tail(3)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(&metrics, "raft_peer_connected{peer=\"4\"}"),
        Some(0.0),
        "the leader is connected to member 4:\n{metrics}"
    );

    // The cluster keeps committing without member 4 ...
    let after = client.put("after", "2").await.expect("put after refusal");
    let got = cluster
        .client((leader + 1) % 3)
        .get("after", Consistency::Linearizable)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.mod_revision, after.revision);
    // ... and member 4 has received nothing: no leader, no entry, no data.
    let status = cluster.client(3).status().await.expect("member 4's status");
    assert_eq!(
        (status.leader_id, status.commit_index, status.applied_index),
        (None, 0, 0),
        "member 4 heard from the cluster: {status:?}"
    );
    let (ready, _) = cluster.raw(3, "GET", "/readyz", Vec::new()).await;
    assert_eq!(ready, 503, "member 4 says it is ready");
    let stale = cluster.client(3).get("before", Consistency::Stale).await;
    assert!(
        !matches!(stale, Ok(Some(_))),
        "member 4 serves the cluster's data: {stale:?}"
    );
}
