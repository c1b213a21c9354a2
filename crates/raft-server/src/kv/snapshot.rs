//! The snapshot format of [`KvStore`]: streamed out through a buffer (never built
//! whole in memory) and read back in bounded chunks, with a crc32 trailer over
//! everything before it. Must keep true: `read_snapshot(write_snapshot(s, m)) ==
//! (s, m)`; reading allocates only as the stream delivers bytes (never from a length
//! field alone), and any damage — a flipped bit, a truncation, trailing bytes — is a
//! typed error, never a panic nor a silently different store.
//!
//! Layout, format version 1 (integers little-endian; a *string* is a u32 length
//! followed by that many bytes):
//!
//! ```text
//! header   = magic:"RAFTKVSN" version:u32 (= 1) applied_index:u64 metadata:string
//! members  = count:u32 { id:u64 voter:u8 (0|1) peer_addr:string client_addr:string }
//!            (ids strictly increasing; addresses UTF-8)
//! kvs      = count:u64 { key:string value:string create_revision:u64
//!            mod_revision:u64 version:u64 }
//!            (keys strictly increasing, 1..=4096 bytes;
//!             1 <= create_revision <= mod_revision <= applied_index; version >= 1)
//! trailer  = crc32:u32 (crc32fast, IEEE) of every byte before it
//! ```
//!
//! Nothing may follow the trailer. The metadata is opaque here: the server stores
//! raft's snapshot metadata (last included index and term, configuration) in it.

use std::io::{self, BufReader, BufWriter, Read, Write};

use bytes::Bytes;

use super::KvError;
use super::command::MAX_KEY_BYTES;
use super::members::{MemberAddress, MemberTable, Role};
use super::store::{KvStore, Value};

/// The first bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RAFTKVSN";

/// The snapshot format version this build writes (and the only one it reads).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Reads and allocations of one field proceed this many bytes at a time, so a
/// corrupt length costs at most one chunk before the stream runs dry.
const CHUNK_BYTES: usize = 64 * 1024;

/// The write buffer between the store and the output.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

impl KvStore {
    /// Streams a snapshot of the store to `out` (see the module docs for the
    /// layout), with `metadata` in its header, and returns the bytes written. The
    /// snapshot is never built in memory: it goes out through a 64 KiB buffer, and
    /// `out` is flushed before returning.
    ///
    /// Fails with `InvalidInput` if a field is longer than its u32 length prefix
    /// allows, or with the error `out` returns.
    pub fn write_snapshot(&self, metadata: &[u8], out: impl Write) -> io::Result<u64> {
        let mut w = BufWriter::with_capacity(
            WRITE_BUFFER_BYTES,
            HashingWriter {
                inner: out,
                hasher: crc32fast::Hasher::new(),
                written_bytes: 0,
            },
        );
        w.write_all(&SNAPSHOT_MAGIC)?;
        w.write_all(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())?;
        w.write_all(&self.applied_index.to_le_bytes())?;
        write_string(&mut w, metadata, "metadata")?;

        let count =
            u32::try_from(self.members.iter().len()).map_err(|_| too_long("member count"))?;
        w.write_all(&count.to_le_bytes())?;
        for (address, role) in self.members.iter() {
            w.write_all(&address.id.to_le_bytes())?;
            w.write_all(&[u8::from(role == Role::Voter)])?;
            write_string(&mut w, address.peer_addr.as_bytes(), "peer address")?;
            write_string(&mut w, address.client_addr.as_bytes(), "client address")?;
        }

        w.write_all(&(self.kvs.len() as u64).to_le_bytes())?;
        for (key, value) in &self.kvs {
            write_string(&mut w, key, "key")?;
            write_string(&mut w, &value.value, "value")?;
            w.write_all(&value.create_revision.to_le_bytes())?;
            w.write_all(&value.mod_revision.to_le_bytes())?;
            w.write_all(&value.version.to_le_bytes())?;
        }

        let HashingWriter {
            mut inner,
            hasher,
            written_bytes,
        } = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        inner.write_all(&hasher.finalize().to_le_bytes())?;
        inner.flush()?;
        Ok(written_bytes + 4)
    }

    /// Reads a snapshot written by [`KvStore::write_snapshot`], returning the store
    /// and the header's metadata. Checks the magic, the version, every length and
    /// ordering rule, the crc32 trailer, and that nothing follows it. Reads through
    /// a buffer, in bounded chunks: memory grows only with the bytes the stream
    /// actually delivers.
    pub fn read_snapshot(input: impl Read) -> Result<(KvStore, Bytes), KvError> {
        let mut r = HashingReader {
            inner: BufReader::with_capacity(CHUNK_BYTES, input),
            hasher: crc32fast::Hasher::new(),
        };
        let mut magic = [0; 8];
        read_exact(&mut r, &mut magic, "snapshot magic")?;
        if magic != SNAPSHOT_MAGIC {
            return Err(KvError::BadMagic);
        }
        let version = read_u32(&mut r, "snapshot format version")?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(KvError::UnsupportedVersion {
                what: "snapshot",
                version,
            });
        }
        let applied_index = read_u64(&mut r, "applied index")?;
        let metadata = Bytes::from(read_string(&mut r, "metadata")?);

        let mut members = MemberTable::default();
        let mut last_id = None;
        for _ in 0..read_u32(&mut r, "member count")? {
            let id = read_u64(&mut r, "member id")?;
            if last_id.is_some_and(|last| id <= last) {
                return Err(KvError::Malformed {
                    what: "member ids out of order",
                });
            }
            last_id = Some(id);
            let role = match read_u8(&mut r, "member role")? {
                0 => Role::Learner,
                1 => Role::Voter,
                _ => {
                    return Err(KvError::Malformed {
                        what: "member role",
                    });
                }
            };
            let address = MemberAddress {
                id,
                peer_addr: read_utf8(&mut r, "peer address")?,
                client_addr: read_utf8(&mut r, "client address")?,
            };
            members.insert(address, role);
        }

        let mut kvs = imbl::OrdMap::new();
        let mut last_key: Option<Bytes> = None;
        // The count is only a loop bound: each entry must arrive before it is kept.
        for _ in 0..read_u64(&mut r, "key count")? {
            let key_length = read_u32(&mut r, "key")? as usize;
            if key_length == 0 || key_length > MAX_KEY_BYTES {
                return Err(KvError::Malformed {
                    what: "snapshot key length",
                });
            }
            let key = Bytes::from(read_exact_vec(&mut r, key_length, "key")?);
            if last_key.as_ref().is_some_and(|last| key <= *last) {
                return Err(KvError::Malformed {
                    what: "snapshot keys out of order",
                });
            }
            let value = Value {
                value: Bytes::from(read_string(&mut r, "value")?),
                create_revision: read_u64(&mut r, "create revision")?,
                mod_revision: read_u64(&mut r, "mod revision")?,
                version: read_u64(&mut r, "version")?,
            };
            if value.create_revision == 0
                || value.create_revision > value.mod_revision
                || value.mod_revision > applied_index
                || value.version == 0
            {
                return Err(KvError::Malformed {
                    what: "snapshot revisions",
                });
            }
            last_key = Some(key.clone());
            kvs.insert(key, value);
        }

        let actual = r.hasher.clone().finalize();
        let mut trailer = [0; 4];
        read_exact(&mut r.inner, &mut trailer, "snapshot checksum")?;
        let expected = u32::from_le_bytes(trailer);
        if expected != actual {
            return Err(KvError::ChecksumMismatch { expected, actual });
        }
        let mut extra = [0; 1];
        if read_retrying(&mut r.inner, &mut extra)? != 0 {
            return Err(KvError::Malformed {
                what: "bytes after the snapshot checksum",
            });
        }
        let store = KvStore {
            kvs,
            members,
            applied_index,
        };
        Ok((store, metadata))
    }
}

/// Passes writes through to `inner`, hashing and counting them.
struct HashingWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    written_bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes reads through from `inner`, hashing what they return.
struct HashingReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn too_long(what: &'static str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} is longer than a snapshot can hold (u32::MAX)"),
    )
}

fn write_string(w: &mut impl Write, bytes: &[u8], what: &'static str) -> io::Result<()> {
    let length = u32::try_from(bytes.len()).map_err(|_| too_long(what))?;
    w.write_all(&length.to_le_bytes())?;
    w.write_all(bytes)
}

/// `read_exact`, with the stream ending early reported as [`KvError::Truncated`].
fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), KvError> {
    r.read_exact(buf).map_err(|error| match error.kind() {
        io::ErrorKind::UnexpectedEof => KvError::Truncated { what },
        _ => KvError::Io(error),
    })
}

fn read_u8(r: &mut impl Read, what: &'static str) -> Result<u8, KvError> {
    let mut buf = [0; 1];
    read_exact(r, &mut buf, what)?;
    Ok(buf[0])
}

fn read_u32(r: &mut impl Read, what: &'static str) -> Result<u32, KvError> {
    let mut buf = [0; 4];
    read_exact(r, &mut buf, what)?;
    Ok(u32::from_le_bytes(buf))
}

fn read_u64(r: &mut impl Read, what: &'static str) -> Result<u64, KvError> {
    let mut buf = [0; 8];
    read_exact(r, &mut buf, what)?;
    Ok(u64::from_le_bytes(buf))
}

/// Reads `length` bytes, growing the buffer one chunk at a time as they arrive, so
/// a corrupt length cannot make it allocate more than one chunk ahead of the data.
fn read_exact_vec(
    r: &mut impl Read,
    length: usize,
    what: &'static str,
) -> Result<Vec<u8>, KvError> {
    let mut buf = Vec::with_capacity(length.min(CHUNK_BYTES));
    while buf.len() < length {
        let start = buf.len();
        let end = length.min(start + CHUNK_BYTES);
        buf.resize(end, 0);
        read_exact(r, &mut buf[start..end], what)?;
    }
    Ok(buf)
}

fn read_string(r: &mut impl Read, what: &'static str) -> Result<Vec<u8>, KvError> {
    let length = read_u32(r, what)? as usize;
    read_exact_vec(r, length, what)
}

fn read_utf8(r: &mut impl Read, what: &'static str) -> Result<String, KvError> {
    String::from_utf8(read_string(r, what)?).map_err(|_| KvError::Malformed { what })
}

/// One `read`, retried on `Interrupted`.
fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, KvError> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(n),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(KvError::Io(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::kv::model_tests::{steps, store_from};
    use proptest::prelude::*;

    fn sample_store() -> KvStore {
        let address = |id: u64| MemberAddress {
            id,
            peer_addr: format!("10.0.0.{id}:7101"),
            client_addr: format!("10.0.0.{id}:7001"),
        };
        let mut store = KvStore::new([address(1), address(2), address(3)]);
        store
            .apply_membership(
                2,
                &BTreeSet::from([1, 2, 3]),
                &BTreeSet::from([4]),
                &crate::kv::encode_member_context(&[address(4)]),
            )
            .unwrap();
        for index in 3..40u64 {
            let key = format!("key/{:02}", index % 17);
            let value = vec![index as u8; (index as usize * 7) % 50];
            store.apply(
                index,
                &crate::kv::Command::Put {
                    key: Bytes::from(key),
                    value: Bytes::from(value),
                },
            );
        }
        store
    }

    fn snapshot_bytes(store: &KvStore, metadata: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let written = store.write_snapshot(metadata, &mut out).unwrap();
        assert_eq!(written, out.len() as u64);
        out
    }

    proptest! {
        #[test]
        fn snapshot_round_trip_equals_the_original(
            steps in steps(),
            metadata in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let store = store_from(&steps);
            let bytes = snapshot_bytes(&store, &metadata);
            let (restored, restored_metadata) = KvStore::read_snapshot(&bytes[..])?;
            prop_assert_eq!(&restored, &store);
            prop_assert_eq!(&restored_metadata[..], &metadata[..]);
        }

        #[test]
        fn any_flipped_bit_is_rejected(bit in any::<prop::sample::Index>()) {
            let mut bytes = snapshot_bytes(&sample_store(), b"meta");
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(KvStore::read_snapshot(&bytes[..]).is_err());
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_header_never_panic(
            tail in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut bytes = snapshot_bytes(&KvStore::new([]), b"")[..24].to_vec();
            bytes.extend_from_slice(&tail);
            prop_assert!(KvStore::read_snapshot(&bytes[..]).is_err());
        }
    }

    #[test]
    fn sample_snapshot_round_trips_with_members_and_metadata() {
        let store = sample_store();
        let bytes = snapshot_bytes(&store, b"raft snapshot meta");
        let (restored, metadata) = KvStore::read_snapshot(&bytes[..]).unwrap();
        assert_eq!(restored, store);
        assert_eq!(&metadata[..], b"raft snapshot meta");
        assert_eq!(restored.members().len(), 4);
        assert!(!restored.members()[3].1);
        assert_eq!(restored.applied_index(), 39);
        assert_eq!(&bytes[..8], b"RAFTKVSN");
    }

    #[test]
    fn every_truncation_is_rejected_with_a_typed_error() {
        let bytes = snapshot_bytes(&sample_store(), b"meta");
        for length in 0..bytes.len() {
            match KvStore::read_snapshot(&bytes[..length]) {
                Err(KvError::Truncated { .. }) => {}
                // Cutting inside the magic leaves a prefix that reads as a bad magic.
                Err(KvError::BadMagic) if length < 8 && length > 0 => {}
                other => panic!("truncated to {length} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn a_flipped_value_bit_is_a_checksum_mismatch() {
        let mut bytes = snapshot_bytes(&sample_store(), b"meta");
        // The last byte before the trailer is part of the last value's version; the
        // byte 40 before the trailer is inside the last value's bytes.
        let at = bytes.len() - 4 - 24 - 1;
        bytes[at] ^= 0x10;
        assert!(matches!(
            KvStore::read_snapshot(&bytes[..]),
            Err(KvError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn bad_magic_version_and_trailing_bytes_are_rejected() {
        let bytes = snapshot_bytes(&KvStore::new([]), b"");
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(matches!(
            KvStore::read_snapshot(&magic[..]),
            Err(KvError::BadMagic)
        ));
        let mut version = bytes.clone();
        version[8] = 2;
        assert!(matches!(
            KvStore::read_snapshot(&version[..]),
            Err(KvError::UnsupportedVersion { version: 2, .. })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            KvStore::read_snapshot(&trailing[..]),
            Err(KvError::Malformed { .. })
        ));
    }

    #[test]
    fn a_huge_length_allocates_only_what_arrives() {
        // A metadata length of u32::MAX followed by a few bytes: the reader must run
        // out of input after one chunk, not try to allocate 4 GiB up front.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 100]);
        assert!(matches!(
            KvStore::read_snapshot(&bytes[..]),
            Err(KvError::Truncated { what: "metadata" })
        ));
        // A key count of u64::MAX with no keys behind it: the count is only a loop
        // bound, so the reader fails on the missing keys (here it reads the trailer
        // as a key length) instead of reserving room for them.
        let mut bytes = snapshot_bytes(&KvStore::new([]), b"");
        let count_at = bytes.len() - 4 - 8;
        bytes[count_at..count_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            KvStore::read_snapshot(&bytes[..]),
            Err(KvError::Truncated { .. } | KvError::Malformed { .. })
        ));
    }

    /// A writer that counts the largest single write it was handed, to check that
    /// the snapshot goes out in buffer-sized pieces rather than as one blob.
    struct LargestWrite {
        total: usize,
        largest: usize,
    }

    impl Write for LargestWrite {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.total += buf.len();
            self.largest = self.largest.max(buf.len());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writing_streams_through_a_bounded_buffer() {
        let mut store = KvStore::new([]);
        for index in 1..=400u64 {
            store.apply(
                index,
                &crate::kv::Command::Put {
                    key: Bytes::from(format!("k{index:04}")),
                    value: Bytes::from(vec![7; 1000]),
                },
            );
        }
        let mut out = LargestWrite {
            total: 0,
            largest: 0,
        };
        let written = store.write_snapshot(b"", &mut out).unwrap();
        assert_eq!(written, out.total as u64);
        assert!(out.total > 400_000);
        assert!(out.largest <= WRITE_BUFFER_BYTES);
    }
}
