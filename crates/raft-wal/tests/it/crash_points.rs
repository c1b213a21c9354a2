//! Crash-point enumeration: a fixed scenario (appends with hard states, rotation,
//! suffix truncation, snapshot + prefix compaction, a received snapshot staged and
//! installed, a local snapshot installed) is run once to
//! count its I/O operations, then once per k with the storage stopping after the
//! k-th operation, followed by a crash that drops, keeps or tears what was not
//! synced. Recovery must return exactly the state after the last acknowledged step
//! or after the step in flight: a prefix with every acknowledged record and nothing
//! that was never written.

use bytes::Bytes;
use raft_wal::storage::{CrashMode, FaultyStorage};
use raft_wal::{HardState, Wal};

use crate::common::{self, ModelLog, Observed, observe, unit};

#[derive(Debug, Clone)]
enum Step {
    Append(raft_wal::AppendUnit),
    Snapshot {
        index: u64,
        term: u64,
    },
    Compact(u64),
    Install {
        index: u64,
        term: u64,
    },
    /// A snapshot received from a leader: staged, then installed.
    Receive {
        index: u64,
        term: u64,
    },
}

fn scenario() -> Vec<Step> {
    let hs = |term, vote, commit| Some(HardState { term, vote, commit });
    vec![
        Step::Append(unit(1..=3, 1, hs(1, 1, 0))),
        Step::Append(unit(4..=8, 1, hs(1, 1, 3))),
        Step::Append(unit(9..=12, 1, None)),
        Step::Append(raft_wal::AppendUnit {
            hard_state: hs(1, 1, 6),
            entries: vec![],
        }),
        // A new leader overwrites 10..: suffix truncation.
        Step::Append(unit(10..=11, 2, hs(2, 0, 6))),
        Step::Append(unit(12..=16, 2, hs(2, 3, 8))),
        Step::Append(unit(17..=20, 2, None)),
        Step::Snapshot { index: 8, term: 1 },
        Step::Compact(9),
        Step::Append(unit(21..=25, 2, hs(2, 3, 20))),
        // A leader's snapshot that the log does not contain: the log is discarded.
        Step::Receive { index: 30, term: 3 },
        Step::Append(unit(31..=34, 3, hs(3, 2, 31))),
        // A snapshot that matches the log: the suffix after it is kept.
        Step::Snapshot { index: 32, term: 3 },
        Step::Install { index: 32, term: 3 },
        Step::Append(unit(35..=38, 3, None)),
    ]
}

/// Model states: `states[i]` is the log after the first `i` steps.
fn model_states(steps: &[Step]) -> Vec<ModelLog> {
    let mut model = ModelLog::default();
    let mut states = vec![model.clone()];
    for step in steps {
        match step {
            Step::Append(unit) => model.append(unit),
            Step::Snapshot { index, term } => model.take_snapshot(*index, *term),
            Step::Compact(first_index) => model.compact(*first_index),
            Step::Install { index, term } => model.install(*index, *term),
            Step::Receive { index, term } => {
                model.take_snapshot(*index, *term);
                model.install(*index, *term);
            }
        }
        states.push(model.clone());
    }
    states
}

fn run_step(wal: &Wal, step: &Step) -> raft_wal::Result<()> {
    match step {
        Step::Append(unit) => wal.append(unit.clone()).map(|_| ()),
        Step::Snapshot { index, term } => {
            let mut writer =
                wal.snapshot_writer(*index, *term, Bytes::from_static(b"voters=1,2,3"))?;
            for chunk in 0..3u8 {
                std::io::Write::write_all(&mut writer, &[chunk + 1; 300]).expect("buffered write");
            }
            writer.finish().map(|_| ())
        }
        Step::Compact(first_index) => wal.compact(*first_index),
        Step::Receive { index, term } => {
            let mut writer =
                wal.snapshot_writer(*index, *term, Bytes::from_static(b"voters=1,2,3"))?;
            std::io::Write::write_all(&mut writer, &[7u8; 900]).expect("buffered write");
            let staged = writer.finish_staged()?;
            wal.install_staged(staged).map(|_| ())
        }
        Step::Install { index, .. } => {
            let meta = wal
                .latest_snapshot()
                .expect("snapshot written by the previous step");
            assert_eq!(meta.index, *index);
            wal.install_snapshot(&meta).map(|_| ())
        }
    }
}

/// Runs steps until one fails; returns how many were acknowledged.
fn run_until_failure(wal: &Wal, steps: &[Step]) -> usize {
    steps
        .iter()
        .take_while(|step| run_step(wal, step).is_ok())
        .count()
}

fn check_recovery(
    storage: &FaultyStorage,
    states: &[ModelLog],
    acked: usize,
    context: &str,
) -> Observed {
    let wal = match common::open(storage, common::small_options()) {
        Ok(wal) => wal,
        Err(error) => panic!("{context}: recovery failed: {error}"),
    };
    let observed = observe(&wal);
    // §5.2: never forget an acknowledged term or vote (checked on its own, so that a
    // failure names the vote even where the full comparison below would also fail).
    let acknowledged = states[acked].hard_state;
    let recovered = observed.hard_state;
    assert!(
        recovered.term > acknowledged.term
            || (recovered.term == acknowledged.term
                && (acknowledged.vote == 0 || recovered.vote == acknowledged.vote)),
        "{context}: recovered {recovered:?} forgets acknowledged {acknowledged:?}"
    );
    let candidates: Vec<Observed> = states[acked..states.len().min(acked + 2)]
        .iter()
        .map(|state| state.reopened().observed())
        .collect();
    assert!(
        candidates.contains(&observed),
        "{context}: recovered {observed:#?}\nexpected one of {candidates:#?}"
    );
    // The recovered log accepts new work, which survives the next crash too.
    let next = observed.last_index + 1;
    let term = observed
        .entries
        .last()
        .map_or(observed.prev_term, |e| e.1)
        .max(observed.hard_state.term);
    wal.append(unit(next..=next, term, None))
        .unwrap_or_else(|e| panic!("{context}: append after recovery: {e}"));
    drop(wal);
    storage.crash(CrashMode::DropUnsynced);
    let wal = common::open(storage, common::small_options())
        .unwrap_or_else(|e| panic!("{context}: second recovery: {e:?} {:?}", storage.files()));
    assert_eq!(
        wal.last_index(),
        next,
        "{context}: append after recovery survived"
    );
    observed
}

#[test]
fn every_crash_point_recovers_an_acknowledged_prefix() {
    let steps = scenario();
    let states = model_states(&steps);
    let total = {
        let storage = FaultyStorage::new();
        let wal = common::open(&storage, common::small_options()).unwrap();
        let start = storage.operations();
        assert_eq!(run_until_failure(&wal, &steps), steps.len());
        assert_eq!(observe(&wal), states[steps.len()].observed());
        storage.operations() - start
    };
    assert!(total > 60, "the scenario performs {total} operations");
    let modes = |k: u64| {
        [
            CrashMode::DropUnsynced,
            CrashMode::KeepUnsynced,
            CrashMode::TearLast { seed: k },
            CrashMode::TearLast { seed: k ^ 0xFFFF },
        ]
    };
    let mut crashed_in_step = vec![0u32; steps.len() + 1];
    for k in 0..=total {
        for mode in modes(k) {
            let storage = FaultyStorage::new();
            let wal = common::open(&storage, common::small_options()).unwrap();
            storage.stop_after(k);
            let acked = run_until_failure(&wal, &steps);
            crashed_in_step[acked] += 1;
            drop(wal);
            storage.crash(mode);
            check_recovery(
                &storage,
                &states,
                acked,
                &format!("crash after op {k} ({mode:?}), {acked} steps acked"),
            );
        }
    } // Every step was interrupted by some crash point (the last entry counts runs
    // that completed).
    eprintln!("{crashed_in_step:?} over {total} operations");
    assert!(
        crashed_in_step.iter().all(|&runs| runs > 0),
        "{crashed_in_step:?} over {total} operations"
    );
}

#[test]
fn crashes_during_recovery_are_recoverable() {
    let steps = scenario();
    let states = model_states(&steps);
    // Crash mid-scenario with a torn tail, then crash recovery itself at every point.
    for k in [20u64, 45, 70, 95] {
        let base = FaultyStorage::new();
        let wal = common::open(&base, common::small_options()).unwrap();
        base.stop_after(k);
        let acked = run_until_failure(&wal, &steps);
        drop(wal);
        base.crash(CrashMode::TearLast { seed: k });
        for j in 0..12 {
            let storage = FaultyStorage::new();
            for path in base.files() {
                storage.put_durable(&path, &base.durable_contents(&path).unwrap());
            }
            storage.stop_after(j);
            if let Ok(wal) = common::open(&storage, common::small_options()) {
                drop(wal);
            }
            storage.crash(CrashMode::TearLast { seed: j });
            check_recovery(
                &storage,
                &states,
                acked,
                &format!("crash after op {k}, recovery crash after {j}"),
            );
        }
    }
}

#[test]
fn crash_points_with_background_preparation_recover_an_acknowledged_prefix() {
    // The preparer thread interleaves its I/O with the writer's, so operation k is
    // not the same from run to run; the property must hold for every interleaving.
    let steps = scenario();
    let states = model_states(&steps);
    let options = raft_wal::WalOptions {
        segment_preparation: raft_wal::SegmentPreparation::Background,
        ..common::small_options()
    };
    for k in (0..100).step_by(2) {
        for mode in [CrashMode::DropUnsynced, CrashMode::TearLast { seed: k }] {
            let storage = FaultyStorage::new();
            let wal = Wal::open_with(
                std::sync::Arc::new(storage.clone()),
                common::data_dir(),
                options,
            )
            .unwrap();
            storage.stop_after(k);
            let acked = run_until_failure(&wal, &steps);
            drop(wal);
            storage.crash(mode);
            check_recovery(
                &storage,
                &states,
                acked,
                &format!("background, crash after op {k} ({mode:?})"),
            );
        }
    }
}
