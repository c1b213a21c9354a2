//! The request path, independent of the protocol a request arrived over: validates a
//! client request, hands it to the driver, waits for the outcome and shapes the
//! answer as the API types. HTTP (and, later, gRPC) call these methods. Keeps true: a
//! write is answered `Ok` only after its entry is committed and applied here; a
//! linearizable read returns state that includes every write acknowledged before it
//! began; a request whose outcome is unknown is never reported as failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use raft_core::{MembershipChange, NodeId, ReadMode, Role};
use tokio::sync::{mpsc, oneshot};

use crate::api;
use crate::driver::{Request, ServiceError, Shared};
use crate::kv::{self, ApplyResponse, ApplyResult, Command, MemberAddress};

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// ReadIndex: linearizable (the default).
    Linearizable,
    /// The leader's lease: linearizable if clocks behave.
    Lease,
    /// This member's state as it is: may be stale.
    Stale,
}

/// The member's request path. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: u64,
    pub(crate) cluster_id: String,
    pub(crate) max_value_bytes: u64,
    pub(crate) request_timeout: Duration,
    pub(crate) ready_lag: u64,
    pub(crate) shutting_down: Arc<AtomicBool>,
}

impl Service {
    /// The largest accepted value.
    pub fn max_value_bytes(&self) -> u64 {
        self.max_value_bytes
    }

    /// The metrics registry of this member.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    fn check_open(&self) -> Result<(), ServiceError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(ServiceError::ShuttingDown);
        }
        Ok(())
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ServiceError>>) -> Request,
        on_timeout: ServiceError,
    ) -> Result<T, ServiceError> {
        self.check_open()?;
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(make(reply))
            .await
            .map_err(|_| ServiceError::ShuttingDown)?;
        match tokio::time::timeout(self.request_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ServiceError::Unknown),
            Err(_) => Err(on_timeout),
        }
    }

    async fn propose(&self, command: Command) -> Result<ApplyResult, ServiceError> {
        let command = command.encode();
        self.ask(
            |reply| Request::Propose { command, reply },
            ServiceError::Unknown,
        )
        .await
    }

    async fn barrier(&self, consistency: Consistency) -> Result<(), ServiceError> {
        let mode = match consistency {
            Consistency::Stale => return self.check_open(),
            Consistency::Linearizable => ReadMode::Quorum,
            Consistency::Lease => ReadMode::Lease,
        };
        self.ask(
            |reply| Request::Read { mode, reply },
            ServiceError::NotLeader { leader: None },
        )
        .await
    }

    /// Writes `value` at `key`.
    pub async fn put(&self, key: Bytes, value: Bytes) -> Result<api::PutResponse, ServiceError> {
        kv::validate_key(&key).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if value.len() as u64 > self.max_value_bytes {
            return Err(ServiceError::Invalid("value too large".into()));
        }
        match self.propose(Command::Put { key, value }).await? {
            ApplyResult::Put { revision } => Ok(api::PutResponse { revision }),
            other => Err(ServiceError::Internal(format!(
                "unexpected result {other:?}"
            ))),
        }
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: Bytes) -> Result<api::DeleteResponse, ServiceError> {
        kv::validate_key(&key).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        match self.propose(Command::Delete { key }).await? {
            ApplyResult::Delete { revision, deleted } => {
                Ok(api::DeleteResponse { revision, deleted })
            }
            other => Err(ServiceError::Internal(format!(
                "unexpected result {other:?}"
            ))),
        }
    }

    /// Runs a compare-and-swap transaction.
    pub async fn txn(&self, request: api::TxnRequest) -> Result<api::TxnResponse, ServiceError> {
        let command =
            Command::try_from(request).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let result = self.propose(command).await?;
        match ApplyResponse::from(&result) {
            ApplyResponse::Txn(response) => Ok(response),
            _ => Err(ServiceError::Internal(
                "a transaction produced another result".into(),
            )),
        }
    }

    /// Reads `key`: its value and mod revision, if it exists.
    pub async fn get(
        &self,
        key: Bytes,
        consistency: Consistency,
    ) -> Result<Option<(Bytes, u64)>, ServiceError> {
        kv::validate_key(&key).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        self.barrier(consistency).await?;
        let kv = self.shared.kv.read().expect("kv lock");
        Ok(kv.get(&key).map(|v| (v.value.clone(), v.mod_revision)))
    }

    /// Reads the keys starting with `prefix`, at most `limit` of them.
    pub async fn range(
        &self,
        prefix: Bytes,
        limit: Option<usize>,
        consistency: Consistency,
    ) -> Result<api::RangeResponse, ServiceError> {
        self.barrier(consistency).await?;
        let kv = self.shared.kv.read().expect("kv lock");
        let kvs = kv
            .range(&prefix, limit)
            .into_iter()
            .map(|(key, value)| kv::api_key_value(&key, value))
            .collect();
        Ok(api::RangeResponse {
            revision: kv.revision(),
            kvs,
        })
    }

    /// Every member, from the state machine.
    pub fn members(&self) -> api::MembersResponse {
        let kv = self.shared.kv.read().expect("kv lock");
        api::MembersResponse {
            members: kv
                .members()
                .into_iter()
                .map(|(m, voter)| m.to_api(voter))
                .collect(),
        }
    }

    /// Every member, as of a linearizable read (so a change acknowledged before the
    /// call is visible, whichever member answers).
    pub async fn members_linearizable(&self) -> Result<api::MembersResponse, ServiceError> {
        self.barrier(Consistency::Linearizable).await?;
        Ok(self.members())
    }

    /// The client address of member `id`, if known.
    pub fn client_addr(&self, id: NodeId) -> Option<String> {
        let kv = self.shared.kv.read().expect("kv lock");
        kv.members()
            .into_iter()
            .find(|(m, _)| m.id == id.0)
            .map(|(m, _)| m.client_addr)
    }

    /// Adds a member as a learner.
    pub async fn add_member(&self, request: api::AddMemberRequest) -> Result<(), ServiceError> {
        if request.id == 0 {
            return Err(ServiceError::Invalid("member id must not be 0".into()));
        }
        for addr in [&request.peer_addr, &request.client_addr] {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|_| ServiceError::Invalid(format!("not an address: {addr}")))?;
        }
        let member = MemberAddress::from(request);
        let change = MembershipChange::AddLearner(NodeId(member.id));
        self.change_membership(change, crate::driver::member_context(&member))
            .await
    }

    /// Promotes a learner to voter.
    pub async fn promote(&self, id: u64) -> Result<(), ServiceError> {
        self.change_membership(MembershipChange::Promote(NodeId(id)), Bytes::new())
            .await
    }

    /// Removes a member.
    pub async fn remove(&self, id: u64) -> Result<(), ServiceError> {
        self.change_membership(MembershipChange::Remove(NodeId(id)), Bytes::new())
            .await
    }

    /// Proposes a change and answers once it is complete: its entry applied here and,
    /// for a change of voters, the joint configuration left again (the leader does
    /// that by itself), so the next change can follow at once.
    async fn change_membership(
        &self,
        change: MembershipChange,
        context: Bytes,
    ) -> Result<(), ServiceError> {
        self.ask(
            |reply| Request::ChangeMembership {
                change,
                context,
                reply,
            },
            ServiceError::Unknown,
        )
        .await?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        while self
            .shared
            .membership
            .lock()
            .expect("membership lock")
            .is_joint()
        {
            if tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::Unknown);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Hands leadership to `to` (or the most caught-up voter) and waits until a
    /// leader other than this member is known, up to the request timeout.
    pub async fn transfer_leader(
        &self,
        to: Option<u64>,
    ) -> Result<api::TransferResponse, ServiceError> {
        let target = self
            .ask(
                |reply| Request::Transfer {
                    to: to.map(NodeId),
                    reply,
                },
                ServiceError::Unknown,
            )
            .await?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let leader = self.shared.status.lock().expect("status lock").leader;
            if leader == Some(target) {
                return Ok(api::TransferResponse { leader: target.0 });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::Unknown);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Snapshots this member's state machine now and compacts its log.
    pub async fn snapshot(&self) -> Result<api::SnapshotResponse, ServiceError> {
        self.ask(|reply| Request::Snapshot { reply }, ServiceError::Unknown)
            .await
    }

    /// This member's view of the cluster.
    pub fn status(&self) -> api::StatusResponse {
        let status = self.shared.status.lock().expect("status lock").clone();
        let membership = self
            .shared
            .membership
            .lock()
            .expect("membership lock")
            .clone();
        let role = match status.role {
            Role::Leader => "leader",
            Role::Candidate | Role::PreCandidate => "candidate",
            Role::Follower if membership.learners.contains(&status.id) => "learner",
            _ => "follower",
        };
        api::StatusResponse {
            id: self.id,
            cluster_id: self.cluster_id.clone(),
            role: role.into(),
            term: status.term.0,
            leader_id: status.leader.map(|l| l.0),
            commit_index: status.commit_index.0,
            applied_index: status.applied_index.0,
            last_log_index: status.last_index.0,
            snapshot_index: status.snapshot_index.0,
            catching_up: status.catching_up,
            members: self.members().members,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Whether the member knows a leader and has applied within `ready_lag` of its
    /// commit index.
    pub fn ready(&self) -> bool {
        let status = self.shared.status.lock().expect("status lock");
        status.leader.is_some()
            && status.commit_index.0.saturating_sub(status.applied_index.0) <= self.ready_lag
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.shared.status.lock().expect("status lock").leader
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        crate::driver::is_leader(&self.shared.status.lock().expect("status lock"))
    }

    /// Stops taking requests (shutdown begins).
    pub fn stop_taking_requests(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
}
