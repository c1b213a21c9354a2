//! Concurrent clients doing reads, writes and compare-and-swaps against a 3-member
//! cluster while members are killed, paused and restarted; the recorded history
//! must be linearizable (per-key registers, `raft_server::linearizability`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::Signal;
use raft_server::api::{Compare, TxnOp, TxnRequest};
use raft_server::client::{Client, Consistency, Endpoint};
use raft_server::linearizability::{History, OpKind, Outcome};

use crate::cluster::TestCluster;

const KEYS: [&str; 3] = ["x", "y", "z"];

/// A small deterministic generator (the test's choices, not the system's).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

async fn client_loop(
    client_id: u64,
    endpoints: Vec<Endpoint>,
    history: History,
    stop: Arc<AtomicBool>,
) {
    let clients: Vec<Client> = endpoints
        .into_iter()
        .map(|e| Client::new(vec![e]).expect("client"))
        .collect();
    let mut rng = Lcg(client_id * 7919 + 1);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let client = &clients[rng.next(clients.len() as u64) as usize];
        let key = KEYS[rng.next(KEYS.len() as u64) as usize];
        let value = Bytes::from(format!("c{client_id}-{n}"));
        match rng.next(10) {
            0..=4 => {
                let id = history.invoke(client_id, key, OpKind::Read);
                let outcome = match client.get(key, Consistency::Linearizable).await {
                    Ok(found) => Outcome::ReadValue(found.map(|f| f.value)),
                    Err(_) => Outcome::Unknown,
                };
                history.complete(id, outcome);
            }
            5..=7 => {
                let id = history.invoke(client_id, key, OpKind::Write(value.clone()));
                let outcome = match client.put(key, value).await {
                    Ok(_) => Outcome::WriteOk,
                    Err(_) => Outcome::Unknown,
                };
                history.complete(id, outcome);
            }
            _ => {
                // Compare-and-swap from the value this client last saw (or absent).
                let expected = match client.get(key, Consistency::Stale).await {
                    Ok(found) => found.map(|f| f.value),
                    Err(_) => continue,
                };
                let compare = match &expected {
                    Some(v) => Compare {
                        key: key.into(),
                        value: Some(String::from_utf8_lossy(v).into_owned()),
                        mod_revision: None,
                        exists: None,
                    },
                    None => Compare {
                        key: key.into(),
                        value: None,
                        mod_revision: None,
                        exists: Some(false),
                    },
                };
                let request = TxnRequest {
                    compare: vec![compare],
                    success: vec![TxnOp::Put {
                        key: key.into(),
                        value: String::from_utf8_lossy(&value).into_owned(),
                    }],
                    failure: vec![],
                };
                let id = history.invoke(
                    client_id,
                    key,
                    OpKind::CompareAndSwap {
                        expected,
                        new: value,
                    },
                );
                let outcome = match client.txn(&request).await {
                    Ok(answer) => Outcome::CasResult(answer.succeeded),
                    Err(_) => Outcome::Unknown,
                };
                history.complete(id, outcome);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_crashes_and_pauses_are_linearizable() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster.wait_leader().await;
    let endpoints: Vec<Endpoint> = (0..3).map(|i| cluster.endpoint(i)).collect();
    let history = History::new();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (1..=4)
        .map(|c| {
            tokio::spawn(client_loop(
                c,
                endpoints.clone(),
                history.clone(),
                Arc::clone(&stop),
            ))
        })
        .collect();
    let mut rng = Lcg(42);
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let victim = rng.next(3) as usize;
        if round % 2 == 0 {
            cluster.kill9(victim);
            tokio::time::sleep(Duration::from_millis(800)).await;
            cluster.start(victim);
        } else {
            cluster.signal(victim, Signal::SIGSTOP);
            tokio::time::sleep(Duration::from_millis(1200)).await;
            cluster.signal(victim, Signal::SIGCONT);
        }
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    let operations = history.operations();
    let definite = operations
        .iter()
        .filter(|op| op.outcome != Outcome::Unknown)
        .count();
    assert!(
        definite >= 50,
        "too few operations completed to judge: {definite}"
    );
    eprintln!(
        "history: {} operations, {definite} with a definite outcome",
        operations.len()
    );
    let result = history.check(Duration::from_secs(20));
    assert!(result.is_linearizable(), "{}", result.verdict);
}
