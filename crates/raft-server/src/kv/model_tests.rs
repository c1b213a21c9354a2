//! A naive reference model of [`KvStore`]: an unordered list searched linearly,
//! with the txn semantics spelled out a second time. Property tests apply random
//! entry sequences to both and require equal results, state and range reads; the
//! generators here also feed the snapshot tests.

use bytes::Bytes;
use proptest::prelude::*;

use super::command::tests::{command, key};
use super::command::{Command, Condition, TxnOp};
use super::store::{ApplyResult, KvStore, OpResult, Value};

/// The naive reference: an unordered list of (key, value, mod, create, version),
/// searched linearly, with the txn semantics spelled out separately.
#[derive(Default)]
struct Model {
    kvs: Vec<ModelEntry>,
    applied: u64,
}

/// (key, value, mod revision, create revision, version).
type ModelEntry = (Vec<u8>, Vec<u8>, u64, u64, u64);

impl Model {
    fn find(&self, key: &[u8]) -> Option<usize> {
        self.kvs.iter().position(|entry| entry.0 == key)
    }

    fn put(&mut self, index: u64, key: &[u8], value: &[u8]) {
        match self.find(key) {
            Some(at) => {
                let (_, v, m, _, version) = &mut self.kvs[at];
                *v = value.to_vec();
                *m = index;
                *version += 1;
            }
            None => self
                .kvs
                .push((key.to_vec(), value.to_vec(), index, index, 1)),
        }
    }

    fn delete(&mut self, key: &[u8]) -> bool {
        match self.find(key) {
            Some(at) => {
                self.kvs.remove(at);
                true
            }
            None => false,
        }
    }

    fn value(&self, key: &[u8]) -> Option<Value> {
        self.find(key).map(|at| {
            let (_, v, m, c, version) = &self.kvs[at];
            Value {
                value: Bytes::from(v.clone()),
                mod_revision: *m,
                create_revision: *c,
                version: *version,
            }
        })
    }

    fn apply(&mut self, index: u64, command: &Command) -> ApplyResult {
        self.applied = index;
        match command {
            Command::Put { key, value } => {
                self.put(index, key, value);
                ApplyResult::Put { revision: index }
            }
            Command::Delete { key } => ApplyResult::Delete {
                revision: index,
                deleted: self.delete(key),
            },
            Command::Txn {
                compare,
                success,
                failure,
            } => {
                let mut succeeded = true;
                for c in compare {
                    let current = self.value(&c.key);
                    let holds = match &c.condition {
                        Condition::Value(v) => current.as_ref().map(|c| &c.value) == Some(v),
                        Condition::ModRevision(r) => match &current {
                            Some(current) => current.mod_revision == *r,
                            None => *r == 0,
                        },
                        Condition::Exists => current.is_some(),
                        Condition::Absent => current.is_none(),
                    };
                    succeeded &= holds;
                }
                let mut results = Vec::new();
                for op in if succeeded { success } else { failure } {
                    results.push(match op {
                        TxnOp::Put { key, value } => {
                            self.put(index, key, value);
                            OpResult::Put { revision: index }
                        }
                        TxnOp::Delete { key } => OpResult::Delete {
                            deleted: self.delete(key),
                        },
                        TxnOp::Get { key } => OpResult::Get {
                            key: key.clone(),
                            value: self.value(key),
                        },
                    });
                }
                ApplyResult::Txn {
                    succeeded,
                    revision: index,
                    results,
                }
            }
        }
    }

    fn range(&self, prefix: &[u8], limit: Option<usize>) -> Vec<(Bytes, Value)> {
        let mut matching: Vec<_> = self
            .kvs
            .iter()
            .filter(|entry| entry.0.starts_with(prefix))
            .map(|entry| (Bytes::from(entry.0.clone()), self.value(&entry.0).unwrap()))
            .collect();
        matching.sort_by(|a, b| a.0.cmp(&b.0));
        matching.truncate(limit.unwrap_or(usize::MAX));
        matching
    }
}

/// One log entry: a command, or an entry without one.
#[derive(Clone, Debug)]
pub(super) enum Step {
    Command(Command),
    Noop,
}

/// Entries with gaps between their indexes (as when membership entries or
/// entries of other kinds sit between them).
pub(super) fn steps() -> impl Strategy<Value = Vec<(u64, Step)>> {
    prop::collection::vec(
        (
            1u64..4,
            prop_oneof![9 => command().prop_map(Step::Command), 1 => Just(Step::Noop)],
        ),
        0..60,
    )
}

/// A store built by applying `steps` from an empty one.
pub(super) fn store_from(steps: &[(u64, Step)]) -> KvStore {
    let mut store = KvStore::new([]);
    let mut index = 0;
    for (gap, step) in steps {
        index += gap;
        match step {
            Step::Command(command) => {
                store.apply(index, command);
            }
            Step::Noop => store.apply_noop(index),
        }
    }
    store
}

proptest! {
    #[test]
    fn apply_matches_the_naive_model(
        steps in steps(),
        prefix in prop::sample::select(vec!["", "a", "b", "ab", "z"]),
        limit in prop::option::of(0usize..4),
    ) {
        let mut store = KvStore::new([]);
        let mut model = Model::default();
        let mut index = 0;
        for (gap, step) in &steps {
            index += gap;
            match step {
                Step::Command(command) => {
                    let revision_before = store.revision();
                    let result = store.apply(index, command);
                    prop_assert_eq!(&result, &model.apply(index, command));
                    // The revision of every write is the entry's index, and grows.
                    prop_assert!(store.revision() > revision_before);
                    prop_assert_eq!(store.revision(), index);
                }
                Step::Noop => {
                    store.apply_noop(index);
                    model.applied = index;
                }
            }
            prop_assert_eq!(store.applied_index(), model.applied);
            prop_assert_eq!(store.len(), model.kvs.len());
            for (key, ..) in &model.kvs {
                let value = store.get(key).cloned();
                prop_assert_eq!(value, model.value(key));
            }
            for value in store.kvs.values() {
                prop_assert!(1 <= value.create_revision);
                prop_assert!(value.create_revision <= value.mod_revision);
                prop_assert!(value.mod_revision <= store.applied_index());
                prop_assert!(value.version >= 1);
            }
        }
        let range: Vec<(Bytes, Value)> = store
            .range(prefix.as_bytes(), limit)
            .into_iter()
            .map(|(key, value)| (key, value.clone()))
            .collect();
        prop_assert_eq!(range, model.range(prefix.as_bytes(), limit));
    }

    #[test]
    fn apply_is_deterministic(steps in steps()) {
        prop_assert_eq!(store_from(&steps), store_from(&steps));
    }

    #[test]
    fn get_of_absent_keys_is_none(steps in steps(), probe in key()) {
        let store = store_from(&steps);
        let listed = store.range(&[], None).iter().any(|(k, _)| *k == probe);
        prop_assert_eq!(store.get(&probe).is_some(), listed);
    }
}
