//! Snapshots with real processes: the log is compacted behind automatic and
//! on-demand snapshots, a member added afterwards catches up by a streamed snapshot,
//! and a member restarts from its snapshot plus the log tail.

use std::time::{Duration, Instant};

use raft_server::api::AddMemberRequest;
use raft_server::client::Consistency;

use crate::cluster::{PATIENCE, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_catches_up_by_snapshot_after_compaction() {
    let mut cluster = TestCluster::with_options(3, 1, "snapshot_every_entries = 20");
    for i in 0..3 {
        cluster.start(i);
    }
    let leader = cluster.wait_leader().await;
    let client = cluster.any_client();
    for i in 0..100 {
        client
            .put(format!("k{i:03}"), format!("v{i}"))
            .await
            .expect("put");
    }
    let snapshot = cluster
        .client(leader)
        .snapshot()
        .await
        .expect("snapshot on demand");
    assert!(snapshot.index >= 100, "{snapshot:?}");
    let status = cluster.client(leader).status().await.expect("status");
    assert!(
        status.snapshot_index > 0,
        "the leader's log was compacted: {status:?}"
    );

    // Member 4 joins after compaction: the entries it needs are gone from every log.
    cluster.start(3);
    let new = &cluster.members[3];
    let request = AddMemberRequest {
        id: new.id,
        peer_addr: new.peer_addr.to_string(),
        client_addr: new.client_addr.to_string(),
    };
    client.add_member(&request).await.expect("add learner");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(found)) = cluster.client(3).get("k099", Consistency::Stale).await {
            assert_eq!(found.value, "v99".as_bytes());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new member never caught up\nnew member:\n{}\nleader:\n{}",
            cluster.log_tail(3),
            cluster.log_tail(leader)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let joined = cluster.client(3).status().await.expect("status");
    assert!(
        joined.snapshot_index > 0,
        "the new member caught up by snapshot: {joined:?}"
    );
    let range = cluster.client(3).range("k", None).await.expect("range");
    assert_eq!(range.kvs.len(), 100);

    // A member restarts from its snapshot plus the log tail.
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    cluster.kill9(follower);
    client.put("after-restart", "yes").await.expect("put");
    cluster.start(follower);
    cluster.wait_leader().await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(found)) = cluster
            .client(follower)
            .get("after-restart", Consistency::Stale)
            .await
        {
            assert_eq!(found.value, "yes".as_bytes());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted member never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = cluster
        .client(follower)
        .get("k000", Consistency::Linearizable)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.value, "v0".as_bytes());
}

/// Compacting the log behind a snapshot can be slow (the failpoint makes it take 3 s,
/// several election timeouts). It runs beside the leader's loop, so heartbeats keep
/// flowing, no follower starts an election and clients are served meanwhile.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failpoint_a_slow_snapshot_does_not_stall_the_leader() {
    let mut cluster = TestCluster::new(3);
    cluster.set_env("FAILPOINTS", "snapshot-compact=sleep(3000)");
    cluster.start_all();
    let leader = cluster.wait_leader().await;
    let client = cluster.client(leader);
    for i in 0..20 {
        client.put(format!("k{i}"), "v").await.expect("put");
    }
    let before = client.status().await.expect("status");
    let snapshot = tokio::spawn({
        let client = cluster.client(leader);
        async move { client.snapshot().await }
    });
    let started = Instant::now();
    let mut writes = 0;
    while !snapshot.is_finished() {
        assert!(started.elapsed() < PATIENCE, "the snapshot never finished");
        if client.put(format!("during{writes}"), "v").await.is_ok() {
            writes += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    snapshot.await.expect("join").expect("snapshot");
    assert!(
        writes > 0,
        "no write was served while the snapshot was taken"
    );
    for i in 0..3 {
        let status = cluster.client(i).status().await.expect("status");
        assert_eq!(
            (status.term, status.leader_id),
            (before.term, before.leader_id),
            "member {i} saw an election while the leader took a snapshot"
        );
    }
}
