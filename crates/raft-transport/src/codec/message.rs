//! The layout of each raft-core message on the wire. One tag byte per variant; adding
//! a variant means one constant, one arm in `encode_body` and one in `decode_body`.
//! Tags are never reused: a retired variant's tag stays reserved.

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::{
    AppendRequest, AppendResponse, Entry, EntryPayload, Heartbeat, LogIndex, Message, MessageBody,
    NodeId, Term, VoteRequest, VoteResponse,
};

use super::{Reader, begin_frame, check_version, finish_frame};
use crate::error::TransportError;

/// Message tags (docs/wire-format.md, "Messages"). 9..=15 are reserved for the
/// snapshot, TimeoutNow and read-index messages raft-core will add.
mod tag {
    pub(super) const PRE_VOTE: u8 = 1;
    pub(super) const PRE_VOTE_RESPONSE: u8 = 2;
    pub(super) const VOTE: u8 = 3;
    pub(super) const VOTE_RESPONSE: u8 = 4;
    pub(super) const APPEND: u8 = 5;
    pub(super) const APPEND_RESPONSE: u8 = 6;
    pub(super) const HEARTBEAT: u8 = 7;
    pub(super) const HEARTBEAT_RESPONSE: u8 = 8;
}

/// Entry payload tags.
mod payload_tag {
    pub(super) const EMPTY: u8 = 0;
    pub(super) const COMMAND: u8 = 1;
}

/// Append response kinds.
mod append_response_tag {
    pub(super) const ACCEPTED: u8 = 0;
    pub(super) const REJECTED: u8 = 1;
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
        MessageBody::PreVote(_) | MessageBody::Vote(_) => 16,
        MessageBody::PreVoteResponse(_) | MessageBody::VoteResponse(_) => 1,
        MessageBody::Append(append) => {
            8 * 3
                + 4
                + append
                    .entries
                    .iter()
                    .map(|entry| match &entry.payload {
                        EntryPayload::Command(data) => MIN_ENTRY_BYTES + 4 + data.len(),
                        _ => MIN_ENTRY_BYTES,
                    })
                    .sum::<usize>()
        }
        MessageBody::AppendResponse(AppendResponse::Accepted { .. }) => 1 + 8,
        MessageBody::AppendResponse(AppendResponse::Rejected { .. }) => 1 + 8 * 3,
        MessageBody::Heartbeat(_) => 8,
        _ => 0,
    };
    super::LENGTH_PREFIX_BYTES + HEADER_BYTES + body
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
            tag::HEARTBEAT
        }
        MessageBody::HeartbeatResponse => tag::HEARTBEAT_RESPONSE,
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
        }),
        tag::HEARTBEAT_RESPONSE => MessageBody::HeartbeatResponse,
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
        value => Err(TransportError::InvalidField {
            field: "append response kind",
            value: u64::from(value),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{DEFAULT_MAX_FRAME_BYTES, FrameSplitter, decode_all};
    use proptest::prelude::*;

    fn message(body: MessageBody) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(7),
            body,
        }
    }

    fn round_trip(original: &Message) -> Message {
        let mut buf = BytesMut::new();
        encode_message(original, &mut buf).unwrap();
        assert_eq!(buf.len(), encoded_len(original));
        let frame = FrameSplitter::new(DEFAULT_MAX_FRAME_BYTES)
            .next_frame(&mut buf)
            .unwrap()
            .unwrap();
        assert!(buf.is_empty());
        decode_message(frame).unwrap()
    }

    #[test]
    fn every_kind_round_trips() {
        let vote = VoteRequest {
            last_log_index: LogIndex(9),
            last_log_term: Term(3),
        };
        let bodies = [
            MessageBody::PreVote(vote),
            MessageBody::PreVoteResponse(VoteResponse { granted: true }),
            MessageBody::Vote(vote),
            MessageBody::VoteResponse(VoteResponse { granted: false }),
            MessageBody::Append(AppendRequest {
                prev_log_index: LogIndex(4),
                prev_log_term: Term(2),
                entries: vec![
                    Entry {
                        term: Term(7),
                        index: LogIndex(5),
                        payload: EntryPayload::Empty,
                    },
                    Entry {
                        term: Term(7),
                        index: LogIndex(6),
                        payload: EntryPayload::Command(Bytes::from_static(b"put k v")),
                    },
                ],
                leader_commit: LogIndex(4),
            }),
            MessageBody::AppendResponse(AppendResponse::Accepted {
                match_index: LogIndex(6),
            }),
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected_index: LogIndex(6),
                hint_index: LogIndex(3),
                hint_term: Term(2),
            }),
            MessageBody::Heartbeat(Heartbeat {
                leader_commit: LogIndex(6),
            }),
            MessageBody::HeartbeatResponse,
        ];
        for body in bodies {
            let original = message(body);
            assert_eq!(round_trip(&original), original);
        }
    }

    #[test]
    fn command_payloads_are_slices_of_the_frame() {
        let original = message(MessageBody::Append(AppendRequest {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![Entry {
                term: Term(1),
                index: LogIndex(1),
                payload: EntryPayload::Command(Bytes::from(vec![42u8; 1000])),
            }],
            leader_commit: LogIndex(0),
        }));
        let mut buf = BytesMut::new();
        encode_message(&original, &mut buf).unwrap();
        let frame = FrameSplitter::new(DEFAULT_MAX_FRAME_BYTES)
            .next_frame(&mut buf)
            .unwrap()
            .unwrap();
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let decoded = decode_message(frame.clone()).unwrap();
        let MessageBody::Append(append) = decoded.body else {
            panic!("not an append")
        };
        let EntryPayload::Command(data) = &append.entries[0].payload else {
            panic!("not a command")
        };
        assert!(frame_range.contains(&(data.as_ptr() as usize)));
    }

    #[test]
    fn unknown_tag_is_a_typed_error() {
        let mut buf = BytesMut::new();
        encode_message(&message(MessageBody::HeartbeatResponse), &mut buf).unwrap();
        buf[5] = 200;
        let error = decode_all(&buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(
            error,
            TransportError::UnknownMessageTag { tag: 200 }
        ));
    }

    #[test]
    fn unknown_version_is_a_typed_error() {
        let mut buf = BytesMut::new();
        encode_message(&message(MessageBody::HeartbeatResponse), &mut buf).unwrap();
        buf[4] = 9;
        let error = decode_all(&buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(
            error,
            TransportError::UnsupportedVersion { version: 9, .. }
        ));
    }

    #[test]
    fn oversized_frame_is_refused_before_allocating() {
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        let error = FrameSplitter::new(1024).next_frame(&mut buf).unwrap_err();
        assert!(matches!(error, TransportError::FrameTooLarge { .. }));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn huge_entry_count_is_refused_before_allocating() {
        let mut buf = BytesMut::new();
        let at = begin_frame(&mut buf);
        buf.put_u8(super::super::WIRE_VERSION);
        buf.put_u8(tag::APPEND);
        buf.put_slice(&[0u8; 24 + 24]);
        buf.put_u32_le(u32::MAX);
        finish_frame(&mut buf, at);
        let error = decode_all(&buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(error, TransportError::Truncated { .. }));
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        )
            .prop_map(|(term, index, data)| Entry {
                term: Term(term),
                index: LogIndex(index),
                payload: match data {
                    None => EntryPayload::Empty,
                    Some(data) => EntryPayload::Command(Bytes::from(data)),
                },
            })
    }

    fn arb_body() -> impl Strategy<Value = MessageBody> {
        let vote = (any::<u64>(), any::<u64>()).prop_map(|(index, term)| VoteRequest {
            last_log_index: LogIndex(index),
            last_log_term: Term(term),
        });
        prop_oneof![
            vote.clone().prop_map(MessageBody::PreVote),
            any::<bool>()
                .prop_map(|granted| MessageBody::PreVoteResponse(VoteResponse { granted })),
            vote.prop_map(MessageBody::Vote),
            any::<bool>().prop_map(|granted| MessageBody::VoteResponse(VoteResponse { granted })),
            (
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(arb_entry(), 0..8),
                any::<u64>()
            )
                .prop_map(|(index, term, entries, commit)| {
                    MessageBody::Append(AppendRequest {
                        prev_log_index: LogIndex(index),
                        prev_log_term: Term(term),
                        entries,
                        leader_commit: LogIndex(commit),
                    })
                }),
            any::<u64>().prop_map(
                |index| MessageBody::AppendResponse(AppendResponse::Accepted {
                    match_index: LogIndex(index)
                })
            ),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(rejected, hint, term)| {
                MessageBody::AppendResponse(AppendResponse::Rejected {
                    rejected_index: LogIndex(rejected),
                    hint_index: LogIndex(hint),
                    hint_term: Term(term),
                })
            }),
            any::<u64>().prop_map(|commit| MessageBody::Heartbeat(Heartbeat {
                leader_commit: LogIndex(commit)
            })),
            Just(MessageBody::HeartbeatResponse),
        ]
    }

    proptest! {
        #[test]
        fn any_message_round_trips(
            from in any::<u64>(), to in any::<u64>(), term in any::<u64>(), body in arb_body()
        ) {
            let original = Message { from: NodeId(from), to: NodeId(to), term: Term(term), body };
            prop_assert_eq!(round_trip(&original), original);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&data, 4096);
        }

        #[test]
        fn every_truncation_is_an_error(body in arb_body(), cut in any::<prop::sample::Index>()) {
            let original = message(body);
            let mut buf = BytesMut::new();
            encode_message(&original, &mut buf).unwrap();
            let frame = buf.split_off(crate::codec::LENGTH_PREFIX_BYTES).freeze();
            let cut = cut.index(frame.len());
            prop_assert!(decode_message(frame.slice(..cut)).is_err());
        }
    }
}
