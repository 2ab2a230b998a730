//! glibc's allocator, set for a daemon that runs for months.
//!
//! By default glibc gives threads their own arenas (up to eight per core) and, after a large
//! block is freed, raises its mmap and trim thresholds so later blocks of that size stay in
//! the heap and are never returned. The hour-long soak saw RSS step up 1.9 MB after an SRT
//! peer stall (API responses and buffers growing once, in an arena that never shrank). The
//! audio threads allocate nothing, so few arenas cost nothing, and fixed thresholds keep
//! large blocks in mmap, returned when freed.
//!
//! Also a prefetch hint, for the audio threads' per-stream state, and a copy into a ring that
//! bypasses the caches, for audio that is read back long after it was written.

/// Arenas for the whole process: the API and control threads share them.
const ARENAS: i32 = 2;
/// Blocks from this size are mmapped (and unmapped when freed), whatever was freed before.
const MMAP_THRESHOLD: i32 = 256 * 1024;
/// Free memory at the top of an arena beyond this goes back to the system.
const TRIM_THRESHOLD: i32 = 512 * 1024;

/// Call once, first thing in `main`, before any thread starts.
pub fn settle_allocator() {
    #[cfg(target_env = "gnu")]
    for (param, value) in [
        (libc::M_ARENA_MAX, ARENAS),
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    ] {
        // SAFETY: mallopt only changes allocator tunables; it is called before any other
        // thread exists, and every value is in its documented range.
        unsafe {
            libc::mallopt(param, value);
        }
    }
}

/// Bytes per cache line on the CPUs Estuary runs on (x86-64, Cortex-A72/A76).
const CACHE_LINE: usize = 64;

/// Asks the CPU to bring the `len` bytes at `start` into its caches ahead of use. A hint
/// only: it reads nothing, cannot fault, and is a no-op where the CPU has no such
/// instruction. For state that is visited once per pass over many streams, and so has left
/// the caches by its turn (see `pipeline::ingest` in the daemon).
pub fn prefetch(start: *const u8, len: usize) {
    for offset in (0..len).step_by(CACHE_LINE) {
        prefetch_line(start.wrapping_add(offset));
    }
}

#[inline(always)]
fn prefetch_line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline; a prefetch never dereferences `at` in
    // the language's sense and never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `prfm` is a hint: it reads no register but `at`, writes none, and never
    // faults, whatever the address.
    unsafe {
        core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) at, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = at;
}

/// Appends `samples` to `ring` with stores that bypass the caches where the CPU has them
/// (x86-64; elsewhere a plain copy), or fails as `push_entire_slice` does when they do not
/// fit.
///
/// For rings read back long after the write (a recorder drains its ring every 250 ms): a
/// plain copy first reads every line it writes into the cache, evicting the ingest thread's
/// own state, and the line has left the cache again by the time the reader comes. With 128
/// recorders that copy was the largest cost recording added to the ingest thread.
pub fn push_streaming(
    ring: &mut rtrb::Producer<i32>,
    samples: &[i32],
) -> Result<(), rtrb::chunks::ChunkError> {
    let mut chunk = ring.write_chunk_uninit(samples.len())?;
    let (first, second) = chunk.as_mut_slices();
    let (head, tail) = samples.split_at(first.len());
    copy_streaming(first, head);
    copy_streaming(second, tail);
    streaming_fence();
    // SAFETY: both slices of the chunk were written in full above, and the fence orders
    // those stores before the commit's release store publishes them to the reader.
    unsafe { chunk.commit_all() };
    Ok(())
}

/// Copies `src` into `dst` (same length), bypassing the caches for the whole 16-byte blocks.
fn copy_streaming<T: Copy>(dst: &mut [std::mem::MaybeUninit<T>], src: &[T]) {
    assert_eq!(dst.len(), src.len());
    let len = std::mem::size_of_val(src);
    let (to, from) = (dst.as_mut_ptr().cast::<u8>(), src.as_ptr().cast::<u8>());
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        // Plain stores up to the first 16-byte boundary of `dst`, streaming stores after.
        let lead = to.align_offset(16).min(len);
        let whole = (len - lead) / 16 * 16;
        // SAFETY: `dst` and `src` are `len` bytes each and do not overlap (one is borrowed
        // mutably); every offset below stays inside them. The streaming stores go to
        // `to + lead + 16k`, 16-byte aligned; the loads are unaligned. SSE2 is part of the
        // x86-64 baseline.
        unsafe {
            std::ptr::copy_nonoverlapping(from, to, lead);
            for k in (lead..lead + whole).step_by(16) {
                let v = _mm_loadu_si128(from.add(k).cast::<__m128i>());
                _mm_stream_si128(to.add(k).cast::<__m128i>(), v);
            }
            std::ptr::copy_nonoverlapping(
                from.add(lead + whole),
                to.add(lead + whole),
                len - lead - whole,
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above: `len` bytes each, not overlapping.
    unsafe {
        std::ptr::copy_nonoverlapping(from, to, len);
    }
}

/// Orders the streaming stores before every later store (they are weakly ordered otherwise).
fn streaming_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` only orders stores; SSE is part of the x86-64 baseline.
    unsafe {
        core::arch::x86_64::_mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length and starting offset (aligned or not, wrapping around the ring's end or
    /// not) arrives whole and in order, and a slice that does not fit is refused untouched.
    #[test]
    fn push_streaming_copies_exactly() {
        let (mut producer, mut consumer) = rtrb::RingBuffer::<i32>::new(101);
        let mut next = 0i32;
        let mut expected = 0i32;
        for round in 0..400usize {
            let len = (round * 7) % 67;
            let block: Vec<i32> = (0..len)
                .map(|_| {
                    next = next.wrapping_add(0x3b9a_ca07);
                    next
                })
                .collect();
            push_streaming(&mut producer, &block).expect("fits");
            let chunk = consumer.read_chunk(len).expect("all of it arrived");
            let (a, b) = chunk.as_slices();
            for &got in a.iter().chain(b) {
                expected = expected.wrapping_add(0x3b9a_ca07);
                assert_eq!(got, expected, "round {round}");
            }
            chunk.commit_all();
        }
        let too_long = vec![1i32; 102];
        assert!(push_streaming(&mut producer, &too_long).is_err());
        assert_eq!(consumer.slots(), 0);
    }

    #[test]
    fn prefetch_never_faults_whatever_the_address() {
        let buffer = vec![7u8; 10_000];
        prefetch(buffer.as_ptr(), buffer.len());
        prefetch(core::ptr::null(), 1 << 20);
        prefetch(usize::MAX as *const u8, 4096);
        prefetch(buffer.as_ptr(), 0);
        assert!(buffer.iter().all(|&b| b == 7));
    }
}
