//! linuxptp's `ptp4l` as a peer: started with software timestamps for the interop tests and
//! the PTP benchmark, its log read back ("master offset" lines, port states).
//!
//! `ptp4l` is started with `free_running 1`: a network namespace does not isolate the
//! system clock, so a following `ptp4l` must measure without steering the host's clock
//! (except [`Ptp4lOptions::declare_slave`], capped at 1 ppb).

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

/// A running `ptp4l`, killed on drop.
#[derive(Debug)]
pub struct Ptp4l {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    uds: std::path::PathBuf,
    /// The host clock's frequency before a `declare_slave` ptp4l touched it, restored when
    /// it stops (ptp4l leaves its last correction in place).
    host_frequency: Option<libc::c_long>,
}

/// How to run `ptp4l` (it prints every measurement: `summary_interval` is below any Sync
/// interval).
#[derive(Debug, Clone, Copy)]
pub struct Ptp4lOptions {
    pub domain: u8,
    /// `-s`: slave only.
    pub follower: bool,
    pub priority1: u8,
    /// logSyncInterval (−3: 8 Sync per second, as the AES67 profile).
    pub log_sync_interval: i8,
    /// A follower that reaches the SLAVE state, as a host's linuxptp does (for Estuary's
    /// external mode). ptp4l only declares SLAVE once its servo locks, and its servo steers
    /// the host clock; so this one runs a PI servo whose corrections are capped at 1 ppb
    /// (`max_frequency 1`, never stepping). Both ptp4l timestamp from the same host clock,
    /// so the offsets stay what they are, and the host clock moves by at most 1 ns/s; its
    /// frequency is restored when this ptp4l stops.
    /// Without it a follower is `free_running` and stays UNCALIBRATED.
    pub declare_slave: bool,
}

impl Default for Ptp4lOptions {
    fn default() -> Self {
        Self {
            domain: 0,
            follower: false,
            priority1: 128,
            log_sync_interval: -3,
            declare_slave: false,
        }
    }
}

impl Ptp4l {
    /// Starts `program` (a `ptp4l` command, e.g. from
    /// [`crate::netns::PeerNamespace::command`]) on `interface` with software timestamps,
    /// writing its configuration into `dir`.
    ///
    /// # Errors
    /// The configuration cannot be written or `ptp4l` cannot be started.
    pub fn spawn(
        mut program: Command,
        interface: &str,
        options: Ptp4lOptions,
        dir: &Path,
    ) -> io::Result<Self> {
        let conf = dir.join(format!("ptp4l-{interface}-{}.conf", options.domain));
        // Its own management socket: the default (/var/run/ptp4l) is shared by every
        // namespace, and tests run side by side.
        let uds = dir.join(format!("ptp4l-{interface}-{}.sock", options.domain));
        let servo = if options.declare_slave {
            "free_running 0\n\
             first_step_threshold 0\n\
             step_threshold 0\n\
             max_frequency 1\n\
             pi_proportional_const 0.000000001\n\
             pi_integral_const 0.02\n"
        } else {
            "free_running 1\n"
        };
        std::fs::write(
            &conf,
            format!(
                "[global]\n\
                 domainNumber {}\n\
                 priority1 {}\n\
                 logSyncInterval {}\n\
                 logAnnounceInterval 0\n\
                 logMinDelayReqInterval -3\n\
                 {servo}\
                 summary_interval -4\n\
                 tx_timestamp_timeout 100\n\
                 uds_address {}\n",
                options.domain,
                options.priority1,
                options.log_sync_interval,
                uds.display()
            ),
        )?;
        program.args(["-i", interface, "-S", "-m", "-f"]).arg(&conf);
        if options.follower {
            program.arg("-s");
        }
        let mut child = program
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run ptp4l (install linuxptp): {e}"),
                )
            })?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = Arc::clone(&lines);
            thread::Builder::new()
                .name("ptp4l-log".into())
                .spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        lines
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(line);
                    }
                })?;
        }
        Ok(Self {
            child,
            lines,
            uds,
            host_frequency: options
                .declare_slave
                .then(|| host_frequency(None))
                .flatten(),
        })
    }

    /// Its management socket (`uds_address`), as `pmc -s` or Estuary's external mode use it.
    pub fn uds_path(&self) -> &Path {
        &self.uds
    }

    /// Everything `ptp4l` printed so far.
    pub fn log(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The offsets `ptp4l` measured to its master, ns. (With `free_running` its servo never
    /// leaves state `s0`; the offsets are raw measurements against the host clock.)
    pub fn master_offsets_ns(&self) -> Vec<i64> {
        self.log()
            .iter()
            .filter_map(|l| parse_master_offset(l))
            .collect()
    }

    /// Stops `ptp4l`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(freq) = self.host_frequency.take() {
            host_frequency(Some(freq));
        }
    }
}

impl Drop for Ptp4l {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads (`None`) or sets the system clock's frequency correction (`adjtimex` `freq`,
/// ppm × 2¹⁶); returns the value read or set.
fn host_frequency(set: Option<libc::c_long>) -> Option<libc::c_long> {
    // SAFETY: an all-zero timex is valid (modes = 0: read only).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    if let Some(freq) = set {
        tx.modes = libc::ADJ_FREQUENCY;
        tx.freq = freq;
    }
    // SAFETY: `tx` is a valid, writable timex; only the frequency is set, and only to the
    // value read before ptp4l started.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    (rc >= 0).then_some(tx.freq)
}

/// `ptp4l[123.456]: master offset        -12 s0 freq  +3 path delay  4567`: the offset, ns.
pub fn parse_master_offset(line: &str) -> Option<i64> {
    let rest = line.split("master offset").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The clock identity `ptp4l` derives from a MAC (`aa:bb:cc:dd:ee:ff` →
/// `aa bb cc ff fe dd ee ff`).
pub fn identity_from_mac(mac: &str) -> Option<[u8; 8]> {
    let bytes: Vec<u8> = mac
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    let m: [u8; 6] = bytes.try_into().ok()?;
    Some([m[0], m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_master_offsets() {
        assert_eq!(
            parse_master_offset(
                "ptp4l[5.1]: master offset        -12 s2 freq  +3 path delay  4567"
            ),
            Some(-12)
        );
        assert_eq!(
            parse_master_offset("ptp4l[5.1]: master offset   99999 s0 freq  +0 path delay 1"),
            Some(99999)
        );
        assert_eq!(parse_master_offset("ptp4l[5.1]: port 1: LISTENING"), None);
    }

    #[test]
    fn identity_inserts_fffe() {
        assert_eq!(
            identity_from_mac("02:aa:bb:cc:dd:ee\n"),
            Some([0x02, 0xaa, 0xbb, 0xff, 0xfe, 0xcc, 0xdd, 0xee])
        );
        assert_eq!(identity_from_mac("nonsense"), None);
    }
}
