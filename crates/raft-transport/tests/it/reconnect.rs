//! Connections come back: a restarted member is redialed and traffic resumes.

use std::time::Duration;

use raft_core::NodeId;
use raft_transport::Transport;

use crate::support::{Cluster, HANG_GUARD, config, heartbeat, message_within, next_message};

#[tokio::test]
async fn a_restarted_member_is_reconnected_and_traffic_resumes() {
    let mut cluster = Cluster::start(3, |_| {});
    cluster.transport(1).send(heartbeat(1, 2, 1)).unwrap();
    assert_eq!(next_message(cluster.events(2)).await, heartbeat(1, 2, 1));
    let address = cluster.addr(2);
    let members = cluster.transport(2).members();

    // Member 2 stops; its socket is released once the endpoint is idle.
    let old = cluster.transports.remove(&NodeId(2)).unwrap();
    cluster.incoming.remove(&NodeId(2));
    old.shutdown().await;
    drop(old);

    // It comes back on the same address (retry while the port is still held).
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    let (restarted, mut events) = loop {
        let mut restarted = config(&cluster.pki, NodeId(2));
        restarted.listen = address;
        restarted.members = members.clone();
        match Transport::start(restarted) {
            Ok(started) => break started,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot rebind: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Member 1 keeps sending (as its heartbeat timer would) until one gets through.
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    let mut commit = 2;
    let received = loop {
        let _ = cluster.transport(1).send(heartbeat(1, 2, commit));
        if let Some(message) = message_within(&mut events, Duration::from_millis(100)).await {
            break message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "traffic never resumed"
        );
        commit += 1;
    };
    assert_eq!(received.from, NodeId(1));
    let stats = cluster.transport(1).stats();
    assert!(stats.peers[&NodeId(2)].connects >= 2);
    assert!(stats.peers[&NodeId(2)].connected);

    // And the restarted member reaches the others.
    restarted.send(heartbeat(2, 3, 9)).unwrap();
    assert_eq!(next_message(cluster.events(3)).await, heartbeat(2, 3, 9));
}
