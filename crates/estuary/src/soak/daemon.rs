//! The gateway under test, as users run it: `estuary run --config FILE` in its own process,
//! so its memory and CPU are measured apart from the sender and the impairer, and its
//! counters are read through its API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub struct Daemon {
    child: Child,
    api: String,
}

/// Memory and CPU time of one process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_kib: u64,
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
}

/// `/proc/PID` figures (`pid` `None`: this process).
pub fn usage(pid: Option<u32>) -> Usage {
    let dir = pid.map_or("/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let rss_kib = std::fs::read_to_string(format!("{dir}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Fields 14 and 15 (utime, stime) follow the parenthesised command name.
    let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux architecture Estuary supports.
    Usage {
        rss_kib,
        cpu_s: ticks as f64 / 100.0,
    }
}

impl Daemon {
    /// Starts the daemon on `config` (its log goes to `log`) and waits for its API.
    pub fn start(config: &Path, log: &Path, api_port: u16) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("the estuary executable")?;
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting estuary run")?;
        let mut daemon = Daemon {
            child,
            api: format!("http://127.0.0.1:{api_port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if daemon.get("/api/status").is_ok() {
                return Ok(daemon);
            }
            if let Some(status) = daemon.child.try_wait()? {
                anyhow::bail!(
                    "the daemon exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the daemon's API did not answer within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let body = ureq::get(&format!("{}{path}", self.api))
            .call()
            .with_context(|| format!("GET {path}"))?
            .body_mut()
            .read_to_string()?;
        serde_json::from_str(&body).with_context(|| format!("GET {path}"))
    }

    /// SIGTERM, then waits (the recorders close their files); true when it exited cleanly.
    pub fn terminate(mut self) -> anyhow::Result<bool> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("kill -TERM")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
