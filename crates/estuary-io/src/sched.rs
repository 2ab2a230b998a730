//! Real-time scheduling for the threads that carry audio.
//!
//! A gateway on a busy host (a Raspberry Pi also running a desktop, a shared VM) loses audio
//! when the ingest thread waits behind a compiler or a browser. `SCHED_FIFO` lets it run the
//! moment its timer fires. It needs `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO` that allows the
//! priority); without it the thread keeps normal scheduling and the caller says so once.

use std::io;

/// Priority of the ingest thread: above the outputs, far below the kernel's own threads.
pub const INGEST_PRIORITY: i32 = 20;
/// Priority of output (encoder) threads.
pub const OUTPUT_PRIORITY: i32 = 10;

/// Moves the calling thread to `SCHED_FIFO` at `priority` (1–99).
pub fn promote_current_thread(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param for the duration of the call; pid 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy is real-time.
pub fn current_thread_is_realtime() -> bool {
    // SAFETY: querying the calling thread's policy has no preconditions.
    let policy = unsafe { libc::sched_getscheduler(0) };
    policy == libc::SCHED_FIFO || policy == libc::SCHED_RR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_either_works_or_says_why() {
        let handle = std::thread::spawn(|| match promote_current_thread(OUTPUT_PRIORITY) {
            Ok(()) => assert!(current_thread_is_realtime()),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert!(!current_thread_is_realtime());
            }
        });
        handle.join().expect("thread");
    }
}
