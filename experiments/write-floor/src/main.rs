//! What writing the recorders' bytes costs, written in different ways: `files` files, each
//! given one second of 24-bit mono audio (rounded up to whole 4 KiB blocks, as the
//! recorders' direct writes are) per "second", as fast as the disk takes them. Prints the
//! process's CPU (user + system, its io_uring workers included) per second of audio.
//!
//! `write-floor MODE DIR [FILES] [SECONDS]`, MODE one of:
//! - `extend`: `O_DIRECT` writes that extend the file (what the recorders do);
//! - `keep-size`: the same, with space allocated 16 MiB ahead (`FALLOC_FL_KEEP_SIZE`);
//! - `allocate`: space allocated 16 MiB ahead and the file extended over it;
//! - `sparse`: the file extended 16 MiB ahead as a hole;
//! - `buffered`: through the page cache.
//!
//! Environment: `HUGE=1` puts the buffer in a transparent huge page; `HEADERS=1` also
//! rewrites a 1.6 KB header through the page cache after each write; `URING=1` submits the
//! writes through io_uring, eight at a time (one recorder's files), with up to 512 in
//! flight, or waiting for each eight with `WAIT8=1`.
//!
//! `THREADS=N` writes as the recorders do, from N threads with `files / N` files each, one
//! "second" every `TICK_MS` (100) milliseconds: with `SYNC=1` one direct write at a time,
//! otherwise through the thread's own io_uring (`DEFER=1`: completions run only when the
//! thread asks, `IORING_SETUP_DEFER_TASKRUN`), all of its files' writes submitted together
//! and not waited for until the next tick.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;

const AHEAD: u64 = 16 << 20;
const IN_FLIGHT: usize = 512;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn env(name: &str) -> bool {
    std::env::var_os(name).is_some()
}

/// A 4 KiB-aligned buffer of `len` bytes (in a huge page if `huge`), filled with a pattern.
fn buffer(len: usize, huge: bool) -> (Vec<u8>, usize) {
    let align = if huge { 2 << 20 } else { 4096 };
    let mut memory = vec![0u8; len + align];
    let at = memory.as_ptr().align_offset(align);
    if huge {
        // SAFETY: the 2 MiB from `at` lie inside `memory`.
        let advised = unsafe {
            libc::madvise(
                memory.as_mut_ptr().add(at).cast(),
                2 << 20,
                libc::MADV_HUGEPAGE,
            )
        };
        assert_eq!(advised, 0, "madvise");
    }
    for (k, b) in memory[at..at + len].iter_mut().enumerate() {
        *b = (k * 37) as u8;
    }
    (memory, at)
}

fn reserve(mode: &str, file: &File, from: u64) {
    let fd = file.as_raw_fd();
    let (at, len) = (from as i64, AHEAD as i64);
    // SAFETY: fallocate only acts on the descriptor.
    let allocated = |flags| unsafe { libc::fallocate(fd, flags, at, len) };
    match mode {
        "keep-size" => assert_eq!(allocated(libc::FALLOC_FL_KEEP_SIZE), 0, "fallocate"),
        "allocate" => assert_eq!(allocated(0), 0, "fallocate"),
        "sparse" => file.set_len(from + AHEAD).expect("set_len"),
        _ => {}
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!(
            "usage: write-floor extend|keep-size|allocate|sparse|buffered DIR [FILES] [SECONDS]"
        );
        std::process::exit(2);
    };
    let count: usize = args.get(3).map_or(1024, |s| s.parse().expect("FILES"));
    let seconds: u64 = args.get(4).map_or(20, |s| s.parse().expect("SECONDS"));
    let dir = Path::new(dir);
    let block = (48_000usize * 3).div_ceil(4096) * 4096;
    let (memory, at) = buffer(block, env("HUGE"));
    let data = &memory[at..at + block];
    let header = vec![7u8; 1600];
    let open = |i: usize, direct: bool| {
        let mut options = OpenOptions::new();
        options.create(true).write(true).truncate(direct);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        options
            .open(dir.join(format!("floor-{i}.raw")))
            .expect("open")
    };
    let files: Vec<File> = (0..count).map(|i| open(i, mode != "buffered")).collect();
    let headers: Vec<File> = if env("HEADERS") {
        (0..count).map(|i| open(i, false)).collect()
    } else {
        Vec::new()
    };
    if let Some(threads) = std::env::var("THREADS")
        .ok()
        .map(|t| t.parse::<usize>().expect("THREADS"))
    {
        per_thread(mode, threads, files, data, seconds);
        return;
    }
    let (uring, wait8) = (env("URING"), env("WAIT8"));
    let mut ring = io_uring::IoUring::new(4096).expect("io_uring");
    let mut in_flight = 0usize;
    let reap = |ring: &mut io_uring::IoUring, in_flight: &mut usize, down_to: usize| {
        while *in_flight > down_to {
            ring.submit_and_wait(1).expect("submit");
            for done in ring.completion() {
                assert_eq!(done.result(), block as i32, "write");
                *in_flight -= 1;
            }
        }
    };
    let mut reserved = vec![0u64; count];
    let (cpu0, wall0) = (cpu_seconds(), std::time::Instant::now());
    for second in 0..seconds {
        let offset = second * block as u64;
        for (i, file) in files.iter().enumerate() {
            if offset + block as u64 > reserved[i] {
                reserve(mode, file, reserved[i]);
                reserved[i] += AHEAD;
            }
            if uring {
                use io_uring::{opcode, types};
                let write =
                    opcode::Write::new(types::Fd(file.as_raw_fd()), data.as_ptr(), block as u32)
                        .offset(offset)
                        .build();
                // SAFETY: `data` outlives every write: all are reaped before it is dropped.
                unsafe { ring.submission().push(&write).expect("queue") };
                in_flight += 1;
                if i % 8 == 7 {
                    ring.submit().expect("submit");
                    reap(&mut ring, &mut in_flight, if wait8 { 0 } else { IN_FLIGHT });
                }
            } else {
                file.write_all_at(data, offset).expect("write");
            }
            if let Some(h) = headers.get(i) {
                h.write_all_at(&header, 0).expect("header");
            }
        }
    }
    reap(&mut ring, &mut in_flight, 0);
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{mode}{}{}{}: {:.1} ms CPU per second of audio ({count} files, {seconds} s of audio in {:.2} s)",
        if env("HUGE") { " huge" } else { "" },
        if env("HEADERS") { " +headers" } else { "" },
        if uring {
            if wait8 { " uring/8" } else { " uring" }
        } else {
            ""
        },
        cpu * 1000.0 / seconds as f64,
        wall0.elapsed().as_secs_f64()
    );
}

/// `THREADS=N`: N threads, each with its own io_uring and `files / N` files, submitting its
/// files' writes together and not waiting for them (only for the ones a second before).
fn per_thread(mode: &str, threads: usize, files: Vec<File>, data: &[u8], seconds: u64) {
    use io_uring::{opcode, types};
    let block = data.len();
    let per = files.len() / threads;
    let (cpu0, wall0) = (cpu_seconds(), std::time::Instant::now());
    let sync = env("SYNC");
    let tick = std::time::Duration::from_millis(
        std::env::var("TICK_MS").map_or(100, |t| t.parse().expect("TICK_MS")),
    );
    std::thread::scope(|s| {
        for group in files.chunks(per) {
            s.spawn(move || {
                let mut ring = if env("DEFER") {
                    io_uring::IoUring::builder()
                        .setup_single_issuer()
                        .setup_defer_taskrun()
                        .build(64)
                        .expect("io_uring")
                } else {
                    io_uring::IoUring::new(64).expect("io_uring")
                };
                let mut reserved = vec![0u64; group.len()];
                let mut in_flight = 0usize;
                for second in 0..seconds {
                    let offset = second * block as u64;
                    while in_flight > 0 {
                        ring.submit_and_wait(1).expect("wait");
                        for done in ring.completion() {
                            assert_eq!(done.result(), block as i32, "write");
                            in_flight -= 1;
                        }
                    }
                    let due = wall0 + tick * second as u32;
                    std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
                    for (i, file) in group.iter().enumerate() {
                        if offset + block as u64 > reserved[i] {
                            reserve(mode, file, reserved[i]);
                            reserved[i] += AHEAD;
                        }
                        if sync {
                            file.write_all_at(data, offset).expect("write");
                            continue;
                        }
                        let write = opcode::Write::new(
                            types::Fd(file.as_raw_fd()),
                            data.as_ptr(),
                            block as u32,
                        )
                        .offset(offset)
                        .build();
                        // SAFETY: `data` outlives the scope, and every write is reaped in it.
                        unsafe { ring.submission().push(&write).expect("queue") };
                        in_flight += 1;
                    }
                    ring.submit().expect("submit");
                }
                while in_flight > 0 {
                    ring.submit_and_wait(1).expect("wait");
                    in_flight -= ring.completion().count();
                }
            });
        }
    });
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{mode} threads={threads}{}{}: {:.1} ms CPU per second of audio ({} files, {seconds} s of audio in {:.2} s)",
        if sync { " sync" } else { "" },
        if env("DEFER") { " defer" } else { "" },
        cpu * 1000.0 / seconds as f64,
        files.len(),
        wall0.elapsed().as_secs_f64()
    );
}
