//! Writing recordings with `O_DIRECT`: the audio goes from the recorder's buffer to the disk
//! without a copy into the page cache and without ext4's per-page delayed-allocation
//! bookkeeping, which together were half of the recorder's CPU with buffered `write(2)`.
//!
//! `O_DIRECT` wants the buffer's address, the file offset and the length aligned (to the
//! device's logical block; [`ALIGN`] covers every common one). A [`Staging`] buffer keeps the
//! file's bytes from an aligned offset on, in memory whose start is aligned: whole blocks go
//! out with `pwrite`, the tail (less than a block) waits for more audio. Filesystems that
//! refuse `O_DIRECT` (tmpfs, some FUSE and network ones) refuse it at `open` with `EINVAL`:
//! those files are written through the page cache as before.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Alignment of buffers, offsets and lengths of direct writes.
pub const ALIGN: usize = 4096;

/// Opens a second descriptor of `path` for direct writes; `None` where the filesystem does
/// not do `O_DIRECT`.
pub fn open(path: &Path) -> std::io::Result<Option<File>> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The bytes of a file from offset `base` on that are not on disk yet, in memory whose first
/// byte is [`ALIGN`]ed (as long as the vector has not grown past its capacity; checked before
/// each write).
pub struct Staging {
    /// `lead` bytes of padding, then the file's bytes from `base`.
    buf: Vec<u8>,
    lead: usize,
    /// File offset of the first staged byte.
    pub base: u64,
}

impl Staging {
    /// Room for `capacity` bytes without growing (growing only costs a copy into a newly
    /// aligned buffer).
    pub fn new(base: u64, capacity: usize) -> Self {
        let mut buf: Vec<u8> = Vec::with_capacity(capacity + ALIGN);
        let lead = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        buf.resize(lead, 0);
        Self { buf, lead, base }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.lead..]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.lead..]
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.lead
    }

    /// Where appended bytes go (the packers write into it).
    pub fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Makes the staged bytes start on an aligned address again if the vector moved.
    pub fn realign(&mut self) {
        if self.bytes().as_ptr().align_offset(ALIGN) == 0 {
            return;
        }
        let mut fresh = Self::new(self.base, self.buf.capacity());
        fresh.buf.extend_from_slice(self.bytes());
        *self = fresh;
    }

    /// Sets the number of staged bytes (zeros added past the end).
    pub fn resize(&mut self, len: usize) {
        self.buf.resize(self.lead + len, 0);
    }

    /// The first `n` staged bytes reached the disk.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len());
        self.buf.copy_within(self.lead + n.., self.lead);
        self.buf.truncate(self.buf.len() - n);
        self.base += n as u64;
    }

    /// Drops every staged byte; the next one goes at `base`.
    pub fn reset(&mut self, base: u64) {
        self.buf.truncate(self.lead);
        self.base = base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_stays_aligned_and_keeps_the_tail() {
        let mut s = Staging::new(0, 10_000);
        assert_eq!(s.bytes().as_ptr().align_offset(ALIGN), 0);
        s.vec().extend((0..9_000u32).map(|i| i as u8));
        s.consume(2 * ALIGN);
        assert_eq!(s.base, 2 * ALIGN as u64);
        assert_eq!(s.len(), 9_000 - 2 * ALIGN);
        assert_eq!(s.bytes()[0], (2 * ALIGN) as u8);
        // Growing past the capacity moves the vector: realign copies it back in line.
        s.vec().extend(std::iter::repeat_n(7u8, 100_000));
        s.realign();
        assert_eq!(s.bytes().as_ptr().align_offset(ALIGN), 0);
        assert_eq!(s.len(), 9_000 - 2 * ALIGN + 100_000);
        assert_eq!(s.bytes()[0], (2 * ALIGN) as u8);
        s.reset(5);
        assert_eq!(s.len(), 0);
        assert_eq!(s.base, 5);
    }
}
