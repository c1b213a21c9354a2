//! Dead-peer detection: a user-space UDP proxy between two members goes silent; the
//! dialer's QUIC keep-alives go unanswered, the idle timeout declares the peer dead,
//! and when the proxy forwards again the connection is redialed and traffic resumes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use raft_core::NodeId;
use tokio::net::UdpSocket;

use crate::support::{Cluster, HANG_GUARD, eventually, heartbeat, message_within, next_message};

/// Forwards datagrams between one client and `server`, or drops them all while cut.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy(server: SocketAddr) -> Proxy {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let cut = cut.clone();
        async move {
            let mut client: Option<SocketAddr> = None;
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                if cut.load(Ordering::Relaxed) {
                    continue;
                }
                let to = if from == server {
                    match client {
                        Some(client) => client,
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    server
                };
                let _ = socket.send_to(&buf[..len], to).await;
            }
        }
    });
    Proxy { addr, cut, task }
}

#[tokio::test]
async fn a_silent_peer_is_detected_and_traffic_resumes_when_it_answers_again() {
    let mut cluster = Cluster::start(2, |config| {
        config.keep_alive_interval = Duration::from_millis(200);
        config.idle_timeout = Duration::from_secs(1);
        config.reconnect_backoff_max = Duration::from_millis(200);
    });
    let link = proxy(cluster.addr(2)).await;
    cluster.transport(1).add_member(NodeId(2), link.addr);
    cluster.transport(1).send(heartbeat(1, 2, 1)).unwrap();
    assert_eq!(next_message(cluster.events(2)).await, heartbeat(1, 2, 1));
    assert!(cluster.transport(1).stats().peers[&NodeId(2)].connected);

    // Partition: keep-alives go unanswered until the idle timeout closes the
    // connection.
    link.cut.store(true, Ordering::Relaxed);
    eventually("the dialer declares the silent peer dead", || {
        !cluster.transport(1).stats().peers[&NodeId(2)].connected
    })
    .await;

    // Heal: member 1 keeps sending, as its heartbeat timer would, until one arrives.
    link.cut.store(false, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    let mut commit = 2;
    loop {
        let _ = cluster.transport(1).send(heartbeat(1, 2, commit));
        if message_within(cluster.events(2), Duration::from_millis(100))
            .await
            .is_some()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "traffic never resumed"
        );
        commit += 1;
    }
    let stats = cluster.transport(1).stats();
    assert!(stats.peers[&NodeId(2)].connects >= 2);
}
