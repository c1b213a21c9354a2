//! Property test: random appends (with suffix truncations and hard states),
//! snapshots, compactions, snapshot installs, I/O stops and crashes against the
//! in-memory reference model. After every crash the recovered log must equal the
//! model after the last acknowledged operation, or after the one in flight.

use bytes::Bytes;
use proptest::prelude::*;
use raft_wal::storage::{CrashMode, FaultyStorage};
use raft_wal::{AppendUnit, Entry, HardState, Wal};

use crate::common::{self, ModelLog, observe};

#[derive(Debug, Clone)]
enum Op {
    Append {
        back: u64,
        count: u64,
        new_term: bool,
        commit_advance: Option<u64>,
        payload_len: usize,
    },
    SnapshotAndCompact {
        fraction: u64,
    },
    Install {
        matching: bool,
        ahead: u64,
    },
    StopAfter(u64),
    Crash(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..4, 1u64..5, proptest::bool::weighted(0.2), proptest::option::of(0u64..4), 0usize..200)
            .prop_map(|(back, count, new_term, commit_advance, payload_len)| Op::Append {
                back, count, new_term, commit_advance, payload_len
            }),
        1 => (0u64..=100).prop_map(|fraction| Op::SnapshotAndCompact { fraction }),
        1 => (any::<bool>(), 0u64..5).prop_map(|(matching, ahead)| Op::Install { matching, ahead }),
        1 => (0u64..12).prop_map(Op::StopAfter),
        1 => (0u8..4).prop_map(Op::Crash),
    ]
}

fn crash_mode(selector: u8, seed: u64) -> CrashMode {
    match selector % 3 {
        0 => CrashMode::DropUnsynced,
        1 => CrashMode::KeepUnsynced,
        _ => CrashMode::TearLast { seed },
    }
}

struct Harness {
    storage: FaultyStorage,
    wal: Option<Wal>,
    model: ModelLog,
    crashes: u64,
}

impl Harness {
    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("open")
    }

    /// Crashes and recovers; the recovered state must be `self.model` or
    /// `in_flight`, and becomes the model.
    fn crash(&mut self, selector: u8, in_flight: Option<&ModelLog>) {
        self.wal = None;
        self.crashes += 1;
        self.storage.crash(crash_mode(selector, self.crashes));
        let wal = common::open(&self.storage, common::small_options()).expect("recovery");
        let observed = observe(&wal);
        let in_flight = in_flight.map(ModelLog::reopened);
        if observed == self.model.reopened().observed() {
            self.model = self.model.reopened();
        } else if let Some(next) = in_flight
            .as_ref()
            .filter(|next| next.observed() == observed)
        {
            self.model = next.clone();
        } else {
            panic!(
                "recovered {observed:#?}\nmodel {:#?}\nin flight {in_flight:#?}",
                self.model.observed()
            );
        }
        self.wal = Some(wal);
    }

    /// Runs one acknowledged-or-failed step whose success yields `next`.
    fn step(&mut self, next: ModelLog, action: impl FnOnce(&Wal) -> raft_wal::Result<()>) {
        match action(self.wal()) {
            Ok(()) => {
                self.model = next;
                assert_eq!(
                    observe(self.wal()),
                    self.model.observed(),
                    "after an acknowledged step"
                );
            }
            Err(_) => {
                let selector = (self.crashes % 3) as u8;
                self.crash(selector, Some(&next));
            }
        }
    }

    fn current_term(&self) -> u64 {
        let last_term = self.model.term(self.model.last_index()).unwrap_or(0);
        last_term.max(self.model.hard_state.term)
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Append {
                back,
                count,
                new_term,
                commit_advance,
                payload_len,
            } => {
                let model = &self.model;
                let floor = model.hard_state.commit.max(model.first_index - 1);
                let first = (model.last_index() + 1).saturating_sub(back).max(floor + 1);
                let term = self.current_term() + u64::from(new_term);
                let last = first + count - 1;
                let hard_state = commit_advance.map(|advance| HardState {
                    term,
                    vote: if term == model.hard_state.term {
                        model.hard_state.vote
                    } else {
                        0
                    },
                    commit: (model.hard_state.commit + advance).min(last),
                });
                let unit = AppendUnit {
                    hard_state,
                    entries: (first..=last)
                        .map(|index| Entry {
                            index,
                            term,
                            payload: common::payload(index, term, payload_len),
                        })
                        .collect(),
                };
                let mut next = self.model.clone();
                next.append(&unit);
                self.step(next, |wal| wal.append(unit).map(|_| ()));
            }
            Op::SnapshotAndCompact { fraction } => {
                let model = &self.model;
                let base = model.first_index - 1;
                let index = base + (model.last_index() - base) * fraction / 100;
                if index <= model.snapshot_index {
                    return;
                }
                let term = model.term(index).expect("inside the log");
                let mut next = self.model.clone();
                next.take_snapshot(index, term);
                self.step(next, |wal| write_snapshot(wal, index, term));
                if self.model.snapshot_index != index || self.wal.is_none() {
                    return;
                }
                let mut next = self.model.clone();
                next.compact(index + 1);
                self.step(next, |wal| wal.compact(index + 1));
            }
            Op::Install { matching, ahead } => {
                let model = &self.model;
                let lowest = model.snapshot_index.max(model.first_index - 1) + 1;
                let last = model.last_index();
                let (index, term) = if matching && last >= lowest {
                    let index = last - ahead.min(last - lowest);
                    (index, model.term(index).expect("inside the log"))
                } else {
                    (
                        last.max(model.snapshot_index) + 1 + ahead,
                        self.current_term() + 1,
                    )
                };
                let mut next = self.model.clone();
                next.take_snapshot(index, term);
                self.step(next, |wal| write_snapshot(wal, index, term));
                if self.model.snapshot_index != index || self.model.first_index > index {
                    // Not written, or a crash and the open-time rule installed it.
                    return;
                }
                let mut next = self.model.clone();
                next.install(index, term);
                self.step(next, |wal| {
                    let meta = wal.latest_snapshot().expect("durable snapshot");
                    wal.install_snapshot(&meta).map(|_| ())
                });
            }
            Op::StopAfter(count) => self.storage.stop_after(count),
            Op::Crash(selector) => self.crash(selector, None),
        }
    }
}

fn write_snapshot(wal: &Wal, index: u64, term: u64) -> raft_wal::Result<()> {
    let mut writer = wal.snapshot_writer(index, term, Bytes::from(format!("members@{index}")))?;
    std::io::Write::write_all(&mut writer, &vec![index as u8 | 1; 700])
        .map_err(|_| raft_wal::WalError::Closed)?;
    writer.finish().map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_and_crashes_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let storage = FaultyStorage::new();
        let wal = common::open(&storage, common::small_options()).unwrap();
        let mut harness = Harness { storage, wal: Some(wal), model: ModelLog::default(), crashes: 0 };
        for op in &ops {
            harness.apply(op);
        }
        harness.crash(0, None);
    }
}
