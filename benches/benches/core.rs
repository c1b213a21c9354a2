//! raft-core alone: an in-memory 3-member cluster (no disk, no network) committing
//! entries with 1 and 256 concurrent proposers. Messages are delivered and writes
//! made durable as soon as they are handed out, so this measures the protocol's own
//! CPU cost per committed entry: the ceiling for everything built on it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raft_core::{Config, Membership, MemoryLogStore, Message, Node, NodeId, ProposalResult, Role};

const MEMBERS: u64 = 3;

struct InMemoryCluster {
    nodes: Vec<Node<MemoryLogStore>>,
    stores: Vec<MemoryLogStore>,
    inbox: VecDeque<Message>,
    committed: u64,
}

impl InMemoryCluster {
    fn new() -> InMemoryCluster {
        let membership = Membership::with_voters((1..=MEMBERS).map(NodeId));
        let mut nodes = Vec::new();
        let mut stores = Vec::new();
        for id in 1..=MEMBERS {
            let store = MemoryLogStore::new(membership.clone());
            let mut config = Config::new(NodeId(id));
            config.max_inflight_appends = 64;
            nodes.push(Node::new(config, store.clone()).expect("valid configuration"));
            stores.push(store);
        }
        let mut cluster = InMemoryCluster {
            nodes,
            stores,
            inbox: VecDeque::new(),
            committed: 0,
        };
        cluster.nodes[0].campaign().expect("campaign");
        while cluster.nodes[0].role() != Role::Leader {
            cluster.pump();
        }
        cluster
    }

    /// Runs every member's driver loop once and delivers what they sent.
    fn pump(&mut self) {
        for i in 0..self.nodes.len() {
            while self.nodes[i].has_ready() {
                let ready = self.nodes[i].ready().expect("ready");
                self.inbox.extend(ready.messages);
                if let Some(persist) = ready.persist {
                    if let Some(hard_state) = persist.hard_state {
                        self.stores[i].set_hard_state(hard_state);
                    }
                    self.stores[i].append(&persist.entries);
                    self.inbox.extend(persist.messages);
                    self.nodes[i].on_persisted(persist.ack).expect("persisted");
                }
                if let Some(last) = ready.committed_entries.last() {
                    self.nodes[i].on_applied(last.index);
                }
                for outcome in ready.proposal_outcomes {
                    assert_eq!(outcome.result, ProposalResult::Committed);
                    self.committed += 1;
                }
            }
        }
        while let Some(message) = self.inbox.pop_front() {
            let to = message.to.0 as usize - 1;
            self.nodes[to].step(message).expect("step");
        }
    }

    /// Commits `total` proposals keeping `concurrency` in flight; returns the time.
    fn run(&mut self, total: u64, concurrency: u64, payload: &Bytes) -> Duration {
        let start = Instant::now();
        let target = self.committed + total;
        let mut proposed = self.committed;
        while self.committed < target {
            while proposed < target && proposed - self.committed < concurrency {
                self.nodes[0]
                    .propose(payload.clone())
                    .expect("leader proposes");
                proposed += 1;
            }
            self.pump();
        }
        start.elapsed()
    }
}

fn commit_in_memory(c: &mut Criterion) {
    let payload = Bytes::from(vec![7u8; 256]);
    let mut group = c.benchmark_group("core_in_memory_3_members");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for concurrency in [1u64, 256] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("proposers_{concurrency}"), |b| {
            b.iter_custom(|iterations| {
                let mut cluster = InMemoryCluster::new();
                cluster.run(iterations, concurrency, &payload)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, commit_in_memory);
criterion_main!(benches);
