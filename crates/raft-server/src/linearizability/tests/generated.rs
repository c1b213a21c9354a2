//! The checker's tests on generated histories: operations run one after another
//! against a map of registers, each inside an interval that overlaps others. Such
//! histories are linearizable by construction; corrupting one read's result must make
//! them not.

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[test]
fn history_of_threads_sharing_a_locked_map_is_linearizable() {
    // Each operation runs under the store's lock between its invoke and complete, so
    // the store is linearizable by construction.
    let history = History::new();
    let store: Arc<Mutex<HashMap<String, Bytes>>> = Arc::default();
    let threads: Vec<_> = (0..8u64)
        .map(|client| {
            let (history, store) = (history.clone(), Arc::clone(&store));
            std::thread::spawn(move || {
                let mut rng = SplitMix(client);
                for i in 0..100 {
                    let key = format!("k{}", rng.below(4));
                    let new = value(&format!("{client}-{i}"));
                    let kind = match rng.below(4) {
                        0 => OpKind::Read,
                        1 => OpKind::Write(new),
                        2 => OpKind::Delete,
                        _ => OpKind::CompareAndSwap {
                            expected: rng.below(2).eq(&0).then(|| value("0-0")),
                            new,
                        },
                    };
                    let id = history.invoke(client, key.clone(), kind.clone());
                    let outcome = apply(&mut store.lock().unwrap(), &key, &kind);
                    history.complete(id, outcome);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let result = history.check(BUDGET);
    assert!(result.is_linearizable(), "{}", result.verdict);
    assert_eq!(result.ops, 800);
}

/// A small deterministic generator, so the sanity tests need no seed plumbing.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Runs one operation against a map of registers and says what the client is told.
fn apply(store: &mut HashMap<String, Bytes>, key: &str, kind: &OpKind) -> Outcome {
    match kind {
        OpKind::Read => Outcome::ReadValue(store.get(key).cloned()),
        OpKind::Write(new) => {
            store.insert(key.to_owned(), new.clone());
            Outcome::WriteOk
        }
        OpKind::Delete => {
            store.remove(key);
            Outcome::DeleteOk
        }
        OpKind::CompareAndSwap { expected, new } => {
            let swapped = store.get(key) == expected.as_ref();
            if swapped {
                store.insert(key.to_owned(), new.clone());
            }
            Outcome::CasResult(swapped)
        }
    }
}

/// One generated operation before it is run: which key, what, and how its interval
/// lies around its linearization point.
#[derive(Clone, Debug)]
struct Spec {
    key: u8,
    kind: u8,
    /// For a compare-and-swap: expect the current value, or an arbitrary one.
    cas_expects_current: bool,
    client: u64,
    before: u64,
    after: u64,
    /// 0: answered; 1: unknown, took effect; 2: unknown, never took effect.
    fate: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..3u8,
        0..4u8,
        any::<bool>(),
        0..4u64,
        0..60u64,
        0..60u64,
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
        .prop_map(
            |(key, kind, cas_expects_current, client, before, after, fate)| Spec {
                key,
                kind,
                cas_expects_current,
                client,
                before,
                after,
                fate,
            },
        )
}

/// Runs the specs in order against a map of registers, operation `i` taking effect at
/// instant `10 * i + 100` inside its interval: linearizable by construction.
fn run_sequentially(specs: &[Spec]) -> Vec<Operation> {
    let mut store = HashMap::new();
    let mut history = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let key = format!("k{}", spec.key);
        let new = value(&format!("v{i}"));
        let kind = match spec.kind {
            0 => OpKind::Read,
            1 => OpKind::Write(new),
            2 => OpKind::Delete,
            _ => {
                let expected = if spec.cas_expects_current {
                    store.get(&key).cloned()
                } else {
                    Some(value(&format!("v{}", i / 2)))
                };
                OpKind::CompareAndSwap { expected, new }
            }
        };
        let effect = 10 * i as u64 + 100;
        let mut outcome = match spec.fate {
            2 => Outcome::Unknown,
            _ => apply(&mut store, &key, &kind),
        };
        let mut returned = Some(effect + spec.after);
        if spec.fate != 0 {
            outcome = Outcome::Unknown;
            returned = None;
        }
        history.push(Operation {
            client: spec.client,
            key,
            call: effect - spec.before,
            returned,
            kind,
            outcome,
        });
    }
    history
}

/// A history like [`run_sequentially`]'s with many concurrent clients: each client
/// issues operations one after another, each taking effect somewhere inside its
/// interval; the operations run against the registers in order of those instants.
fn concurrent_clients(seed: u64, clients: u64, per_client: usize, keys: u64) -> Vec<Operation> {
    let mut rng = SplitMix(seed);
    // (effect instant, client, call, return)
    let mut timeline = Vec::new();
    for client in 0..clients {
        let mut now = rng.below(100);
        for _ in 0..per_client {
            let call = now + rng.below(50);
            let effect = call + 1 + rng.below(100);
            let returned = effect + 1 + rng.below(100);
            timeline.push((effect, client, call, returned));
            now = returned;
        }
    }
    timeline.sort_unstable();
    let mut store = HashMap::new();
    let mut history = Vec::new();
    for (i, (_, client, call, returned)) in timeline.into_iter().enumerate() {
        let key = format!("k{}", rng.below(keys));
        let new = value(&format!("v{i}"));
        let kind = match rng.below(10) {
            0..=3 => OpKind::Read,
            4..=6 => OpKind::Write(new),
            7 => OpKind::Delete,
            _ => OpKind::CompareAndSwap {
                expected: store.get(&key).cloned().filter(|_| rng.below(2) == 0),
                new,
            },
        };
        let (outcome, returned) = match rng.below(50) {
            0 => (Outcome::Unknown, None),
            1 => {
                apply(&mut store, &key, &kind);
                (Outcome::Unknown, None)
            }
            _ => (apply(&mut store, &key, &kind), Some(returned)),
        };
        history.push(Operation {
            client,
            key,
            call,
            returned,
            kind,
            outcome,
        });
    }
    history
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn leaving_out_unseen_writes_changes_no_verdict(
        specs in prop::collection::vec(spec(), 0..40),
        swaps in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..3),
    ) {
        // Corrupt some reads with another operation's value (or absence), which may
        // or may not break linearizability.
        let mut history = run_sequentially(&specs);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].outcome, Outcome::ReadValue(_)))
            .collect();
        for (read, source) in &swaps {
            if reads.is_empty() {
                break;
            }
            let read = reads[read.index(reads.len())];
            let source = source.index(history.len());
            let seen = match &history[source].kind {
                OpKind::Write(new) | OpKind::CompareAndSwap { new, .. } => Some(new.clone()),
                _ => None,
            };
            history[read].outcome = Outcome::ReadValue(seen);
        }
        let dropped = check(&history, BUDGET);
        let kept = check_with(&history, BUDGET, search::UnseenWrites::Keep);
        prop_assert_eq!(
            dropped.is_linearizable(),
            kept.is_linearizable(),
            "dropped: {}, kept: {}",
            dropped.verdict,
            kept.verdict
        );
        let decided = !matches!(kept.verdict, Verdict::Unknown { .. });
        prop_assert!(decided, "{}", kept.verdict);
    }

    #[test]
    fn generated_histories_are_accepted(specs in prop::collection::vec(spec(), 0..60)) {
        let history = run_sequentially(&specs);
        let result = check(&history, BUDGET);
        prop_assert!(result.is_linearizable(), "{}", result.verdict);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_rejected(
        specs in prop::collection::vec(spec(), 1..60),
        which in any::<prop::sample::Index>(),
    ) {
        let mut history = run_sequentially(&specs);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].outcome, Outcome::ReadValue(_)))
            .collect();
        prop_assume!(!reads.is_empty());
        let corrupted = reads[which.index(reads.len())];
        history[corrupted].outcome = Outcome::ReadValue(Some(value("never written")));
        let result = check(&history, BUDGET);
        let is_violation = matches!(result.verdict, Verdict::NotLinearizable { .. });
        prop_assert!(is_violation, "read #{} corrupted: {}", corrupted, result.verdict);
    }
}

#[test]
fn many_unknown_writes_nobody_saw_do_not_blow_up_the_search() {
    // Forty timed-out writes, all concurrent with everything after their call, then a
    // stale read: without leaving them out the search would try 2^40 subsets of them.
    let mut history = vec![write(1, (0, 10), "a")];
    for i in 0..40 {
        history.push(unknown(
            2 + i,
            20 + i,
            OpKind::Write(value(&format!("lost{i}"))),
        ));
    }
    for i in 0..20 {
        history.push(write(1, (100 + 20 * i, 110 + 20 * i), &format!("w{i}")));
    }
    history.push(read(50, (1_000, 1_010), Some("w18")));
    let stale = history.len() - 1;
    assert_rejected(&history, stale);
    let Verdict::NotLinearizable { explanation, .. } = verdict(&history) else {
        unreachable!()
    };
    assert!(explanation.contains("left out: 40"), "{explanation}");
}

#[test]
fn two_thousand_operations_of_eight_clients_on_twenty_keys_get_a_verdict() {
    for seed in 0..3 {
        let history = concurrent_clients(seed, 8, 250, 20);
        assert_eq!(history.len(), 2000);
        let result = check(&history, BUDGET);
        assert!(result.is_linearizable(), "seed {seed}: {}", result.verdict);
        assert_eq!(result.keys_checked, 20);
    }
}

#[test]
fn a_stale_read_among_two_thousand_operations_is_found() {
    let mut history = concurrent_clients(7, 8, 250, 20);
    // Make a late read on some key return the value of that key's first completed
    // write; it has long been overwritten if any later write completed before the read.
    let (first, written) = history
        .iter()
        .enumerate()
        .find_map(
            |(i, operation)| match (&operation.kind, &operation.outcome) {
                (OpKind::Write(new), Outcome::WriteOk) => Some((i, new.clone())),
                _ => None,
            },
        )
        .unwrap();
    let key = history[first].key.clone();
    let first_returned = history[first].returned.unwrap();
    let overwritten_at = history
        .iter()
        .filter(|operation| operation.key == key && operation.call > first_returned)
        .filter(|operation| matches!(operation.outcome, Outcome::WriteOk | Outcome::DeleteOk))
        .filter_map(|operation| operation.returned)
        .min()
        .unwrap();
    let stale = history
        .iter()
        .position(|operation| {
            operation.key == key
                && operation.call > overwritten_at
                && matches!(operation.outcome, Outcome::ReadValue(_))
        })
        .unwrap();
    history[stale].outcome = Outcome::ReadValue(Some(written));
    let result = check(&history, BUDGET);
    assert!(
        matches!(&result.verdict, Verdict::NotLinearizable { key: k, .. } if *k == key),
        "{}",
        result.verdict
    );
}
