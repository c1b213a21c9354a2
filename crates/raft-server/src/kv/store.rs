//! [`KvStore`], the state machine every member applies committed entries to. Must
//! keep true: applying is deterministic (same entries, same order, same state and
//! results on every member); a write's revision is the log index of its entry;
//! indexes applied strictly grow, so revisions only grow; for every value,
//! `1 <= create_revision <= mod_revision <= applied_index` and `version >= 1`.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::KvError;
use super::command::{Command, Compare, Condition, TxnOp};
use super::members::{MemberAddress, MemberTable, decode_member_context};

/// A stored value with its revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The bytes stored.
    pub value: Bytes,
    /// The revision (log index) of the last write to the key.
    pub mod_revision: u64,
    /// The revision of the write that created the key (since it last did not exist).
    pub create_revision: u64,
    /// How many writes the key has had since it was created (1 after the first).
    pub version: u64,
}

/// What applying a [`Command`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyResult {
    /// A put took effect at `revision`.
    Put {
        /// The log index of the put.
        revision: u64,
    },
    /// A delete ran at `revision`.
    Delete {
        /// The log index of the delete.
        revision: u64,
        /// Whether the key existed.
        deleted: bool,
    },
    /// A transaction ran at `revision`.
    Txn {
        /// Whether every compare held (so `success` ran, else `failure`).
        succeeded: bool,
        /// The log index of the transaction.
        revision: u64,
        /// One result per operation of the branch that ran, in order.
        results: Vec<OpResult>,
    },
}

/// The result of one transaction operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// A put took effect at `revision` (the transaction's).
    Put {
        /// The log index of the transaction.
        revision: u64,
    },
    /// A delete; `deleted` says whether the key existed at that point.
    Delete {
        /// Whether the key existed.
        deleted: bool,
    },
    /// A get, reading the state after the branch's earlier operations.
    Get {
        /// The key read.
        key: Bytes,
        /// Its value then, if it existed.
        value: Option<Value>,
    },
}

/// The key-value state machine: the keys with their revisions, the members table
/// and the applied index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvStore {
    /// A persistent map: a clone shares its structure and costs O(1), so the
    /// driver can hand a snapshot writer a copy of the state without pausing.
    pub(super) kvs: imbl::OrdMap<Bytes, Value>,
    pub(super) members: MemberTable,
    pub(super) applied_index: u64,
}

impl KvStore {
    /// An empty store at applied index 0 whose members table holds the bootstrap
    /// members, all voters (a repeated id keeps its last addresses).
    pub fn new(initial_members: impl IntoIterator<Item = MemberAddress>) -> KvStore {
        KvStore {
            kvs: imbl::OrdMap::new(),
            members: MemberTable::bootstrap(initial_members),
            applied_index: 0,
        }
    }

    /// Applies the command of the committed entry at log `index`; every write it
    /// makes has revision `index`.
    ///
    /// # Panics
    ///
    /// If `index` is not above [`KvStore::applied_index`] (entries are applied once,
    /// in log order), or if the command is invalid ([`Command::validate`]): commands
    /// come from [`Command::decode`] or validated requests, so either is a bug, and
    /// a crashed member is better than a diverged one.
    pub fn apply(&mut self, index: u64, command: &Command) -> ApplyResult {
        if let Err(error) = command.validate() {
            panic!("applying an invalid command at index {index}: {error}");
        }
        self.advance(index);
        match command {
            Command::Put { key, value } => {
                self.put(index, key, value);
                ApplyResult::Put { revision: index }
            }
            Command::Delete { key } => ApplyResult::Delete {
                revision: index,
                deleted: self.kvs.remove(key).is_some(),
            },
            Command::Txn {
                compare,
                success,
                failure,
            } => {
                let succeeded = compare.iter().all(|c| self.holds(c));
                let branch = if succeeded { success } else { failure };
                let results = branch.iter().map(|op| self.apply_op(index, op)).collect();
                ApplyResult::Txn {
                    succeeded,
                    revision: index,
                    results,
                }
            }
        }
    }

    /// Records an entry at `index` that carries no command (a new leader's empty
    /// entry, §5.4.2), so the applied index advances past it.
    ///
    /// # Panics
    ///
    /// If `index` is not above [`KvStore::applied_index`].
    pub fn apply_noop(&mut self, index: u64) {
        self.advance(index);
    }

    /// Applies the configuration change committed at `index`: afterwards the
    /// members table holds exactly `voters ∪ learners` (an id in both votes; in a
    /// joint configuration pass the incoming and outgoing voters together), with
    /// addresses from `context` ([`encode_member_context`](crate::kv::encode_member_context))
    /// where it names them, else the addresses already known.
    ///
    /// A context that does not decode is reported as an error, but the change is
    /// applied all the same (members it should have described get empty addresses)
    /// and the applied index advances: the table must follow the raft configuration
    /// on every member, whatever the context holds.
    ///
    /// # Panics
    ///
    /// If `index` is not above [`KvStore::applied_index`].
    pub fn apply_membership(
        &mut self,
        index: u64,
        voters: &BTreeSet<u64>,
        learners: &BTreeSet<u64>,
        context: &[u8],
    ) -> Result<(), KvError> {
        self.advance(index);
        let (added, outcome) = match decode_member_context(context) {
            Ok(added) => (added, Ok(())),
            Err(error) => (Vec::new(), Err(error)),
        };
        self.members.apply(voters, learners, added);
        outcome
    }

    /// The index of the last entry applied (0 before any).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The store's revision: its applied index. Every revision it holds is at most
    /// this.
    pub fn revision(&self) -> u64 {
        self.applied_index
    }

    /// The value of `key`, if it exists.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.kvs.get(key)
    }

    /// The keys starting with `prefix` (every key for an empty prefix) in key order,
    /// at most `limit` of them (`None`: all).
    pub fn range(&self, prefix: &[u8], limit: Option<usize>) -> Vec<(Bytes, &Value)> {
        let matching = self
            .kvs
            .range::<_, [u8]>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value));
        match limit {
            Some(limit) => matching.take(limit).collect(),
            None => matching.collect(),
        }
    }

    /// How many keys the store holds.
    pub fn len(&self) -> usize {
        self.kvs.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.kvs.is_empty()
    }

    /// Every member in id order, with whether it votes (false: a learner).
    pub fn members(&self) -> Vec<(MemberAddress, bool)> {
        self.members.list()
    }

    fn advance(&mut self, index: u64) {
        assert!(
            index > self.applied_index,
            "applying index {index} at or below the applied index {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    fn put(&mut self, index: u64, key: &Bytes, value: &Bytes) {
        match self.kvs.get_mut(key) {
            Some(existing) => {
                existing.value = value.clone();
                existing.mod_revision = index;
                existing.version += 1;
            }
            None => {
                self.kvs.insert(
                    key.clone(),
                    Value {
                        value: value.clone(),
                        mod_revision: index,
                        create_revision: index,
                        version: 1,
                    },
                );
            }
        }
    }

    fn holds(&self, compare: &Compare) -> bool {
        let current = self.kvs.get(&compare.key);
        match &compare.condition {
            Condition::Value(expected) => current.is_some_and(|v| v.value == *expected),
            Condition::ModRevision(expected) => current.map_or(0, |v| v.mod_revision) == *expected,
            Condition::Exists => current.is_some(),
            Condition::Absent => current.is_none(),
        }
    }

    fn apply_op(&mut self, index: u64, op: &TxnOp) -> OpResult {
        match op {
            TxnOp::Put { key, value } => {
                self.put(index, key, value);
                OpResult::Put { revision: index }
            }
            TxnOp::Delete { key } => OpResult::Delete {
                deleted: self.kvs.remove(key).is_some(),
            },
            TxnOp::Get { key } => OpResult::Get {
                key: key.clone(),
                value: self.kvs.get(key).cloned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn put(key: &'static str, value: &'static str) -> Command {
        Command::Put {
            key: b(key),
            value: b(value),
        }
    }

    fn compare(key: &'static str, condition: Condition) -> Compare {
        Compare {
            key: b(key),
            condition,
        }
    }

    fn get(key: &'static str) -> TxnOp {
        TxnOp::Get { key: b(key) }
    }

    fn txn(compare: Vec<Compare>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> Command {
        Command::Txn {
            compare,
            success,
            failure,
        }
    }

    fn succeeded(result: &ApplyResult) -> bool {
        match result {
            ApplyResult::Txn { succeeded, .. } => *succeeded,
            other => panic!("not a txn result: {other:?}"),
        }
    }

    #[test]
    fn revisions_are_log_indexes_and_versions_count_writes() {
        let mut store = KvStore::new([]);
        assert_eq!(
            store.apply(3, &put("a", "1")),
            ApplyResult::Put { revision: 3 }
        );
        store.apply_noop(4);
        assert_eq!(
            store.apply(7, &put("a", "2")),
            ApplyResult::Put { revision: 7 }
        );
        let a = store.get(b"a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (3, 7, 2));
        assert_eq!(store.revision(), 7);
        assert_eq!(
            store.apply(8, &Command::Delete { key: b("a") }),
            ApplyResult::Delete {
                revision: 8,
                deleted: true
            }
        );
        assert_eq!(
            store.apply(9, &Command::Delete { key: b("a") }),
            ApplyResult::Delete {
                revision: 9,
                deleted: false
            }
        );
        store.apply(10, &put("a", "3"));
        let a = store.get(b"a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (10, 10, 1));
        assert_eq!(store.applied_index(), 10);
    }

    #[test]
    #[should_panic(expected = "at or below the applied index")]
    fn applying_an_old_index_panics() {
        let mut store = KvStore::new([]);
        store.apply(5, &put("a", "1"));
        store.apply(5, &put("a", "2"));
    }

    #[test]
    #[should_panic(expected = "invalid command")]
    fn applying_an_invalid_command_panics() {
        let mut store = KvStore::new([]);
        store.apply(1, &put("", "1"));
    }

    #[test]
    fn txn_compares_by_value() {
        let mut store = KvStore::new([]);
        store.apply(1, &put("a", "1"));
        let cas = |expected| {
            txn(
                vec![compare("a", Condition::Value(b(expected)))],
                vec![TxnOp::Put {
                    key: b("a"),
                    value: b("2"),
                }],
                vec![get("a")],
            )
        };
        let failed = store.apply(2, &cas("0"));
        assert_eq!(
            failed,
            ApplyResult::Txn {
                succeeded: false,
                revision: 2,
                results: vec![OpResult::Get {
                    key: b("a"),
                    value: Some(Value {
                        value: b("1"),
                        mod_revision: 1,
                        create_revision: 1,
                        version: 1
                    })
                }],
            }
        );
        assert_eq!(
            store.apply(3, &cas("1")),
            ApplyResult::Txn {
                succeeded: true,
                revision: 3,
                results: vec![OpResult::Put { revision: 3 }],
            }
        );
        assert_eq!(store.get(b"a").unwrap().value, b("2"));
        // A value compare on an absent key fails, even against the empty value.
        let absent = txn(vec![compare("zz", Condition::Value(b("")))], vec![], vec![]);
        assert!(!succeeded(&store.apply(4, &absent)));
    }

    #[test]
    fn txn_compares_by_mod_revision_with_zero_for_absent_keys() {
        let mut store = KvStore::new([]);
        let create = txn(
            vec![compare("a", Condition::ModRevision(0))],
            vec![TxnOp::Put {
                key: b("a"),
                value: b("x"),
            }],
            vec![],
        );
        assert!(succeeded(&store.apply(5, &create)));
        assert!(!succeeded(&store.apply(6, &create)));
        let at = |revision| {
            txn(
                vec![compare("a", Condition::ModRevision(revision))],
                vec![],
                vec![],
            )
        };
        assert!(succeeded(&store.apply(7, &at(5))));
        assert!(!succeeded(&store.apply(8, &at(6))));
    }

    #[test]
    fn txn_compares_existence_and_needs_every_compare() {
        let mut store = KvStore::new([]);
        store.apply(1, &put("a", "1"));
        let exists = |key| txn(vec![compare(key, Condition::Exists)], vec![], vec![]);
        let absent = |key| txn(vec![compare(key, Condition::Absent)], vec![], vec![]);
        assert!(succeeded(&store.apply(2, &exists("a"))));
        assert!(!succeeded(&store.apply(3, &exists("b"))));
        assert!(succeeded(&store.apply(4, &absent("b"))));
        assert!(!succeeded(&store.apply(5, &absent("a"))));
        let both = txn(
            vec![
                compare("a", Condition::Exists),
                compare("b", Condition::Exists),
            ],
            vec![],
            vec![],
        );
        assert!(!succeeded(&store.apply(6, &both)));
        // No compares: the success branch runs.
        assert!(succeeded(&store.apply(7, &txn(vec![], vec![], vec![]))));
    }

    #[test]
    fn gets_inside_a_txn_see_earlier_ops_of_the_branch() {
        let mut store = KvStore::new([]);
        store.apply(1, &put("a", "old"));
        let result = store.apply(
            2,
            &txn(
                vec![],
                vec![
                    get("a"),
                    TxnOp::Put {
                        key: b("a"),
                        value: b("new"),
                    },
                    get("a"),
                    TxnOp::Delete { key: b("a") },
                    get("a"),
                    TxnOp::Delete { key: b("a") },
                    TxnOp::Put {
                        key: b("a"),
                        value: b("again"),
                    },
                    get("a"),
                ],
                vec![],
            ),
        );
        let value = |v: &'static str, create, version| {
            Some(Value {
                value: b(v),
                mod_revision: if v == "old" { 1 } else { 2 },
                create_revision: create,
                version,
            })
        };
        assert_eq!(
            result,
            ApplyResult::Txn {
                succeeded: true,
                revision: 2,
                results: vec![
                    OpResult::Get {
                        key: b("a"),
                        value: value("old", 1, 1)
                    },
                    OpResult::Put { revision: 2 },
                    OpResult::Get {
                        key: b("a"),
                        value: value("new", 1, 2)
                    },
                    OpResult::Delete { deleted: true },
                    OpResult::Get {
                        key: b("a"),
                        value: None
                    },
                    OpResult::Delete { deleted: false },
                    OpResult::Put { revision: 2 },
                    OpResult::Get {
                        key: b("a"),
                        value: value("again", 2, 1)
                    },
                ],
            }
        );
    }

    #[test]
    fn range_reads_a_prefix_in_key_order_up_to_a_limit() {
        let mut store = KvStore::new([]);
        for (index, key) in ["b/2", "a", "b/1", "b", "c", "b/3"].into_iter().enumerate() {
            store.apply(index as u64 + 1, &put(key, "v"));
        }
        let keys = |prefix: &[u8], limit| -> Vec<Bytes> {
            store
                .range(prefix, limit)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(b"b/", None), vec![b("b/1"), b("b/2"), b("b/3")]);
        assert_eq!(keys(b"b", Some(2)), vec![b("b"), b("b/1")]);
        assert_eq!(keys(b"", None).len(), 6);
        assert!(keys(b"d", None).is_empty());
        assert!(keys(b"a", Some(0)).is_empty());
    }

    #[test]
    fn membership_entries_update_the_table_and_advance_the_index() {
        let address = |id: u64| MemberAddress {
            id,
            peer_addr: format!("p{id}"),
            client_addr: format!("c{id}"),
        };
        let mut store = KvStore::new([address(1), address(2)]);
        assert_eq!(
            store.members(),
            vec![(address(1), true), (address(2), true)]
        );
        let context = crate::kv::encode_member_context(&[address(3)]);
        store
            .apply_membership(4, &BTreeSet::from([1, 2]), &BTreeSet::from([3]), &context)
            .unwrap();
        assert_eq!(store.applied_index(), 4);
        assert_eq!(
            store.members(),
            vec![(address(1), true), (address(2), true), (address(3), false)]
        );
        // Promote 3, remove 2; no context needed.
        store
            .apply_membership(6, &BTreeSet::from([1, 3]), &BTreeSet::new(), &[])
            .unwrap();
        assert_eq!(
            store.members(),
            vec![(address(1), true), (address(3), true)]
        );
        // A malformed context is reported, but the configuration still applies.
        let error = store
            .apply_membership(7, &BTreeSet::from([1, 3, 4]), &BTreeSet::new(), &[1, 9])
            .unwrap_err();
        assert!(matches!(error, KvError::Truncated { .. }));
        assert_eq!(store.applied_index(), 7);
        assert_eq!(store.members().len(), 3);
    }
}
