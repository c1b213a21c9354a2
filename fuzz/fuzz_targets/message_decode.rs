//! Fuzzes raft-transport's message decoder with arbitrary bytes read as a stream of
//! frames (and as a stream preamble). Decoding must never panic, no single
//! allocation may exceed a bound far above the input's size (a length or count
//! trusted before being checked against the bytes present would break it), and
//! whatever decodes must re-encode to exactly the same bytes (the encoding is
//! canonical).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};

use libfuzzer_sys::fuzz_target;
use raft_transport::codec::{PREAMBLE_BYTES, Preamble, decode_all, encode_all};

/// A frame limit of 1 MiB, so oversized frames are met often.
const MAX_FRAME_BYTES: u32 = 1 << 20;

/// Inputs are at most a few MiB; decoding allocates a small multiple of the input.
const MAX_ALLOCATION_BYTES: usize = 64 << 20;

struct BoundedAllocator;

// SAFETY: forwards to the system allocator unchanged; only adds a size check.
unsafe impl GlobalAlloc for BoundedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        assert!(
            layout.size() <= MAX_ALLOCATION_BYTES,
            "allocation of {} bytes",
            layout.size()
        );
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        assert!(
            new_size <= MAX_ALLOCATION_BYTES,
            "reallocation to {new_size} bytes"
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator;

fuzz_target!(|data: &[u8]| {
    if let Some(preamble) = data.first_chunk::<PREAMBLE_BYTES>() {
        let _ = Preamble::decode(preamble);
    }
    if let Ok(messages) = decode_all(data, MAX_FRAME_BYTES) {
        let encoded = encode_all(&messages).expect("decoded messages encode");
        assert_eq!(encoded, data, "decode then encode changed the bytes");
    }
});
