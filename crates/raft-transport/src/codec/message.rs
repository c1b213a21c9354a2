//! The layout of each raft-core message on the wire. One tag byte per variant; adding
//! a variant means one constant, one arm in `encode_body` and one in `decode_body`.
//! Tags are never reused: a retired variant's tag stays reserved.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeSet;

use raft_core::{
    AppendRequest, AppendResponse, Entry, EntryPayload, ForwardedReadId, Heartbeat,
    HeartbeatResponse, HeartbeatRound, LogIndex, Membership, Message, MessageBody, NodeId,
    ReadHeartbeat, ReadHeartbeatResponse, ReadIndexRequest, ReadIndexResponse, SnapshotMeta, Term,
    VoteRequest, VoteResponse,
};

use super::{Reader, begin_frame, check_version, finish_frame};
use crate::error::TransportError;

/// Message tags (docs/wire-format.md, "Messages").
mod tag {
    pub(super) const PRE_VOTE: u8 = 1;
    pub(super) const PRE_VOTE_RESPONSE: u8 = 2;
    pub(super) const VOTE: u8 = 3;
    pub(super) const VOTE_RESPONSE: u8 = 4;
    pub(super) const APPEND: u8 = 5;
    pub(super) const APPEND_RESPONSE: u8 = 6;
    pub(super) const HEARTBEAT: u8 = 7;
    pub(super) const HEARTBEAT_RESPONSE: u8 = 8;
    pub(super) const READ_HEARTBEAT: u8 = 9;
    pub(super) const READ_HEARTBEAT_RESPONSE: u8 = 10;
    pub(super) const READ_INDEX: u8 = 11;
    pub(super) const READ_INDEX_RESPONSE: u8 = 12;
    pub(super) const TIMEOUT_NOW: u8 = 13;
    pub(super) const TRANSFER_VOTE: u8 = 14;
    pub(super) const INSTALL_SNAPSHOT: u8 = 15;
}

/// Entry payload tags.
mod payload_tag {
    pub(super) const EMPTY: u8 = 0;
    pub(super) const COMMAND: u8 = 1;
    pub(super) const MEMBERSHIP: u8 = 2;
}

/// Append response kinds.
mod append_response_tag {
    pub(super) const ACCEPTED: u8 = 0;
    pub(super) const REJECTED: u8 = 1;
    pub(super) const REJECTED_AFTER_LOSS: u8 = 2;
}

/// Bytes of the message header after the length prefix: version, tag, from, to, term.
const HEADER_BYTES: usize = 1 + 1 + 8 + 8 + 8;

/// Smallest encoding of one entry (term, index, payload tag), used to bound the entry
/// count against the bytes that remain before allocating the vector.
const MIN_ENTRY_BYTES: usize = 8 + 8 + 1;

/// Appends one complete frame (length prefix included) holding `message` to `out`.
/// Fails only for a message kind this build has no encoding for, leaving `out`
/// unchanged.
pub fn encode_message(message: &Message, out: &mut BytesMut) -> Result<(), TransportError> {
    let start = out.len();
    out.reserve(encoded_len(message));
    let at = begin_frame(out);
    out.put_u8(super::WIRE_VERSION);
    let tag_at = out.len();
    out.put_u8(0);
    out.put_u64_le(message.from.get());
    out.put_u64_le(message.to.get());
    out.put_u64_le(message.term.0);
    match encode_body(&message.body, out) {
        Ok(tag) => {
            out[tag_at] = tag;
            finish_frame(out, at);
            Ok(())
        }
        Err(error) => {
            out.truncate(start);
            Err(error)
        }
    }
}

/// The number of bytes [`encode_message`] writes for `message`, length prefix
/// included (an estimate for kinds without an encoding).
pub fn encoded_len(message: &Message) -> usize {
    let body = match &message.body {
        MessageBody::PreVote(_) | MessageBody::Vote(_) | MessageBody::TransferVote(_) => 16,
        MessageBody::PreVoteResponse(_) | MessageBody::VoteResponse(_) => 1,
        MessageBody::Append(append) => {
            8 * 3 + 4 + append.entries.iter().map(entry_len).sum::<usize>()
        }
        MessageBody::AppendResponse(AppendResponse::Accepted { .. }) => 1 + 8,
        MessageBody::AppendResponse(
            AppendResponse::Rejected { .. } | AppendResponse::RejectedAfterLoss { .. },
        ) => 1 + 8 * 3,
        MessageBody::Heartbeat(_) | MessageBody::ReadHeartbeat(_) => 8 + ROUND_BYTES,
        MessageBody::HeartbeatResponse(response) => {
            1 + ROUND_BYTES * usize::from(response.round.is_some())
        }
        MessageBody::ReadHeartbeatResponse(_) => ROUND_BYTES,
        MessageBody::ReadIndex(_) => FORWARDED_READ_ID_BYTES,
        MessageBody::ReadIndexResponse(response) => {
            FORWARDED_READ_ID_BYTES + 1 + 8 * usize::from(response.index.is_some())
        }
        MessageBody::InstallSnapshot(meta) => 16 + membership_len(&meta.membership),
        _ => 0,
    };
    super::LENGTH_PREFIX_BYTES + HEADER_BYTES + body
}

/// Bytes of a heartbeat round: term, sequence.
const ROUND_BYTES: usize = 16;

fn encode_round(round: HeartbeatRound, out: &mut BytesMut) {
    out.put_u64_le(round.term.0);
    out.put_u64_le(round.sequence);
}

fn decode_round(reader: &mut Reader) -> Result<HeartbeatRound, TransportError> {
    Ok(HeartbeatRound {
        term: Term(reader.u64("round term")?),
        sequence: reader.u64("round sequence")?,
    })
}

/// Bytes of a forwarded read's id: incarnation, sequence.
const FORWARDED_READ_ID_BYTES: usize = 16;

fn encode_forwarded_read_id(id: ForwardedReadId, out: &mut BytesMut) {
    out.put_u64_le(id.incarnation);
    out.put_u64_le(id.sequence);
}

fn decode_forwarded_read_id(reader: &mut Reader) -> Result<ForwardedReadId, TransportError> {
    Ok(ForwardedReadId {
        incarnation: reader.u64("read incarnation")?,
        sequence: reader.u64("read sequence")?,
    })
}

fn entry_len(entry: &Entry) -> usize {
    MIN_ENTRY_BYTES
        + match &entry.payload {
            EntryPayload::Command(data) => 4 + data.len(),
            EntryPayload::Membership {
                membership,
                context,
            } => membership_len(membership) + 4 + context.len(),
            _ => 0,
        }
}

fn membership_len(membership: &Membership) -> usize {
    3 * 4
        + 8 * (membership.voters.len()
            + membership.voters_outgoing.len()
            + membership.learners.len())
}

/// Decodes one frame (without its length prefix). Entry payloads are slices of
/// `frame`: nothing is copied.
pub fn decode_message(frame: Bytes) -> Result<Message, TransportError> {
    let mut reader = Reader::new(frame);
    check_version(reader.u8("version")?)?;
    let tag = reader.u8("message tag")?;
    let from = NodeId(reader.u64("from")?);
    let to = NodeId(reader.u64("to")?);
    let term = Term(reader.u64("term")?);
    let body = decode_body(tag, &mut reader)?;
    reader.finish("message")?;
    Ok(Message {
        from,
        to,
        term,
        body,
    })
}

fn encode_body(body: &MessageBody, out: &mut BytesMut) -> Result<u8, TransportError> {
    let tag = match body {
        MessageBody::PreVote(request) => {
            encode_vote_request(request, out);
            tag::PRE_VOTE
        }
        MessageBody::PreVoteResponse(response) => {
            out.put_u8(u8::from(response.granted));
            tag::PRE_VOTE_RESPONSE
        }
        MessageBody::Vote(request) => {
            encode_vote_request(request, out);
            tag::VOTE
        }
        MessageBody::VoteResponse(response) => {
            out.put_u8(u8::from(response.granted));
            tag::VOTE_RESPONSE
        }
        MessageBody::Append(append) => {
            encode_append(append, out)?;
            tag::APPEND
        }
        MessageBody::AppendResponse(response) => {
            encode_append_response(response, out);
            tag::APPEND_RESPONSE
        }
        MessageBody::Heartbeat(heartbeat) => {
            out.put_u64_le(heartbeat.leader_commit.0);
            encode_round(heartbeat.round, out);
            tag::HEARTBEAT
        }
        MessageBody::HeartbeatResponse(response) => {
            out.put_u8(u8::from(response.round.is_some()));
            if let Some(round) = response.round {
                encode_round(round, out);
            }
            tag::HEARTBEAT_RESPONSE
        }
        MessageBody::ReadHeartbeat(heartbeat) => {
            out.put_u64_le(heartbeat.leader_commit.0);
            encode_round(heartbeat.round, out);
            tag::READ_HEARTBEAT
        }
        MessageBody::ReadHeartbeatResponse(response) => {
            encode_round(response.round, out);
            tag::READ_HEARTBEAT_RESPONSE
        }
        MessageBody::ReadIndex(request) => {
            encode_forwarded_read_id(request.id, out);
            tag::READ_INDEX
        }
        MessageBody::ReadIndexResponse(response) => {
            encode_forwarded_read_id(response.id, out);
            out.put_u8(u8::from(response.index.is_some()));
            if let Some(index) = response.index {
                out.put_u64_le(index.0);
            }
            tag::READ_INDEX_RESPONSE
        }
        MessageBody::TimeoutNow => tag::TIMEOUT_NOW,
        MessageBody::TransferVote(request) => {
            encode_vote_request(request, out);
            tag::TRANSFER_VOTE
        }
        MessageBody::InstallSnapshot(meta) => {
            out.put_u64_le(meta.index.0);
            out.put_u64_le(meta.term.0);
            encode_membership(&meta.membership, out)?;
            tag::INSTALL_SNAPSHOT
        }
        other => {
            return Err(TransportError::UnencodableMessage { kind: other.kind() });
        }
    };
    Ok(tag)
}

fn decode_body(tag: u8, reader: &mut Reader) -> Result<MessageBody, TransportError> {
    Ok(match tag {
        tag::PRE_VOTE => MessageBody::PreVote(decode_vote_request(reader)?),
        tag::PRE_VOTE_RESPONSE => MessageBody::PreVoteResponse(VoteResponse {
            granted: reader.bool("granted")?,
        }),
        tag::VOTE => MessageBody::Vote(decode_vote_request(reader)?),
        tag::VOTE_RESPONSE => MessageBody::VoteResponse(VoteResponse {
            granted: reader.bool("granted")?,
        }),
        tag::APPEND => MessageBody::Append(decode_append(reader)?),
        tag::APPEND_RESPONSE => MessageBody::AppendResponse(decode_append_response(reader)?),
        tag::HEARTBEAT => MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(reader.u64("leader_commit")?),
            round: decode_round(reader)?,
        }),
        tag::HEARTBEAT_RESPONSE => MessageBody::HeartbeatResponse(HeartbeatResponse {
            round: match reader.bool("has round")? {
                true => Some(decode_round(reader)?),
                false => None,
            },
        }),
        tag::READ_HEARTBEAT => MessageBody::ReadHeartbeat(ReadHeartbeat {
            leader_commit: LogIndex(reader.u64("leader_commit")?),
            round: decode_round(reader)?,
        }),
        tag::READ_HEARTBEAT_RESPONSE => MessageBody::ReadHeartbeatResponse(ReadHeartbeatResponse {
            round: decode_round(reader)?,
        }),
        tag::READ_INDEX => MessageBody::ReadIndex(ReadIndexRequest {
            id: decode_forwarded_read_id(reader)?,
        }),
        tag::READ_INDEX_RESPONSE => MessageBody::ReadIndexResponse(ReadIndexResponse {
            id: decode_forwarded_read_id(reader)?,
            index: match reader.bool("has read index")? {
                true => Some(LogIndex(reader.u64("read index")?)),
                false => None,
            },
        }),
        tag::TIMEOUT_NOW => MessageBody::TimeoutNow,
        tag::TRANSFER_VOTE => MessageBody::TransferVote(decode_vote_request(reader)?),
        tag::INSTALL_SNAPSHOT => MessageBody::InstallSnapshot(SnapshotMeta {
            index: LogIndex(reader.u64("snapshot index")?),
            term: Term(reader.u64("snapshot term")?),
            membership: decode_membership(reader)?,
        }),
        tag => return Err(TransportError::UnknownMessageTag { tag }),
    })
}

fn encode_vote_request(request: &VoteRequest, out: &mut BytesMut) {
    out.put_u64_le(request.last_log_index.0);
    out.put_u64_le(request.last_log_term.0);
}

fn decode_vote_request(reader: &mut Reader) -> Result<VoteRequest, TransportError> {
    Ok(VoteRequest {
        last_log_index: LogIndex(reader.u64("last_log_index")?),
        last_log_term: Term(reader.u64("last_log_term")?),
    })
}

fn encode_append(append: &AppendRequest, out: &mut BytesMut) -> Result<(), TransportError> {
    out.put_u64_le(append.prev_log_index.0);
    out.put_u64_le(append.prev_log_term.0);
    out.put_u64_le(append.leader_commit.0);
    let count = u32::try_from(append.entries.len()).map_err(|_| TransportError::InvalidField {
        field: "entry count",
        value: append.entries.len() as u64,
    })?;
    out.put_u32_le(count);
    for entry in &append.entries {
        out.put_u64_le(entry.term.0);
        out.put_u64_le(entry.index.0);
        match &entry.payload {
            EntryPayload::Empty => out.put_u8(payload_tag::EMPTY),
            EntryPayload::Command(data) => {
                out.put_u8(payload_tag::COMMAND);
                let len = u32::try_from(data.len()).map_err(|_| TransportError::InvalidField {
                    field: "command length",
                    value: data.len() as u64,
                })?;
                out.put_u32_le(len);
                out.put_slice(data);
            }
            EntryPayload::Membership {
                membership,
                context,
            } => {
                out.put_u8(payload_tag::MEMBERSHIP);
                encode_membership(membership, out)?;
                put_bytes("membership context", context, out)?;
            }
            _ => {
                return Err(TransportError::UnencodableMessage {
                    kind: "append (entry payload kind)",
                });
            }
        }
    }
    Ok(())
}

fn decode_append(reader: &mut Reader) -> Result<AppendRequest, TransportError> {
    let prev_log_index = LogIndex(reader.u64("prev_log_index")?);
    let prev_log_term = Term(reader.u64("prev_log_term")?);
    let leader_commit = LogIndex(reader.u64("leader_commit")?);
    let count = reader.u32("entry count")? as usize;
    // Bound the allocation by what the frame can actually hold.
    let needed = count.saturating_mul(MIN_ENTRY_BYTES);
    if needed > reader.remaining() {
        return Err(TransportError::Truncated {
            field: "entries",
            needed_bytes: needed as u64,
            remaining_bytes: reader.remaining() as u64,
        });
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let term = Term(reader.u64("entry term")?);
        let index = LogIndex(reader.u64("entry index")?);
        let payload = match reader.u8("payload tag")? {
            payload_tag::EMPTY => EntryPayload::Empty,
            payload_tag::COMMAND => EntryPayload::Command(reader.bytes("command")?),
            payload_tag::MEMBERSHIP => EntryPayload::Membership {
                membership: decode_membership(reader)?,
                context: reader.bytes("membership context")?,
            },
            tag => return Err(TransportError::UnknownPayloadTag { tag }),
        };
        entries.push(Entry {
            term,
            index,
            payload,
        });
    }
    Ok(AppendRequest {
        prev_log_index,
        prev_log_term,
        entries,
        leader_commit,
    })
}

fn encode_append_response(response: &AppendResponse, out: &mut BytesMut) {
    match response {
        AppendResponse::Accepted { match_index } => {
            out.put_u8(append_response_tag::ACCEPTED);
            out.put_u64_le(match_index.0);
        }
        AppendResponse::Rejected {
            rejected_index,
            hint_index,
            hint_term,
        } => {
            out.put_u8(append_response_tag::REJECTED);
            out.put_u64_le(rejected_index.0);
            out.put_u64_le(hint_index.0);
            out.put_u64_le(hint_term.0);
        }
        AppendResponse::RejectedAfterLoss {
            rejected_index,
            hint_index,
            hint_term,
        } => {
            out.put_u8(append_response_tag::REJECTED_AFTER_LOSS);
            out.put_u64_le(rejected_index.0);
            out.put_u64_le(hint_index.0);
            out.put_u64_le(hint_term.0);
        }
    }
}

fn decode_append_response(reader: &mut Reader) -> Result<AppendResponse, TransportError> {
    match reader.u8("append response kind")? {
        append_response_tag::ACCEPTED => Ok(AppendResponse::Accepted {
            match_index: LogIndex(reader.u64("match_index")?),
        }),
        append_response_tag::REJECTED => Ok(AppendResponse::Rejected {
            rejected_index: LogIndex(reader.u64("rejected_index")?),
            hint_index: LogIndex(reader.u64("hint_index")?),
            hint_term: Term(reader.u64("hint_term")?),
        }),
        append_response_tag::REJECTED_AFTER_LOSS => Ok(AppendResponse::RejectedAfterLoss {
            rejected_index: LogIndex(reader.u64("rejected_index")?),
            hint_index: LogIndex(reader.u64("hint_index")?),
            hint_term: Term(reader.u64("hint_term")?),
        }),
        value => Err(TransportError::InvalidField {
            field: "append response kind",
            value: u64::from(value),
        }),
    }
}

fn put_bytes(field: &'static str, data: &[u8], out: &mut BytesMut) -> Result<(), TransportError> {
    let len = u32::try_from(data.len()).map_err(|_| TransportError::InvalidField {
        field,
        value: data.len() as u64,
    })?;
    out.put_u32_le(len);
    out.put_slice(data);
    Ok(())
}

/// A membership: voters, outgoing voters, learners; each a `u32` count and that many
/// ids in increasing order (which keeps the encoding canonical).
fn encode_membership(membership: &Membership, out: &mut BytesMut) -> Result<(), TransportError> {
    for set in [
        &membership.voters,
        &membership.voters_outgoing,
        &membership.learners,
    ] {
        let count = u32::try_from(set.len()).map_err(|_| TransportError::InvalidField {
            field: "member count",
            value: set.len() as u64,
        })?;
        out.put_u32_le(count);
        for id in set {
            out.put_u64_le(id.get());
        }
    }
    Ok(())
}

fn decode_membership(reader: &mut Reader) -> Result<Membership, TransportError> {
    Ok(Membership {
        voters: decode_member_set(reader, "voters")?,
        voters_outgoing: decode_member_set(reader, "outgoing voters")?,
        learners: decode_member_set(reader, "learners")?,
    })
}

fn decode_member_set(
    reader: &mut Reader,
    field: &'static str,
) -> Result<BTreeSet<NodeId>, TransportError> {
    let count = reader.u32(field)? as usize;
    let needed = count.saturating_mul(8);
    if needed > reader.remaining() {
        return Err(TransportError::Truncated {
            field,
            needed_bytes: needed as u64,
            remaining_bytes: reader.remaining() as u64,
        });
    }
    let mut set = BTreeSet::new();
    let mut previous: Option<u64> = None;
    for _ in 0..count {
        let id = reader.u64(field)?;
        if previous.is_some_and(|previous| id <= previous) {
            return Err(TransportError::InvalidField {
                field: "member ids out of order",
                value: id,
            });
        }
        previous = Some(id);
        set.insert(NodeId(id));
    }
    Ok(set)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
