//! The host and process figures of the status: read from /proc, so they cost a few small
//! reads per second and need no extra crate.

use std::time::{Instant, SystemTime};

use estuary_io::clock::clock_ticks_per_second;
use estuary_io::mcast;

use crate::gateway::rfc3339;
use crate::status::{InterfaceStatus, SystemStatus};

/// How often the slow figures (interfaces, hostname) are read again.
const SLOW_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);
/// CPU percentage is averaged over at least this long.
const CPU_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// Samples [`SystemStatus`]; keeps what it needs to turn CPU time into a percentage.
#[derive(Debug)]
pub struct SystemSampler {
    started: SystemTime,
    config_path: Option<String>,
    ticks_per_second: f64,
    cpu_mark: (Instant, f64),
    cpu_percent: f64,
    slow: Option<(Instant, String, Vec<InterfaceStatus>)>,
    /// The last sample: the supervisor publishes 20 times a second, /proc is read once.
    last: Option<(Instant, SystemStatus)>,
}

impl SystemSampler {
    pub fn new(started: SystemTime, config_path: Option<&str>) -> Self {
        let ticks = clock_ticks_per_second() as f64;
        SystemSampler {
            started,
            config_path: config_path.map(str::to_owned),
            ticks_per_second: ticks,
            cpu_mark: (Instant::now(), process_cpu_seconds(ticks)),
            cpu_percent: 0.0,
            slow: None,
            last: None,
        }
    }

    /// The figures, read again at most once per [`CPU_WINDOW`].
    pub fn sample(&mut self) -> SystemStatus {
        let now = Instant::now();
        if let Some((at, last)) = &self.last
            && now.duration_since(*at) < CPU_WINDOW
        {
            return last.clone();
        }
        let status = self.read(now);
        self.last = Some((now, status.clone()));
        status
    }

    fn read(&mut self, now: Instant) -> SystemStatus {
        let cpu = process_cpu_seconds(self.ticks_per_second);
        let elapsed = now.duration_since(self.cpu_mark.0);
        if elapsed >= CPU_WINDOW {
            self.cpu_percent = (cpu - self.cpu_mark.1) / elapsed.as_secs_f64() * 100.0;
            self.cpu_mark = (now, cpu);
        }
        let fresh = self
            .slow
            .as_ref()
            .is_some_and(|(at, _, _)| now.duration_since(*at) < SLOW_PERIOD);
        if !fresh {
            self.slow = Some((now, hostname(), interfaces()));
        }
        let (hostname, interfaces) = self
            .slow
            .as_ref()
            .map(|(_, h, i)| (h.clone(), i.clone()))
            .unwrap_or_default();
        SystemStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname,
            pid: std::process::id(),
            started_at: rfc3339(self.started),
            uptime_s: SystemTime::now()
                .duration_since(self.started)
                .unwrap_or_default()
                .as_secs_f64(),
            cpu_percent: self.cpu_percent,
            cpu_seconds: cpu,
            memory_rss_bytes: rss_bytes(),
            cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            load_average: load_average(),
            interfaces,
            config_path: self.config_path.clone(),
        }
    }
}

/// utime + stime of this process, from /proc/self/stat.
fn process_cpu_seconds(ticks_per_second: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / ticks_per_second
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn interfaces() -> Vec<InterfaceStatus> {
    mcast::list_interfaces()
        .unwrap_or_default()
        .into_iter()
        .map(|i| InterfaceStatus {
            addresses: i
                .ipv4
                .iter()
                .map(ToString::to_string)
                .chain(i.ipv6.iter().map(ToString::to_string))
                .collect(),
            name: i.name,
            up: i.up,
            multicast: i.multicast,
        })
        .collect()
}
