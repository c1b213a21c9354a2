//! Membership over the API with real processes: a fourth member joins as a learner
//! and catches up, is promoted, another member is removed, and leadership moves.

use std::time::{Duration, Instant};

use raft_server::api::AddMemberRequest;
use raft_server::client::Consistency;

use crate::cluster::{PATIENCE, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_learner_promote_remove_and_transfer() {
    let mut cluster = TestCluster::with_spares(3, 1);
    for i in 0..3 {
        cluster.start(i);
    }
    cluster.wait_leader().await;
    let client = cluster.any_client();
    for i in 0..20 {
        client
            .put(format!("k{i}"), format!("v{i}"))
            .await
            .expect("put");
    }
    // Member 4 starts empty and waits; then it is added as a learner.
    cluster.start(3);
    let new = &cluster.members[3];
    let request = AddMemberRequest {
        id: new.id,
        peer_addr: new.peer_addr.to_string(),
        client_addr: new.client_addr.to_string(),
    };
    client.add_member(&request).await.expect("add learner");
    let members = client.members().await.expect("members");
    assert!(
        members.members.iter().any(|m| m.id == 4 && !m.voter),
        "{members:?}"
    );
    // The learner catches up: its stale reads see the data.
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(found)) = cluster.client(3).get("k19", Consistency::Stale).await {
            assert_eq!(found.value, "v19".as_bytes());
            break;
        }
        assert!(Instant::now() < deadline, "the learner never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.promote_member(4).await.expect("promote");
    let members = client.members().await.expect("members");
    assert!(
        members.members.iter().any(|m| m.id == 4 && m.voter),
        "{members:?}"
    );
    // Remove member 1 (perhaps the leader); the rest keep serving.
    client.remove_member(1).await.expect("remove");
    let deadline = Instant::now() + PATIENCE;
    loop {
        // While a removed leader's successor is elected, reads may fail: retry.
        if let Ok(members) = cluster.client(3).members().await
            && members.members.iter().all(|m| m.id != 1)
        {
            break;
        }
        assert!(Instant::now() < deadline, "member 1 was never removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.kill9(0);
    let leader = cluster.wait_leader().await;
    let survivors = cluster.any_client();
    survivors
        .put("after", "removal")
        .await
        .expect("put after removal");
    // Hand leadership to another voter.
    let target = [1usize, 2, 3]
        .into_iter()
        .find(|&i| i != leader)
        .expect("a target");
    let moved = cluster
        .client(leader)
        .transfer_leader(Some(cluster.members[target].id))
        .await
        .expect("transfer");
    assert_eq!(moved.leader, cluster.members[target].id);
    let got = cluster
        .client(target)
        .get("after", Consistency::Linearizable)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.value, "removal".as_bytes());
}
