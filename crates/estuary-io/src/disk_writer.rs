//! Many files' direct writes at once, through one io_uring on one thread of the process.
//!
//! A recorder rewrites its files' headers every second; before that, each of its files'
//! staged blocks must be on disk. Written with `pwrite` from each recorder's thread, that is
//! one blocking system call, one sleep and one wake-up per file and second: at 1024 files,
//! a context switch per write on 128 threads. Here a recorder hands all of its files' writes
//! over at once and sleeps once; the writer thread keeps hundreds of writes from all the
//! recorders in flight in one ring, submits and reaps them in batches. At 1024 files this
//! took recording from 26 % to 21 % of the ingest's CPU in `bench record`, and from 28 % to
//! 25 % counting the kernel's worker threads, which finish asynchronous writes without
//! charging the process (docs/benchmarks.md, Record, "Session 18").
//!
//! The kernel only completes a direct write asynchronously when it does not extend the
//! file (ext4 waits for one that does, on the submitting thread), so the recorder allocates
//! its files' space ahead of the audio (see `record::file` in the daemon).
//!
//! Where io_uring is missing or forbidden (old kernels, `kernel.io_uring_disabled`, container
//! seccomp profiles), [`write_together`] says so and the caller writes with `pwrite` itself.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::sync::OnceLock;
use std::sync::mpsc;

use io_uring::{IoUring, opcode, types};

/// Submission queue entries: four hundred recorders' worth of eight files in flight before
/// any waits for room.
const ENTRIES: u32 = 4096;

/// One write: all of `bytes` at offset `at` of `file`.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    pub file: &'a File,
    pub bytes: &'a [u8],
    pub at: u64,
}

/// Writes all of `writes` through the process's writer thread and waits until every one is
/// done: each one's bytes written (possibly fewer than asked: the caller writes the rest) or
/// its error. `None` where io_uring is not available (nothing was written).
pub fn write_together(writes: &[Write<'_>]) -> Option<Vec<std::io::Result<usize>>> {
    let writer = WRITER.get_or_init(start).as_ref()?;
    if writes.is_empty() {
        return Some(Vec::new());
    }
    let (reply, done) = mpsc::sync_channel(1);
    let job = Job {
        writes: writes
            .iter()
            .map(|w| Raw {
                fd: w.file.as_raw_fd(),
                ptr: w.bytes.as_ptr(),
                // A longer write comes back short; the caller writes the rest.
                len: u32::try_from(w.bytes.len()).unwrap_or(u32::MAX - 4095),
                at: w.at,
            })
            .collect(),
        reply,
    };
    writer.send(job).ok()?;
    // Returning before the reply would hand the buffers back while the kernel may still read
    // them; the writer replies to every job it took, and only exits once none is in flight.
    let results = done.recv().ok()?;
    Some(
        results
            .into_iter()
            .map(|r| {
                usize::try_from(r)
                    .map_err(|_| std::io::Error::from_raw_os_error(r.saturating_neg()))
            })
            .collect(),
    )
}

/// Allocates `len` bytes of `file` from `at` (`fallocate`), making the file at least
/// `at + len` long; reads of the space give zeros until it is written.
pub fn allocate(file: &File, at: u64, len: u64) -> std::io::Result<()> {
    let (Ok(at), Ok(len)) = (libc::off_t::try_from(at), libc::off_t::try_from(len)) else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: fallocate only acts on the descriptor, which `file` keeps open.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, at, len) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Where what was written of `file` ends: the end of its last stretch of data at or after
/// `from` (`SEEK_DATA`/`SEEK_HOLE`), so space allocated ahead and never written does not
/// count, while a hole earlier in the file (a sparse copy of silence) does not cut it short.
/// `from` where nothing after it was written; the file's length where the filesystem does
/// not tell. (Clean cached pages of the file are dropped on the way.)
pub fn written_end(file: &File, from: u64) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let Ok(mut at) = libc::off_t::try_from(from) else {
        return Ok(len);
    };
    let fd = file.as_raw_fd();
    let mut end = at;
    // SAFETY: posix_fadvise and lseek only act on the descriptor, which `file` keeps open;
    // its offset is put back as it was.
    unsafe {
        // Space never written reads as zeros, and once read (a player opened the file), the
        // page cache holds those zeros, which SEEK_HOLE counts as data: drop them first.
        libc::posix_fadvise(fd, at, 0, libc::POSIX_FADV_DONTNEED);
        let was = libc::lseek(fd, 0, libc::SEEK_CUR);
        loop {
            let data = libc::lseek(fd, at, libc::SEEK_DATA);
            if data < 0 {
                break; // ENXIO: no data after `at`
            }
            let hole = libc::lseek(fd, data, libc::SEEK_HOLE);
            if hole <= data {
                end = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
                break; // not told: all of it
            }
            (end, at) = (hole, hole);
        }
        libc::lseek(fd, was.max(0), libc::SEEK_SET);
    }
    Ok(u64::try_from(end).map_or(len, |end| end.min(len)))
}

static WRITER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

/// A write as the ring takes it: the buffer and the descriptor stay valid because the
/// thread that made the job waits for its reply.
struct Raw {
    fd: i32,
    ptr: *const u8,
    len: u32,
    at: u64,
}

struct Job {
    writes: Vec<Raw>,
    /// Each write's result as the kernel gives it (bytes, or minus the error number).
    reply: mpsc::SyncSender<Vec<i32>>,
}

// SAFETY: `Raw`'s pointer is only handed to the kernel, on the writer thread, while the
// thread that owns the buffer waits for the job's reply (see `write_together`).
unsafe impl Send for Job {}

/// Whether writes go through the writer thread (io_uring is there and not turned off).
pub fn available() -> bool {
    WRITER.get_or_init(start).is_some()
}

/// Set to `off` (or `0`), the recorders write with `pwrite` from their own threads, as where
/// io_uring is missing: a way around a kernel whose io_uring misbehaves, and the baseline
/// `bench record` compares against.
pub const SWITCH: &str = "ESTUARY_IO_URING";

fn start() -> Option<mpsc::Sender<Job>> {
    if std::env::var(SWITCH).is_ok_and(|v| v == "off" || v == "0") {
        tracing::info!("{SWITCH}=off: recorders write with pwrite");
        return None;
    }
    let ring = match IoUring::new(ENTRIES) {
        Ok(ring) => ring,
        Err(e) => {
            tracing::info!(error = %e, "io_uring not available: recorders write with pwrite");
            return None;
        }
    };
    let (jobs, incoming) = mpsc::channel();
    std::thread::Builder::new()
        .name("disk-writer".into())
        .spawn(move || run(ring, &incoming))
        .ok()?;
    Some(jobs)
}

/// A job being written: results so far and writes not completed yet.
struct Pending {
    results: Vec<i32>,
    left: usize,
    reply: mpsc::SyncSender<Vec<i32>>,
}

fn run(mut ring: IoUring, incoming: &mpsc::Receiver<Job>) {
    let mut jobs: Vec<Option<Pending>> = Vec::new();
    // Writes taken but not in the submission queue yet (it was full): (job slot, index).
    let mut queued: VecDeque<(usize, usize, Raw)> = VecDeque::new();
    let mut in_flight = 0usize;
    loop {
        let idle = in_flight == 0 && queued.is_empty();
        let first = if idle {
            match incoming.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            }
        } else {
            None
        };
        for job in first
            .into_iter()
            .chain(std::iter::from_fn(|| incoming.try_recv().ok()))
        {
            let slot = match jobs.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    jobs.push(None);
                    jobs.len() - 1
                }
            };
            let n = job.writes.len();
            queued.extend(
                job.writes
                    .into_iter()
                    .enumerate()
                    .map(|(i, w)| (slot, i, w)),
            );
            jobs[slot] = Some(Pending {
                results: vec![0; n],
                left: n,
                reply: job.reply,
            });
        }
        while let Some((slot, index, write)) = queued.pop_front() {
            let entry = opcode::Write::new(types::Fd(write.fd), write.ptr, write.len)
                .offset(write.at)
                .build()
                .user_data(((slot as u64) << 32) | index as u64);
            // SAFETY: the buffer and descriptor outlive the write: the job's owner waits for
            // its reply, sent only once the kernel completed all of its writes.
            if unsafe { ring.submission().push(&entry) }.is_err() {
                queued.push_front((slot, index, write));
                break;
            }
            in_flight += 1;
        }
        let wait = usize::from(in_flight > 0);
        match ring.submit_and_wait(wait) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            // EBUSY: completions must be reaped first (done below); anything else leaves
            // the writes where they are, to be submitted again.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => {
                tracing::warn!(error = %e, "io_uring submit failed");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        for done in ring.completion() {
            in_flight -= 1;
            let data = done.user_data();
            let (slot, index) = ((data >> 32) as usize, (data & 0xffff_ffff) as usize);
            let Some(Some(job)) = jobs.get_mut(slot) else {
                continue;
            };
            job.results[index] = done.result();
            job.left -= 1;
            if job.left == 0
                && let Some(job) = jobs[slot].take()
            {
                // The owner may have given up only if its thread ended; nothing to tell.
                let _ = job.reply.send(job.results);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt as _;

    /// Space allocated ahead reads as zeros and ends what was written; writing into it
    /// moves that end.
    #[test]
    fn allocated_space_is_not_written() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        file.write_all_at(&[5u8; 8192], 0).expect("write");
        allocate(&file, 0, 1 << 20).expect("fallocate");
        assert_eq!(file.metadata().expect("meta").len(), 1 << 20);
        assert_eq!(written_end(&file, 0).expect("seek"), 8192);
        let more = [6u8; 4096];
        let results = write_together(&[Write {
            file: &file,
            bytes: &more,
            at: 8192,
        }])
        .expect("io_uring");
        assert_eq!(results[0].as_ref().ok(), Some(&4096));
        // Read (as a player would) before asking: the zeros read are not data.
        let back = std::fs::read(&path).expect("read");
        assert_eq!(written_end(&file, 0).expect("seek"), 12_288);
        assert!(back[8192..12_288].iter().all(|&b| b == 6));
        assert!(back[12_288..].iter().all(|&b| b == 0));
        // A hole before more data (a sparse copy of silence) does not end what was written.
        file.write_all_at(&[7u8; 4096], 65_536).expect("write");
        assert_eq!(written_end(&file, 0).expect("seek"), 69_632);
        assert_eq!(
            written_end(&file, 1 << 20).expect("seek"),
            1 << 20,
            "nothing after"
        );
    }

    /// Writes from several threads at once, each many files, land whole and where asked;
    /// an error (a descriptor not open for writing) comes back for its write alone.
    #[test]
    fn writes_many_files_from_many_threads() {
        let dir = tempfile::tempdir().expect("tmp");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let dir = dir.path();
                s.spawn(move || {
                    let files: Vec<File> = (0..8)
                        .map(|i| {
                            std::fs::OpenOptions::new()
                                .create(true)
                                .truncate(true)
                                .write(true)
                                .read(true)
                                .open(dir.join(format!("{t}-{i}")))
                                .expect("open")
                        })
                        .collect();
                    for round in 0..5u8 {
                        let data: Vec<Vec<u8>> = (0..8u8)
                            .map(|i| vec![t * 64 + i * 8 + round; 4096])
                            .collect();
                        let writes: Vec<Write<'_>> = files
                            .iter()
                            .zip(&data)
                            .map(|(file, bytes)| Write {
                                file,
                                bytes,
                                at: u64::from(round) * 4096,
                            })
                            .collect();
                        let results = write_together(&writes).expect("io_uring");
                        assert!(results.iter().all(|r| matches!(r, Ok(4096))), "{results:?}");
                    }
                    for (i, file) in files.iter().enumerate() {
                        let mut back = vec![0u8; 5 * 4096];
                        file.read_exact_at(&mut back, 0).expect("read");
                        for round in 0..5u8 {
                            let want = t * 64 + i as u8 * 8 + round;
                            let block = &back[usize::from(round) * 4096..][..4096];
                            assert!(
                                block.iter().all(|&b| b == want),
                                "file {t}-{i} block {round}"
                            );
                        }
                    }
                });
            }
        });
        let read_only = File::open(dir.path().join("0-0")).expect("open");
        let fine = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("0-1"))
            .expect("open");
        let bytes = [1u8; 100];
        let writes = [
            Write {
                file: &read_only,
                bytes: &bytes,
                at: 0,
            },
            Write {
                file: &fine,
                bytes: &bytes,
                at: 0,
            },
        ];
        let results = write_together(&writes).expect("io_uring");
        assert_eq!(
            results[0].as_ref().map_err(std::io::Error::raw_os_error),
            Err(Some(libc::EBADF))
        );
        assert_eq!(results[1].as_ref().ok(), Some(&100));
    }
}
