//! Conversions between the HTTP API's JSON types ([`crate::api`]) and the state
//! machine's: requests into validated [`Command`]s, results into response bodies.
//! Must keep true: every command built here passes [`Command::validate`], and the
//! txn semantics the API documents are the ones [`KvStore`](crate::kv::KvStore)
//! applies.

use bytes::Bytes;
use serde::Serialize;

use super::KvError;
use super::command::{Command, Compare, Condition, TxnOp, validate_key};
use super::members::MemberAddress;
use super::store::{ApplyResult, OpResult, Value};
use crate::api;

/// The JSON body answering an applied command: serializes as the API's
/// `PutResponse`, `DeleteResponse` or `TxnResponse`, whichever the command was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ApplyResponse {
    /// The answer to a put.
    Put(api::PutResponse),
    /// The answer to a delete.
    Delete(api::DeleteResponse),
    /// The answer to a transaction.
    Txn(api::TxnResponse),
}

impl From<&ApplyResult> for ApplyResponse {
    fn from(result: &ApplyResult) -> ApplyResponse {
        match result {
            ApplyResult::Put { revision } => ApplyResponse::Put(api::PutResponse {
                revision: *revision,
            }),
            ApplyResult::Delete { revision, deleted } => {
                ApplyResponse::Delete(api::DeleteResponse {
                    revision: *revision,
                    deleted: *deleted,
                })
            }
            ApplyResult::Txn {
                succeeded,
                revision,
                results,
            } => ApplyResponse::Txn(api::TxnResponse {
                succeeded: *succeeded,
                revision: *revision,
                results: results.iter().map(api::TxnOpResult::from).collect(),
            }),
        }
    }
}

impl From<&OpResult> for api::TxnOpResult {
    fn from(result: &OpResult) -> api::TxnOpResult {
        match result {
            OpResult::Put { revision } => api::TxnOpResult::Put {
                revision: *revision,
            },
            OpResult::Delete { deleted } => api::TxnOpResult::Delete { deleted: *deleted },
            OpResult::Get { key, value } => api::TxnOpResult::Get {
                kv: value.as_ref().map(|value| api_key_value(key, value)),
            },
        }
    }
}

/// A stored pair as the API shows it: the value as a UTF-8 string when it is one,
/// else in standard base64 (`value_base64`). A key that is not UTF-8 is shown with
/// replacement characters (the API's keys are UTF-8).
pub fn api_key_value(key: &[u8], value: &Value) -> api::KeyValue {
    let (text, base64) = match std::str::from_utf8(&value.value) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(base64_standard(&value.value))),
    };
    api::KeyValue {
        key: String::from_utf8_lossy(key).into_owned(),
        value: text,
        value_base64: base64,
        mod_revision: value.mod_revision,
    }
}

impl TryFrom<api::TxnRequest> for Command {
    type Error = KvError;

    /// Validates every key (1..=4096 bytes) and that each compare gives exactly one
    /// of `value`, `mod_revision` and `exists`.
    fn try_from(request: api::TxnRequest) -> Result<Command, KvError> {
        let compare = request
            .compare
            .into_iter()
            .enumerate()
            .map(|(index, compare)| compare_from_api(index, compare))
            .collect::<Result<Vec<_>, _>>()?;
        let ops = |ops: Vec<api::TxnOp>| -> Result<Vec<TxnOp>, KvError> {
            ops.into_iter().map(TxnOp::try_from).collect()
        };
        let command = Command::Txn {
            compare,
            success: ops(request.success)?,
            failure: ops(request.failure)?,
        };
        command.validate()?;
        Ok(command)
    }
}

impl TryFrom<api::TxnOp> for TxnOp {
    type Error = KvError;

    /// Validates the key (1..=4096 bytes).
    fn try_from(op: api::TxnOp) -> Result<TxnOp, KvError> {
        let op = match op {
            api::TxnOp::Put { key, value } => TxnOp::Put {
                key: Bytes::from(key),
                value: Bytes::from(value),
            },
            api::TxnOp::Delete { key } => TxnOp::Delete {
                key: Bytes::from(key),
            },
            api::TxnOp::Get { key } => TxnOp::Get {
                key: Bytes::from(key),
            },
        };
        validate_key(op.key())?;
        Ok(op)
    }
}

fn compare_from_api(index: usize, compare: api::Compare) -> Result<Compare, KvError> {
    let key = Bytes::from(compare.key);
    validate_key(&key)?;
    let condition = match (compare.value, compare.mod_revision, compare.exists) {
        (Some(value), None, None) => Condition::Value(Bytes::from(value)),
        (None, Some(revision), None) => Condition::ModRevision(revision),
        (None, None, Some(true)) => Condition::Exists,
        (None, None, Some(false)) => Condition::Absent,
        _ => return Err(KvError::InvalidCompare { index }),
    };
    Ok(Compare { key, condition })
}

impl From<api::AddMemberRequest> for MemberAddress {
    fn from(request: api::AddMemberRequest) -> MemberAddress {
        MemberAddress {
            id: request.id,
            peer_addr: request.peer_addr,
            client_addr: request.client_addr,
        }
    }
}

impl MemberAddress {
    /// The member as the API shows it.
    pub fn to_api(&self, voter: bool) -> api::Member {
        api::Member {
            id: self.id,
            peer_addr: self.peer_addr.clone(),
            client_addr: self.client_addr.clone(),
            voter,
        }
    }
}

/// Standard base64 (RFC 4648 §4) with padding.
fn base64_standard(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: &'static [u8], mod_revision: u64) -> Value {
        Value {
            value: Bytes::from_static(bytes),
            mod_revision,
            create_revision: 1,
            version: 1,
        }
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_standard(input.as_bytes()), output);
        }
    }

    #[test]
    fn key_values_use_text_or_base64() {
        let text = api_key_value(b"k", &value(b"hello", 7));
        assert_eq!(text.value.as_deref(), Some("hello"));
        assert_eq!(text.value_base64, None);
        assert_eq!(text.mod_revision, 7);
        let binary = api_key_value(b"k", &value(&[0xff, 0x00], 8));
        assert_eq!(binary.value, None);
        assert_eq!(binary.value_base64.as_deref(), Some("/wA="));
    }

    #[test]
    fn txn_request_from_json_converts_and_validates() {
        let request: api::TxnRequest = serde_json::from_str(
            r#"{"compare":[{"key":"a","value":"1"},{"key":"b","mod_revision":0},
                           {"key":"c","exists":true},{"key":"d","exists":false}],
                "success":[{"put":{"key":"a","value":"2"}},{"get":{"key":"a"}}],
                "failure":[{"delete":{"key":"a"}}]}"#,
        )
        .unwrap();
        let command = Command::try_from(request).unwrap();
        let key = |k: &'static str| Bytes::from_static(k.as_bytes());
        assert_eq!(
            command,
            Command::Txn {
                compare: vec![
                    Compare {
                        key: key("a"),
                        condition: Condition::Value(key("1"))
                    },
                    Compare {
                        key: key("b"),
                        condition: Condition::ModRevision(0)
                    },
                    Compare {
                        key: key("c"),
                        condition: Condition::Exists
                    },
                    Compare {
                        key: key("d"),
                        condition: Condition::Absent
                    },
                ],
                success: vec![
                    TxnOp::Put {
                        key: key("a"),
                        value: key("2")
                    },
                    TxnOp::Get { key: key("a") },
                ],
                failure: vec![TxnOp::Delete { key: key("a") }],
            }
        );

        let two_conditions: api::TxnRequest =
            serde_json::from_str(r#"{"compare":[{"key":"a","value":"1","exists":true}]}"#).unwrap();
        assert!(matches!(
            Command::try_from(two_conditions),
            Err(KvError::InvalidCompare { index: 0 })
        ));
        let no_condition: api::TxnRequest =
            serde_json::from_str(r#"{"compare":[{"key":"a","exists":true},{"key":"a"}]}"#).unwrap();
        assert!(matches!(
            Command::try_from(no_condition),
            Err(KvError::InvalidCompare { index: 1 })
        ));
        let empty_key: api::TxnRequest =
            serde_json::from_str(r#"{"success":[{"get":{"key":""}}]}"#).unwrap();
        assert!(matches!(
            Command::try_from(empty_key),
            Err(KvError::KeyLength { length: 0 })
        ));
        let long_key = api::TxnRequest {
            compare: vec![],
            success: vec![api::TxnOp::Delete {
                key: "k".repeat(4097),
            }],
            failure: vec![],
        };
        assert!(matches!(
            Command::try_from(long_key),
            Err(KvError::KeyLength { length: 4097 })
        ));
    }

    #[test]
    fn results_serialize_as_the_api_bodies() {
        let txn = ApplyResult::Txn {
            succeeded: true,
            revision: 9,
            results: vec![
                OpResult::Put { revision: 9 },
                OpResult::Delete { deleted: false },
                OpResult::Get {
                    key: Bytes::from_static(b"a"),
                    value: Some(value(b"v", 9)),
                },
                OpResult::Get {
                    key: Bytes::from_static(b"b"),
                    value: None,
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(ApplyResponse::from(&txn)).unwrap(),
            serde_json::json!({
                "succeeded": true,
                "revision": 9,
                "results": [
                    {"put": {"revision": 9}},
                    {"delete": {"deleted": false}},
                    {"get": {"kv": {"key": "a", "value": "v", "mod_revision": 9}}},
                    {"get": {"kv": null}},
                ],
            })
        );
        let put = ApplyResult::Put { revision: 3 };
        assert_eq!(
            serde_json::to_value(ApplyResponse::from(&put)).unwrap(),
            serde_json::json!({"revision": 3})
        );
        let delete = ApplyResult::Delete {
            revision: 4,
            deleted: true,
        };
        assert_eq!(
            serde_json::to_value(ApplyResponse::from(&delete)).unwrap(),
            serde_json::json!({"revision": 4, "deleted": true})
        );
    }
}
