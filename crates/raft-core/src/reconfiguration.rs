//! Membership changes by joint consensus (§6): proposing a change, following
//! configuration entries through the log, and putting each into effect. Keeps true:
//! at most one change is in flight; a configuration takes effect on a member when the
//! member learns its entry is committed (never earlier, so a truncated entry never
//! took effect); a joint configuration is always left by the leader on its own; a
//! leader that is not a voter of the configuration it committed steps down.

use bytes::Bytes;

use crate::error::{Error, StorageError};
use crate::membership::{Membership, MembershipChange};
use crate::node::Node;
use crate::progress::Progress;
use crate::status::Role;
use crate::storage::LogStore;
use crate::types::{Entry, EntryId, EntryPayload, LogIndex};

impl<S: LogStore> Node<S> {
    /// Proposes a configuration change on the leader. Changes to the voters go
    /// through a joint configuration that the leader leaves by itself; the outcome of
    /// the returned proposal is reported like any other. `context` travels in the
    /// entry for the application.
    pub fn propose_membership_change(
        &mut self,
        change: MembershipChange,
        context: Bytes,
    ) -> Result<EntryId, Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if let Some(to) = self.transfer_target {
            return Err(Error::TransferInProgress { to });
        }
        if self.membership_change_in_progress() {
            return Err(Error::MembershipChangeInProgress);
        }
        let membership = change
            .first_step(&self.membership)
            .map_err(|reason| Error::InvalidMembershipChange { reason })?;
        let id = self.append_membership(membership, context);
        self.pending_proposals.insert(id.index, id.term);
        Ok(id)
    }

    /// Whether a configuration entry is not yet committed, or the configuration is
    /// joint (it must be left before anything else changes).
    pub(crate) fn membership_change_in_progress(&self) -> bool {
        self.pending_membership_index > self.log.committed() || self.membership.is_joint()
    }

    fn append_membership(&mut self, membership: Membership, context: Bytes) -> EntryId {
        let id = EntryId {
            term: self.term,
            index: self.log.last_index().next(),
        };
        self.log.append(vec![Entry {
            term: id.term,
            index: id.index,
            payload: EntryPayload::Membership {
                membership: membership.clone(),
                context,
            },
        }]);
        self.membership_entries.insert(id.index, membership);
        self.pending_membership_index = id.index;
        self.append_pending = true;
        id
    }

    /// Remembers the configuration entries among `entries` written from `from` on,
    /// forgetting any that the write replaced.
    pub(crate) fn track_membership_entries(&mut self, from: LogIndex, entries: &[Entry]) {
        self.membership_entries.split_off(&from);
        for entry in entries.iter().filter(|e| e.index >= from) {
            if let EntryPayload::Membership { membership, .. } = &entry.payload {
                self.membership_entries
                    .insert(entry.index, membership.clone());
            }
        }
    }

    /// Finds the configuration entries of the log at start: the committed ones take
    /// effect, the others wait for their commit.
    pub(crate) fn load_membership_entries(&mut self) -> Result<(), StorageError> {
        const CHUNK_BYTES: u64 = 16 * 1024 * 1024;
        let mut next = self.log.first_index();
        let end = self.log.last_index().next();
        while next < end {
            let entries = self.log.entries(next, end, CHUNK_BYTES)?;
            let Some(last) = entries.last() else { break };
            next = last.index.next();
            self.track_membership_entries(entries[0].index, &entries);
        }
        self.activate_membership();
        Ok(())
    }

    /// Puts into effect every configuration whose entry is now known committed.
    pub(crate) fn activate_membership(&mut self) {
        while let Some((&index, _)) = self.membership_entries.first_key_value() {
            if index > self.log.committed() {
                break;
            }
            let (_, membership) = self.membership_entries.pop_first().expect("first exists");
            self.set_membership(membership);
        }
    }

    fn set_membership(&mut self, membership: Membership) {
        self.membership = membership;
        if self.role != Role::Leader {
            return;
        }
        // Progress for every member of the configuration, and no one else.
        let next = self.log.last_index().next();
        let max_inflight = self.config.max_inflight_appends;
        let members = self.membership.members();
        self.progress.retain(|id, _| members.contains(id));
        for id in members {
            self.progress
                .entry(id)
                .or_insert_with(|| Progress::new(next, max_inflight));
        }
        let id = self.id();
        if !self.membership.is_voter(id) {
            // §6: a leader that is not part of C_new steps down once C_new commits.
            self.become_follower(self.term, None);
            return;
        }
        if let Some(progress) = self.progress.get_mut(&id) {
            progress.match_index = progress.match_index.max(self.log.persisted_index());
            progress.recent_active = true;
        }
        self.append_pending = true;
    }

    /// On a leader in a joint configuration whose entry is committed: propose C_new.
    pub(crate) fn maybe_leave_joint(&mut self) {
        if self.role == Role::Leader
            && self.membership.is_joint()
            && self.pending_membership_index <= self.log.committed()
            && self.transfer_target.is_none()
        {
            let target = Membership {
                voters: self.membership.voters.clone(),
                voters_outgoing: Default::default(),
                learners: self.membership.learners.clone(),
            };
            self.append_membership(target, Bytes::new());
        }
    }

    /// Refuses the message being stepped: `step` returns
    /// [`Error::MalformedMessage`] with `reason`.
    pub(crate) fn reject_message(&mut self, reason: &'static str) {
        self.rejected = Some(reason);
    }
}
