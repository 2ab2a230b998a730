//! OS clocks, absolute sleeps, CPU time and real-time scheduling.
//!
//! The engine never reads a clock itself (it is handed a [`MonoTime`]); this module is
//! where those values come from. All times are `CLOCK_MONOTONIC`, which never jumps
//! with NTP/PTP steps of the wall clock.

use std::io;
use std::time::Duration;

use estuary_engine::time::MonoTime;

/// Current `CLOCK_MONOTONIC` time.
pub fn monotonic_now() -> MonoTime {
    MonoTime::from_nanos(clock_ns(libc::CLOCK_MONOTONIC))
}

/// Current `CLOCK_REALTIME` time in nanoseconds since the Unix epoch.
///
/// Only for converting kernel packet timestamps (which are `CLOCK_REALTIME`) to the
/// monotonic clock; never use it to pace or measure.
pub fn realtime_now_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Current `CLOCK_TAI` time in nanoseconds since the PTP epoch: the media clock AES67
/// senders stamp RTP with when no PTP clock is locked (equal to `CLOCK_REALTIME` when the
/// kernel's TAI offset is not set).
pub fn tai_now_ns() -> u64 {
    clock_ns(libc::CLOCK_TAI)
}

/// Sleeps until the monotonic clock reaches `t` (returns at once if it already has).
///
/// Uses `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`, so a loop that sleeps until
/// `start + k * period` never accumulates drift, and restarts after signals (`EINTR`)
/// with the same deadline.
pub fn sleep_until(t: MonoTime) {
    let ns = t.as_nanos();
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec that outlives the call; the remainder
        // pointer may be null with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        // clock_nanosleep returns the error number instead of setting errno.
        if rc != libc::EINTR {
            return;
        }
    }
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    Duration::from_nanos(clock_ns(libc::CLOCK_THREAD_CPUTIME_ID))
}

/// CPU time consumed by the whole process, all threads (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_time() -> Duration {
    Duration::from_nanos(clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID))
}

/// CPU time consumed so far by the process `pid` (its CPU-time clock, to the nanosecond),
/// or `None` if it is gone.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid, writable clockid_t.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; a clock of a process that exited fails.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

/// CPU time consumed so far by the kernel's own threads (the children of `kthreadd`, pid 2:
/// workqueue workers, block-layer dispatch, softirq threads), which work for processes
/// without being charged to them: a write's completion, say. Threads that exited since the
/// last call take their time with them.
pub fn kernel_threads_cpu_time() -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid == 2 || parent_of(pid) == Some(2))
        .filter_map(cpu_time_of)
        .sum()
}

/// The parent's pid from `/proc/<pid>/stat` (the field after the parenthesised name, which
/// may itself hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of the calling process's children that have exited and been
/// waited for (`getrusage(RUSAGE_CHILDREN)`), for benchmarks against peer processes.
pub fn children_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_CHILDREN is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Clock ticks per second of the `utime`/`stime` fields in `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Gives the calling thread `SCHED_FIFO` real-time priority `priority` (1..=99).
///
/// # Errors
/// `PermissionDenied` without `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` allowance;
/// `InvalidInput` for a priority out of range. Callers usually log the error and go on
/// at normal priority.
pub fn set_realtime_priority(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pthread_self() is always a valid handle for the calling thread and
    // `param` outlives the call.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used here exist on
    // every supported Linux, so the call cannot fail (checked in debug builds).
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Sets the calling thread's timer slack (`PR_SET_TIMERSLACK`): how late the kernel may
/// fire its timers to group wake-ups. The default 50 µs is more than a packet sender's
/// pacing budget allows; real-time threads have none anyway.
pub fn set_timer_slack(slack: Duration) -> io::Result<()> {
    let ns = libc::c_ulong::try_from(slack.as_nanos().max(1)).unwrap_or(libc::c_ulong::MAX);
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_processes_cpu_clocks_read() {
        let own = cpu_time_of(std::process::id()).expect("own clock");
        assert!(own > Duration::ZERO);
        assert_eq!(
            parent_of(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
        // Kernel threads exist and have run (kthreadd at least started them all).
        assert!(kernel_threads_cpu_time() > Duration::ZERO);
        assert_eq!(cpu_time_of(u32::MAX), None);
    }

    #[test]
    fn sleep_until_reaches_deadline() {
        let start = monotonic_now();
        let deadline = MonoTime::from_nanos(start.as_nanos() + 5_000_000);
        sleep_until(deadline);
        let end = monotonic_now();
        assert!(end.as_nanos() >= deadline.as_nanos());
        assert!(end.as_nanos() - deadline.as_nanos() < 50_000_000);
    }

    #[test]
    fn sleep_until_past_returns_at_once() {
        let start = monotonic_now();
        sleep_until(MonoTime::from_nanos(
            start.as_nanos().saturating_sub(1_000_000),
        ));
        assert!(monotonic_now().as_nanos() - start.as_nanos() < 5_000_000);
    }

    #[test]
    fn cpu_time_advances_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time() > before);
        assert!(process_cpu_time() >= thread_cpu_time());
    }
}
