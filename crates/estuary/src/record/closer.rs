//! The slow part of keeping files safe, off the writer thread: fsync, and closing takes.
//!
//! Closing a take (the last writes, the final headers, fsync, the sidecar) and fsync'ing the
//! open files each second can take seconds on a busy disk; the soak saw the writer stall
//! longer than its ring at rotations and drop audio. The writer hands that work to this
//! thread and goes on writing at once: the next take, or the next second of this one.

use std::fs::File;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::warn;

use super::FileSet;

/// Delays every close by this long (a humantime duration): lets the tests prove that a slow
/// close never holds up the writer. The test (`tests/rec.rs`) runs the daemon binary against
/// a real sender, so the hook is read at run time; only debug builds (what `cargo test`
/// builds) have it: a release build never reads it.
#[cfg(debug_assertions)]
const DELAY_VARIABLE: &str = "ESTUARY_TEST_CLOSE_DELAY";

/// The test hook's delay (debug builds only).
fn test_close_delay() -> Option<Duration> {
    #[cfg(debug_assertions)]
    {
        std::env::var(DELAY_VARIABLE)
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
    }
    #[cfg(not(debug_assertions))]
    None
}

/// What a job did, for the recorder's status.
#[derive(Debug, Default)]
pub struct Done {
    /// Audio bytes of a closed take.
    pub bytes_closed: u64,
    pub errors: u64,
    /// The last error and whether it was a sync of the open take (which then must end).
    pub error: Option<(std::io::Error, bool)>,
    /// A sync job finished (another may be queued).
    pub synced: bool,
}

enum Job {
    /// fsync these (clones of the open files' descriptors).
    Sync(Vec<File>),
    /// Close this take, with fsync if asked.
    Close(Box<FileSet>, bool),
}

pub struct Closer {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    sync_in_flight: bool,
}

impl Closer {
    /// `recorder` names the thread.
    pub fn start(recorder: &str) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (report, done) = mpsc::channel();
        let delay = test_close_delay();
        let thread = thread::Builder::new()
            .name(format!("close-{recorder}"))
            .spawn(move || {
                for job in queue {
                    let done = match job {
                        Job::Sync(files) => sync(&files),
                        Job::Close(mut set, fsync) => {
                            if let Some(d) = delay {
                                thread::sleep(d);
                            }
                            set.close_files(fsync)
                        }
                    };
                    let _ = report.send(done);
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            sync_in_flight: false,
        })
    }

    /// Queues `set` to be closed (fsync'ed if `fsync`).
    pub fn close(&mut self, set: FileSet, fsync: bool) -> Option<Done> {
        let job = Job::Close(Box::new(set), fsync);
        match self.jobs.as_ref().map(|j| j.send(job)) {
            Some(Ok(())) => None,
            // The thread is gone (it panicked): close here rather than leave bad headers.
            Some(Err(mpsc::SendError(Job::Close(mut set, fsync)))) => Some(set.close_files(fsync)),
            _ => None,
        }
    }

    /// Queues an fsync of `files` unless the last one is still running (a disk that slow
    /// gets one at a time).
    pub fn sync(&mut self, files: impl FnOnce() -> std::io::Result<Vec<File>>) -> Option<Done> {
        if self.sync_in_flight {
            return None;
        }
        let files = match files() {
            Ok(f) => f,
            Err(e) => {
                return Some(Done {
                    errors: 1,
                    error: Some((e, true)),
                    ..Done::default()
                });
            }
        };
        if let Some(jobs) = &self.jobs
            && jobs.send(Job::Sync(files)).is_ok()
        {
            self.sync_in_flight = true;
        }
        None
    }

    /// What the jobs finished since the last call.
    pub fn finished(&mut self) -> Vec<Done> {
        let done: Vec<Done> = self.done.try_iter().collect();
        if done.iter().any(|d| d.synced) {
            self.sync_in_flight = false;
        }
        done
    }

    /// Waits (up to `timeout`) for every queued job; returns what they did.
    pub fn finish(mut self, timeout: Duration) -> Vec<Done> {
        self.jobs = None;
        let mut out = Vec::new();
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + timeout;
            while !thread.is_finished() && Instant::now() < deadline {
                out.extend(self.done.try_iter());
                thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                warn!("a recorder's files are still being closed");
            }
        }
        out.extend(self.done.try_iter());
        out
    }
}

fn sync(files: &[File]) -> Done {
    let mut done = Done {
        synced: true,
        ..Done::default()
    };
    for f in files {
        if let Err(e) = f.sync_data() {
            done.errors += 1;
            done.error = Some((e, true));
        }
    }
    done
}
