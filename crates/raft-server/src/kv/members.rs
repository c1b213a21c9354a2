//! The members table of the state machine (who is in the cluster and at which
//! addresses) and the encoding of a membership entry's `context`, which carries
//! the addresses of members being added. Must keep true: the table holds exactly
//! the members of the last applied configuration (voters ∪ learners), and context
//! decoding never panics nor allocates more than a small factor of its input.
//!
//! Context encoding, format version 1 (integers little-endian; a *string* is a u32
//! length followed by that many UTF-8 bytes):
//!
//! ```text
//! context = version:u8 (= 1) count:u32 member{count}
//! member  = id:u64 peer_addr:string client_addr:string
//! ```
//!
//! Nothing may follow the last member.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};

use super::KvError;
use super::wire::{Cursor, put_bytes};

const CONTEXT_FORMAT_VERSION: u8 = 1;

/// The fewest bytes a member takes in a context: its id and two empty strings.
const MIN_MEMBER_BYTES: usize = 8 + 4 + 4;

/// A cluster member's id and addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberAddress {
    /// The member id.
    pub id: u64,
    /// Where peers reach it (QUIC, `host:port`).
    pub peer_addr: String,
    /// Where clients reach it (HTTP, `host:port`).
    pub client_addr: String,
}

/// Encodes the addresses of the members a configuration change adds (format
/// version 1, see the module docs), for the `context` of a membership entry.
///
/// # Panics
///
/// If an address is longer than `u32::MAX` bytes.
pub fn encode_member_context(members: &[MemberAddress]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(CONTEXT_FORMAT_VERSION);
    out.put_u32_le(u32::try_from(members.len()).expect("more than u32::MAX members"));
    for member in members {
        out.put_u64_le(member.id);
        put_bytes(&mut out, member.peer_addr.as_bytes());
        put_bytes(&mut out, member.client_addr.as_bytes());
    }
    out.freeze()
}

/// Decodes a membership entry's context. Never panics; every length and count is
/// checked against the bytes that remain. An empty context is an empty list (a
/// configuration change that adds nobody, such as a removal or a promotion, may
/// carry none).
pub fn decode_member_context(context: &[u8]) -> Result<Vec<MemberAddress>, KvError> {
    if context.is_empty() {
        return Ok(Vec::new());
    }
    let mut cursor = Cursor::new(Bytes::copy_from_slice(context));
    let version = cursor.u8("member context format version")?;
    if version != CONTEXT_FORMAT_VERSION {
        return Err(KvError::UnsupportedVersion {
            what: "member context",
            version: u32::from(version),
        });
    }
    let count = cursor.count("member count", MIN_MEMBER_BYTES)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(MemberAddress {
            id: cursor.u64("member id")?,
            peer_addr: cursor.string("peer address")?,
            client_addr: cursor.string("client address")?,
        });
    }
    cursor.finish("bytes after the member context")?;
    Ok(members)
}

/// Whether a member votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Voter,
    Learner,
}

/// The members table: id to addresses and role, in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct MemberTable {
    members: BTreeMap<u64, (MemberAddress, Role)>,
}

impl MemberTable {
    /// A table of the bootstrap members, all voters. A repeated id keeps its last
    /// addresses.
    pub(super) fn bootstrap(initial: impl IntoIterator<Item = MemberAddress>) -> MemberTable {
        let mut table = MemberTable::default();
        for member in initial {
            table.insert(member, Role::Voter);
        }
        table
    }

    /// Inserts or replaces a member; the id is the address's.
    pub(super) fn insert(&mut self, member: MemberAddress, role: Role) {
        self.members.insert(member.id, (member, role));
    }

    /// Applies a configuration: keeps exactly the members in `voters ∪ learners`
    /// (an id in both is a voter), with the addresses from `added` where it names
    /// them, else the addresses already known, else empty addresses (a member the
    /// context failed to describe: it is still a member, so the table says so).
    pub(super) fn apply(
        &mut self,
        voters: &BTreeSet<u64>,
        learners: &BTreeSet<u64>,
        added: Vec<MemberAddress>,
    ) {
        let mut added: BTreeMap<u64, MemberAddress> = added
            .into_iter()
            .map(|member| (member.id, member))
            .collect();
        let mut previous = std::mem::take(&mut self.members);
        for &id in voters.union(learners) {
            let role = if voters.contains(&id) {
                Role::Voter
            } else {
                Role::Learner
            };
            let address = added
                .remove(&id)
                .or_else(|| previous.remove(&id).map(|(address, _)| address))
                .unwrap_or_else(|| MemberAddress {
                    id,
                    peer_addr: String::new(),
                    client_addr: String::new(),
                });
            self.members.insert(id, (address, role));
        }
    }

    /// Every member in id order, with whether it votes.
    pub(super) fn list(&self) -> Vec<(MemberAddress, bool)> {
        self.members
            .values()
            .map(|(address, role)| (address.clone(), *role == Role::Voter))
            .collect()
    }

    /// Every member in id order, with its role.
    pub(super) fn iter(&self) -> impl ExactSizeIterator<Item = (&MemberAddress, Role)> {
        self.members
            .values()
            .map(|(address, role)| (address, *role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member() -> impl Strategy<Value = MemberAddress> {
        (any::<u64>(), ".{0,12}", ".{0,12}").prop_map(|(id, peer_addr, client_addr)| {
            MemberAddress {
                id,
                peer_addr,
                client_addr,
            }
        })
    }

    proptest! {
        #[test]
        fn context_round_trip(members in prop::collection::vec(member(), 0..5)) {
            let encoded = encode_member_context(&members);
            prop_assert_eq!(decode_member_context(&encoded)?, members);
        }

        #[test]
        fn context_decode_of_arbitrary_bytes_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..128),
        ) {
            let _ = decode_member_context(&bytes);
        }

        #[test]
        fn context_every_proper_nonempty_prefix_is_an_error(
            members in prop::collection::vec(member(), 0..4),
        ) {
            let encoded = encode_member_context(&members);
            for length in 1..encoded.len() {
                prop_assert!(decode_member_context(&encoded[..length]).is_err());
            }
        }
    }

    #[test]
    fn context_rejects_bad_utf8_huge_counts_and_versions() {
        let mut bad_utf8 = vec![1, 1, 0, 0, 0];
        bad_utf8.extend_from_slice(&7u64.to_le_bytes());
        bad_utf8.extend_from_slice(&[1, 0, 0, 0, 0xff, 0, 0, 0, 0]);
        assert!(matches!(
            decode_member_context(&bad_utf8),
            Err(KvError::Malformed {
                what: "peer address"
            })
        ));
        assert!(matches!(
            decode_member_context(&[1, 0xff, 0xff, 0xff, 0xff]),
            Err(KvError::Truncated {
                what: "member count"
            })
        ));
        assert!(matches!(
            decode_member_context(&[3, 0, 0, 0, 0]),
            Err(KvError::UnsupportedVersion { version: 3, .. })
        ));
        assert!(decode_member_context(&[]).unwrap().is_empty());
    }

    #[test]
    fn apply_keeps_voters_and_learners_and_takes_new_addresses() {
        let address = |id: u64| MemberAddress {
            id,
            peer_addr: format!("10.0.0.{id}:7101"),
            client_addr: format!("10.0.0.{id}:7001"),
        };
        let mut table = MemberTable::bootstrap([address(1), address(2), address(3)]);
        // Add 4 as a learner, remove 2, and move 3 to a new address.
        let moved = MemberAddress {
            id: 3,
            peer_addr: "10.0.1.3:7101".into(),
            client_addr: "10.0.1.3:7001".into(),
        };
        table.apply(
            &BTreeSet::from([1, 3]),
            &BTreeSet::from([4]),
            vec![address(4), moved.clone(), address(9)],
        );
        assert_eq!(
            table.list(),
            vec![(address(1), true), (moved, true), (address(4), false)]
        );
        // A member nobody described is listed with empty addresses.
        table.apply(&BTreeSet::from([1, 5]), &BTreeSet::new(), vec![]);
        let listed = table.list();
        assert_eq!(listed[1].0.id, 5);
        assert!(listed[1].0.peer_addr.is_empty() && listed[1].1);
    }
}
