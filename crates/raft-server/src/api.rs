//! The HTTP API's JSON bodies (../../docs/http-api.md has the routes). One set of
//! types shared by the server, `raftctl` and `raft-bench`, so the two sides cannot
//! drift. Values travel as raw bytes in `PUT`/`GET` bodies; inside JSON they are UTF-8
//! strings, or `value_base64` when they are not valid UTF-8.

use serde::{Deserialize, Serialize};

/// `PUT /v1/kv/{key}` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// The revision (log index) of the write.
    pub revision: u64,
}

/// `DELETE /v1/kv/{key}` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// The revision (log index) of the delete.
    pub revision: u64,
    /// Whether the key existed.
    pub deleted: bool,
}

/// One key-value pair in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key (UTF-8).
    pub key: String,
    /// The value, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value in standard base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// The revision of the write that produced the value.
    pub mod_revision: u64,
}

/// `GET /v1/kv?prefix=P&limit=N` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The store's revision when the range was read.
    pub revision: u64,
    /// The pairs, in key order.
    pub kvs: Vec<KeyValue>,
}

/// One condition of a transaction. Exactly one of `value`, `mod_revision` and
/// `exists` is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// The key compared.
    pub key: String,
    /// Holds if the key exists with this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Holds if the key's last write has this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
    /// Holds if the key's existence is as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnOp {
    /// Write a value.
    Put {
        /// The key.
        key: String,
        /// The value (UTF-8).
        value: String,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Read a key (as of the transaction).
    Get {
        /// The key.
        key: String,
    },
}

/// `POST /v1/txn` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    /// Conditions; all must hold for `success` to run, else `failure` runs.
    #[serde(default)]
    pub compare: Vec<Compare>,
    /// Operations when every condition holds.
    #[serde(default)]
    pub success: Vec<TxnOp>,
    /// Operations otherwise.
    #[serde(default)]
    pub failure: Vec<TxnOp>,
}

/// The result of one transaction operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnOpResult {
    /// A put took effect at `revision`.
    Put {
        /// The revision of the write.
        revision: u64,
    },
    /// A delete; `deleted` says whether the key existed.
    Delete {
        /// Whether the key existed.
        deleted: bool,
    },
    /// A get; `kv` is absent if the key does not exist.
    Get {
        /// The pair read, if the key exists.
        kv: Option<KeyValue>,
    },
}

/// `POST /v1/txn` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether every condition held (and `success` ran).
    pub succeeded: bool,
    /// The revision of the transaction (its log index).
    pub revision: u64,
    /// One result per operation of the branch that ran.
    pub results: Vec<TxnOpResult>,
}

/// A cluster member as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member id.
    pub id: u64,
    /// Its peer (QUIC) address.
    pub peer_addr: String,
    /// Its client (HTTP) address.
    pub client_addr: String,
    /// Whether it votes (false: a learner).
    pub voter: bool,
}

/// `GET /v1/members` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersResponse {
    /// Every member.
    pub members: Vec<Member>,
}

/// `POST /v1/members` body: add a learner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The new member's id (never reused).
    pub id: u64,
    /// Its peer (QUIC) address.
    pub peer_addr: String,
    /// Its client (HTTP) address.
    pub client_addr: String,
}

/// `POST /v1/leader/transfer` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The voter to hand leadership to; absent: the most caught-up voter.
    #[serde(default)]
    pub to: Option<u64>,
}

/// `POST /v1/leader/transfer` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferResponse {
    /// The leader after the transfer.
    pub leader: u64,
}

/// `POST /v1/snapshot` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// The snapshot's size.
    pub bytes: u64,
}

/// `GET /v1/status` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// This member's id.
    pub id: u64,
    /// The cluster's id.
    pub cluster_id: String,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader this member knows of.
    pub leader_id: Option<u64>,
    /// The highest index known committed.
    pub commit_index: u64,
    /// The highest index applied.
    pub applied_index: u64,
    /// The last index of the log.
    pub last_log_index: u64,
    /// The index of the newest snapshot.
    pub snapshot_index: u64,
    /// Whether this member restarted from a log whose damaged last write may have
    /// held entries it had acknowledged, and no leader has caught it up yet: until
    /// then it neither votes nor campaigns. Absent (false) from older servers.
    #[serde(default)]
    pub catching_up: bool,
    /// Every member.
    pub members: Vec<Member>,
    /// The server's version.
    pub version: String,
}

/// The error body: `{"error":{"code":"...","message":"..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// The error's code and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One of `invalid`, `not_found`, `too_large`, `no_leader`, `shutting_down`,
    /// `timeout`, `internal`.
    pub code: String,
    /// A sentence for humans.
    pub message: String,
}

/// The response header carrying a key's mod revision on `GET /v1/kv/{key}`.
pub const REVISION_HEADER: &str = "X-Raft-Revision";
