//! [`Command`], what a raft log entry carries for the key-value store, and its
//! compact, versioned binary encoding. Must keep true: `decode(encode(c)) == c` for
//! every valid command; decoding never panics, checks every length against the
//! bytes that remain, and accepts only valid commands (keys 1..=4096 bytes).
//!
//! Encoding, format version 1 (integers little-endian; a *string* is a u32 length
//! followed by that many bytes):
//!
//! ```text
//! command   = version:u8 (= 1) body
//! body      = 1:u8 key:string value:string                          (put)
//!           | 2:u8 key:string                                       (delete)
//!           | 3:u8 count:u32 compare{count} count:u32 op{count}     (txn: compares,
//!                  count:u32 op{count}                               success, failure)
//! compare   = key:string (1:u8 value:string | 2:u8 mod_revision:u64 | 3:u8 | 4:u8)
//!             (value equals | mod revision equals | exists | absent)
//! op        = 1:u8 key:string value:string | 2:u8 key:string | 3:u8 key:string
//!             (put | delete | get)
//! ```
//!
//! Nothing may follow the command.

use bytes::{BufMut, Bytes, BytesMut};

use super::KvError;
use super::wire::{Cursor, put_bytes};

/// The largest key, in bytes. Keys are 1..=`MAX_KEY_BYTES` bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// The format version this build writes (and the only one it reads).
const FORMAT_VERSION: u8 = 1;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_TXN: u8 = 3;

const CONDITION_VALUE: u8 = 1;
const CONDITION_MOD_REVISION: u8 = 2;
const CONDITION_EXISTS: u8 = 3;
const CONDITION_ABSENT: u8 = 4;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_GET: u8 = 3;

/// The fewest bytes a compare or an operation takes (a 1-byte key): a u32 length,
/// the key byte and a tag. Counts are checked against it before decoding elements.
const MIN_ELEMENT_BYTES: usize = 4 + 1 + 1;

/// A state machine command: the payload of one raft log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Write `value` under `key`.
    Put {
        /// The key (1..=4096 bytes).
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Remove `key`.
    Delete {
        /// The key (1..=4096 bytes).
        key: Bytes,
    },
    /// If every compare holds, run `success`, else run `failure`, atomically.
    Txn {
        /// The conditions; an empty list holds.
        compare: Vec<Compare>,
        /// The operations run when every condition holds.
        success: Vec<TxnOp>,
        /// The operations run otherwise.
        failure: Vec<TxnOp>,
    },
}

/// One condition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key the condition is about (1..=4096 bytes).
    pub key: Bytes,
    /// What must be true of it.
    pub condition: Condition,
}

/// What a [`Compare`] requires of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The key exists and its value equals this.
    Value(Bytes),
    /// The key's mod revision equals this. As in etcd, a key that does not exist has
    /// mod revision 0, so `ModRevision(0)` holds exactly when the key is absent
    /// (revisions are log indexes, which start at 1).
    ModRevision(u64),
    /// The key exists.
    Exists,
    /// The key does not exist.
    Absent,
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Write a value.
    Put {
        /// The key (1..=4096 bytes).
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Remove a key.
    Delete {
        /// The key (1..=4096 bytes).
        key: Bytes,
    },
    /// Read a key as of this point of the transaction (after the branch's earlier
    /// operations).
    Get {
        /// The key (1..=4096 bytes).
        key: Bytes,
    },
}

/// Checks that a key is 1..=[`MAX_KEY_BYTES`] bytes long.
pub fn validate_key(key: &[u8]) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyLength { length: key.len() });
    }
    Ok(())
}

/// Checks that a value fits the encoding's u32 length prefix.
fn validate_value(value: &[u8]) -> Result<(), KvError> {
    if u32::try_from(value.len()).is_err() {
        return Err(KvError::TooLarge {
            what: "value",
            length: value.len() as u64,
            limit: u64::from(u32::MAX),
        });
    }
    Ok(())
}

fn validate_count(what: &'static str, count: usize) -> Result<(), KvError> {
    if u32::try_from(count).is_err() {
        return Err(KvError::TooLarge {
            what,
            length: count as u64,
            limit: u64::from(u32::MAX),
        });
    }
    Ok(())
}

impl Command {
    /// Checks every key (1..=4096 bytes) and that every value and list fits the
    /// encoding. [`Command::decode`] only returns valid commands, and
    /// [`KvStore::apply`](crate::kv::KvStore::apply) and [`Command::encode`] accept
    /// only valid ones.
    pub fn validate(&self) -> Result<(), KvError> {
        match self {
            Command::Put { key, value } => {
                validate_key(key)?;
                validate_value(value)
            }
            Command::Delete { key } => validate_key(key),
            Command::Txn {
                compare,
                success,
                failure,
            } => {
                validate_count("compare list", compare.len())?;
                validate_count("success list", success.len())?;
                validate_count("failure list", failure.len())?;
                for c in compare {
                    validate_key(&c.key)?;
                    if let Condition::Value(value) = &c.condition {
                        validate_value(value)?;
                    }
                }
                success.iter().chain(failure).try_for_each(TxnOp::validate)
            }
        }
    }

    /// Encodes the command (format version 1, see the module docs).
    ///
    /// # Panics
    ///
    /// If the command is not valid ([`Command::validate`]): a field longer than
    /// `u32::MAX` bytes cannot be encoded. Keys are validated where commands are
    /// built from requests, and values are bounded far below that by the server.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        out.put_u8(FORMAT_VERSION);
        match self {
            Command::Put { key, value } => {
                out.put_u8(TAG_PUT);
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            Command::Delete { key } => {
                out.put_u8(TAG_DELETE);
                put_bytes(&mut out, key);
            }
            Command::Txn {
                compare,
                success,
                failure,
            } => {
                out.put_u8(TAG_TXN);
                put_count(&mut out, compare.len());
                for c in compare {
                    put_bytes(&mut out, &c.key);
                    match &c.condition {
                        Condition::Value(value) => {
                            out.put_u8(CONDITION_VALUE);
                            put_bytes(&mut out, value);
                        }
                        Condition::ModRevision(revision) => {
                            out.put_u8(CONDITION_MOD_REVISION);
                            out.put_u64_le(*revision);
                        }
                        Condition::Exists => out.put_u8(CONDITION_EXISTS),
                        Condition::Absent => out.put_u8(CONDITION_ABSENT),
                    }
                }
                for branch in [success, failure] {
                    put_count(&mut out, branch.len());
                    for op in branch {
                        op.encode_into(&mut out);
                    }
                }
            }
        }
        out.freeze()
    }

    /// Whether `encoded` (an output of [`Command::encode`]) is a put, read from its
    /// first two bytes without decoding the rest.
    pub fn is_put(encoded: &[u8]) -> bool {
        encoded.get(..2) == Some(&[FORMAT_VERSION, TAG_PUT][..])
    }

    /// Decodes a command. Never panics; keys and values share `input`'s buffer, and
    /// every length and count is checked against the bytes that remain before use.
    pub fn decode(input: Bytes) -> Result<Command, KvError> {
        let mut cursor = Cursor::new(input);
        let version = cursor.u8("command format version")?;
        if version != FORMAT_VERSION {
            return Err(KvError::UnsupportedVersion {
                what: "command",
                version: u32::from(version),
            });
        }
        let command = match cursor.u8("command tag")? {
            TAG_PUT => Command::Put {
                key: decode_key(&mut cursor)?,
                value: cursor.bytes("value")?,
            },
            TAG_DELETE => Command::Delete {
                key: decode_key(&mut cursor)?,
            },
            TAG_TXN => {
                let count = cursor.count("compare count", MIN_ELEMENT_BYTES)?;
                let mut compare = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = decode_key(&mut cursor)?;
                    let condition = match cursor.u8("compare tag")? {
                        CONDITION_VALUE => Condition::Value(cursor.bytes("compare value")?),
                        CONDITION_MOD_REVISION => {
                            Condition::ModRevision(cursor.u64("compare mod revision")?)
                        }
                        CONDITION_EXISTS => Condition::Exists,
                        CONDITION_ABSENT => Condition::Absent,
                        _ => {
                            return Err(KvError::Malformed {
                                what: "compare tag",
                            });
                        }
                    };
                    compare.push(Compare { key, condition });
                }
                let success = decode_ops(&mut cursor, "success count")?;
                let failure = decode_ops(&mut cursor, "failure count")?;
                Command::Txn {
                    compare,
                    success,
                    failure,
                }
            }
            _ => {
                return Err(KvError::Malformed {
                    what: "command tag",
                });
            }
        };
        cursor.finish("bytes after the command")?;
        Ok(command)
    }

    /// A guess at the encoded size, so encoding allocates once in the common case.
    fn encoded_len_hint(&self) -> usize {
        match self {
            Command::Put { key, value } => 2 + 8 + key.len() + value.len(),
            Command::Delete { key } => 2 + 4 + key.len(),
            Command::Txn { compare, .. } => 14 + compare.len() * 16,
        }
    }
}

impl TxnOp {
    /// The key the operation is about.
    pub fn key(&self) -> &Bytes {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => key,
        }
    }

    fn validate(&self) -> Result<(), KvError> {
        validate_key(self.key())?;
        if let TxnOp::Put { value, .. } = self {
            validate_value(value)?;
        }
        Ok(())
    }

    fn encode_into(&self, out: &mut BytesMut) {
        match self {
            TxnOp::Put { key, value } => {
                out.put_u8(OP_PUT);
                put_bytes(out, key);
                put_bytes(out, value);
            }
            TxnOp::Delete { key } => {
                out.put_u8(OP_DELETE);
                put_bytes(out, key);
            }
            TxnOp::Get { key } => {
                out.put_u8(OP_GET);
                put_bytes(out, key);
            }
        }
    }
}

fn put_count(out: &mut BytesMut, count: usize) {
    out.put_u32_le(u32::try_from(count).expect("list longer than u32::MAX elements"));
}

fn decode_key(cursor: &mut Cursor) -> Result<Bytes, KvError> {
    let key = cursor.bytes("key")?;
    validate_key(&key)?;
    Ok(key)
}

fn decode_ops(cursor: &mut Cursor, what: &'static str) -> Result<Vec<TxnOp>, KvError> {
    let count = cursor.count(what, MIN_ELEMENT_BYTES)?;
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let op = match cursor.u8("operation tag")? {
            OP_PUT => TxnOp::Put {
                key: decode_key(cursor)?,
                value: cursor.bytes("value")?,
            },
            OP_DELETE => TxnOp::Delete {
                key: decode_key(cursor)?,
            },
            OP_GET => TxnOp::Get {
                key: decode_key(cursor)?,
            },
            _ => {
                return Err(KvError::Malformed {
                    what: "operation tag",
                });
            }
        };
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Keys from a small alphabet, so that commands in a sequence collide often.
    pub(crate) fn key() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            4 => prop::sample::select(vec!["a", "ab", "b", "ba", "c"]).prop_map(Bytes::from),
            1 => prop::collection::vec(any::<u8>(), 1..=8).prop_map(Bytes::from),
        ]
    }

    pub(crate) fn value() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            prop::sample::select(vec!["", "x", "y"]).prop_map(Bytes::from),
            prop::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from),
        ]
    }

    fn condition() -> impl Strategy<Value = Condition> {
        prop_oneof![
            value().prop_map(Condition::Value),
            (0u64..40).prop_map(Condition::ModRevision),
            Just(Condition::Exists),
            Just(Condition::Absent),
        ]
    }

    fn op() -> impl Strategy<Value = TxnOp> {
        prop_oneof![
            (key(), value()).prop_map(|(key, value)| TxnOp::Put { key, value }),
            key().prop_map(|key| TxnOp::Delete { key }),
            key().prop_map(|key| TxnOp::Get { key }),
        ]
    }

    pub(crate) fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (key(), value()).prop_map(|(key, value)| Command::Put { key, value }),
            key().prop_map(|key| Command::Delete { key }),
            (
                prop::collection::vec(
                    (key(), condition()).prop_map(|(key, condition)| Compare { key, condition }),
                    0..3
                ),
                prop::collection::vec(op(), 0..4),
                prop::collection::vec(op(), 0..4),
            )
                .prop_map(|(compare, success, failure)| Command::Txn {
                    compare,
                    success,
                    failure
                }),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(command in command()) {
            let encoded = command.encode();
            prop_assert_eq!(Command::decode(encoded)?, command);
        }

        #[test]
        fn decode_of_arbitrary_bytes_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            if let Ok(command) = Command::decode(Bytes::from(bytes.clone())) {
                // Whatever decodes is valid and re-encodes to the same bytes.
                prop_assert!(command.validate().is_ok());
                prop_assert_eq!(&command.encode()[..], &bytes[..]);
            }
        }

        #[test]
        fn decode_of_mutated_encodings_never_panics(
            command in command(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = command.encode().to_vec();
            for (at, byte) in flips {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let _ = Command::decode(Bytes::from(bytes));
        }

        #[test]
        fn every_proper_prefix_is_an_error(command in command()) {
            let encoded = command.encode();
            for length in 0..encoded.len() {
                prop_assert!(Command::decode(encoded.slice(..length)).is_err());
            }
        }
    }

    #[test]
    fn put_layout_is_as_documented() {
        let command = Command::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"vv"),
        };
        assert_eq!(
            &command.encode()[..],
            &[1, 1, 1, 0, 0, 0, b'k', 2, 0, 0, 0, b'v', b'v'][..]
        );
    }

    #[test]
    fn truncated_and_oversized_lengths_are_typed_errors() {
        let encoded = Command::Delete {
            key: Bytes::from_static(b"key"),
        }
        .encode();
        assert!(matches!(
            Command::decode(encoded.slice(..encoded.len() - 1)),
            Err(KvError::Truncated { what: "key" })
        ));
        // A length of u32::MAX with nothing behind it allocates nothing.
        let huge = Bytes::from_static(&[1, 2, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            Command::decode(huge),
            Err(KvError::Truncated { .. })
        ));
        // A compare count of u32::MAX is refused before any allocation.
        let many = Bytes::from_static(&[1, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(matches!(
            Command::decode(many),
            Err(KvError::Truncated {
                what: "compare count"
            })
        ));
        assert!(matches!(
            Command::decode(Bytes::new()),
            Err(KvError::Truncated { .. })
        ));
    }

    #[test]
    fn is_put_tells_puts_from_deletes_and_transactions() {
        let key = Bytes::from_static(b"k");
        let put = Command::Put {
            key: key.clone(),
            value: Bytes::from_static(b"v"),
        };
        assert!(Command::is_put(&put.encode()));
        assert!(!Command::is_put(&Command::Delete { key }.encode()));
        assert!(!Command::is_put(b""));
        assert!(!Command::is_put(&[FORMAT_VERSION]));
    }

    #[test]
    fn invalid_keys_versions_tags_and_trailing_bytes_are_rejected() {
        let empty_key = Bytes::from_static(&[1, 2, 0, 0, 0, 0]);
        assert!(matches!(
            Command::decode(empty_key),
            Err(KvError::KeyLength { length: 0 })
        ));
        let mut long = BytesMut::new();
        long.put_u8(1);
        long.put_u8(TAG_DELETE);
        put_bytes(&mut long, &[b'k'; MAX_KEY_BYTES + 1]);
        assert!(matches!(
            Command::decode(long.freeze()),
            Err(KvError::KeyLength { length: 4097 })
        ));
        let longest = Command::Delete {
            key: Bytes::from(vec![b'k'; MAX_KEY_BYTES]),
        };
        assert_eq!(Command::decode(longest.encode()).unwrap(), longest);

        assert!(matches!(
            Command::decode(Bytes::from_static(&[2, 2, 1, 0, 0, 0, b'k'])),
            Err(KvError::UnsupportedVersion { version: 2, .. })
        ));
        assert!(matches!(
            Command::decode(Bytes::from_static(&[1, 9])),
            Err(KvError::Malformed {
                what: "command tag"
            })
        ));
        assert!(matches!(
            Command::decode(Bytes::from_static(&[1, 2, 1, 0, 0, 0, b'k', 0])),
            Err(KvError::Malformed { .. })
        ));
    }

    #[test]
    fn validate_rejects_bad_keys_anywhere() {
        let bad = Command::Txn {
            compare: vec![],
            success: vec![],
            failure: vec![TxnOp::Get { key: Bytes::new() }],
        };
        assert!(matches!(
            bad.validate(),
            Err(KvError::KeyLength { length: 0 })
        ));
    }
}
