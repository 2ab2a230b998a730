//! Source failover in the ingest thread: the main stream (the input's own jitter buffer), the
//! backup streams (each its own socket and jitter buffer) and a fallback are all played out on
//! every tick; the engine's `Switcher` says which one goes on air, and a switch crossfades
//! from the old source to the new one, on a sample boundary.

use std::net::UdpSocket;
use std::sync::Arc;

use anyhow::Context as _;
use tracing::{info, warn};

use estuary_engine::clock::PlayoutClock as _;
use estuary_engine::failover::{SwitchReason, Switcher, crossfade};
use estuary_engine::jitter::{JitterBuffer, JitterConfig};
use estuary_engine::time::MonoTime;
use estuary_io::batch::BatchReceiver;
use estuary_io::mcast;
use estuary_io::tx::ToneGenerator;

use super::clock_rule::ClockGate;
use super::ingest::{self, InputRuntime};
use crate::config::{InputConfig, ResolvedStream};
use crate::failover::{TONE_HZ, TONE_LEVEL_DBFS};
use crate::status::{FailoverStatus, InputCounters};

/// Backups in a chain: the engine's switcher takes main + 2 backups + the fallback.
pub const MAX_BACKUPS: usize = estuary_engine::failover::MAX_SOURCES - 2;
/// Names of the backups, in priority order, in the API and the log.
const BACKUP_NAMES: [&str; MAX_BACKUPS] = ["backup", "backup2"];

/// The name of source `slot` (0 main, then the backups, then the fallback).
fn slot_name(slot: usize, backups: usize) -> &'static str {
    match slot {
        0 => "main",
        s if s <= backups => BACKUP_NAMES.get(s - 1).copied().unwrap_or("backup"),
        _ => "fallback",
    }
}

/// What the ingest thread publishes about a failover input.
#[derive(Debug, Clone, Copy)]
pub struct FailoverSnapshot {
    /// The source on air: 0 main, 1..=backups the backups, then the fallback.
    pub active: usize,
    pub backups: usize,
    pub switches: u64,
    pub last_reason: Option<SwitchReason>,
    /// The main stream's clock as the clock rule sees it (`None`: not judged).
    pub main_clock: Option<bool>,
    /// The backup streams' counters (the main stream's are the input's), and the rate.
    pub backup_stats: [Option<estuary_engine::stats::StreamStats>; MAX_BACKUPS],
    pub sample_rate: u32,
}

pub(in crate::pipeline) struct FailoverRuntime {
    backups: Vec<(UdpSocket, JitterBuffer)>,
    tone: Option<Local>,
    /// When the tone's clock started and the frames it produced since.
    tone_clock: Option<(MonoTime, u64)>,
    sample_rate: u32,
    switcher: Switcher,
    crossfade_frames: usize,
    /// The audio each source played this tick (main, backups, fallback).
    played: Vec<Vec<i32>>,
    /// (source faded out, frames of the fade done).
    fade: Option<(usize, usize)>,
    last_reason: Option<SwitchReason>,
    name: String,
    /// The main stream's clock, judged by the supervisor (`clock_rule`).
    clock_gate: Arc<ClockGate>,
}

/// Sets up the backup and the fallback of `input`, if it has `failover`.
pub(super) fn open(
    input: &InputConfig,
    stream: &ResolvedStream,
    latency: std::time::Duration,
    clock_gate: Arc<ClockGate>,
) -> anyhow::Result<Option<Box<FailoverRuntime>>> {
    let Some(config) = input.failover.as_ref().map(toml::Spanned::get_ref) else {
        return Ok(None);
    };
    let name = input.name.get_ref().clone();
    let mut backups = Vec::new();
    for address in config.backups() {
        let iface_spec = config
            .backup_interface
            .as_ref()
            .or(input.interface.as_ref())
            .map(|i| i.get_ref().clone());
        let iface = iface_spec
            .as_deref()
            .map(mcast::resolve_interface)
            .transpose()
            .with_context(|| format!("input {name}: failover.backup_interface"))?;
        let socket = mcast::open_receive_socket(address, config.backup_source, iface.as_ref())
            .with_context(|| format!("input {name}: cannot receive the backup on {address}"))?;
        let jitter = JitterBuffer::new(JitterConfig {
            channels: stream.channels,
            sample_rate: stream.sample_rate,
            format: stream.format,
            payload_type: stream.payload_type,
            latency,
            capacity: (latency * 8).max(std::time::Duration::from_millis(400)),
        })
        .map_err(|e| anyhow::anyhow!("input {name}: backup {address}: {e}"))?;
        backups.push((socket, jitter));
    }
    let tone = if let Some(path) = config.fallback_file() {
        let samples = crate::failover::load_fallback(path, stream.channels, stream.sample_rate)
            .map_err(|m| anyhow::anyhow!("input {name}: failover.fallback.file: {m}"))?;
        Some(Local::File { samples, next: 0 })
    } else {
        config.tone().then(|| {
            Local::Tone(ToneGenerator::new(
                stream.sample_rate,
                stream.channels,
                TONE_HZ,
                0.0,
                TONE_LEVEL_DBFS,
            ))
        })
    };
    let network = 1 + backups.len();
    let switcher = Switcher::new(
        config.policy(stream.sample_rate),
        network,
        usize::from(tone.is_some()),
    );
    info!(
        input = %name,
        backups = ?config.backups(),
        fallback = %config.fallback.get_ref(),
        switch_after_ms = config.switch_after.as_millis() as u64,
        return_after_s = config.return_after.as_secs_f64(),
        "failover chain"
    );
    Ok(Some(Box::new(FailoverRuntime {
        played: vec![Vec::new(); network + 1],
        backups,
        tone,
        tone_clock: None,
        sample_rate: stream.sample_rate,
        crossfade_frames: config.policy(stream.sample_rate).crossfade,
        switcher,
        fade: None,
        last_reason: None,
        name,
        clock_gate,
    })))
}

impl FailoverRuntime {
    pub(super) fn snapshot(&self) -> FailoverSnapshot {
        let mut backup_stats = [None; MAX_BACKUPS];
        for (slot, (_, jitter)) in backup_stats.iter_mut().zip(&self.backups) {
            *slot = Some(*jitter.stats());
        }
        FailoverSnapshot {
            active: self.switcher.active(),
            backups: self.backups.len(),
            switches: self.switcher.switches(),
            last_reason: self.last_reason,
            main_clock: self.clock_gate.get(),
            backup_stats,
            sample_rate: self.sample_rate,
        }
    }
}

/// The fallback, produced locally on the local clock.
enum Local {
    Tone(ToneGenerator),
    /// A file looped: interleaved with the stream's channels; `next` is the next sample.
    File {
        samples: Vec<i32>,
        next: usize,
    },
}

impl Local {
    fn fill(&mut self, out: &mut [i32]) {
        match self {
            Local::Tone(tone) => {
                tone.fill(out);
            }
            Local::File { samples, next } => {
                let mut done = 0;
                while done < out.len() && !samples.is_empty() {
                    let n = (samples.len() - *next).min(out.len() - done);
                    out[done..done + n].copy_from_slice(&samples[*next..*next + n]);
                    done += n;
                    *next = (*next + n) % samples.len();
                }
            }
        }
    }
}

/// Reads the backups' sockets (the main one is read by the ingest loop as for any input).
pub(super) fn drain_backup(rx: &mut BatchReceiver, input: &mut InputRuntime) {
    let Some(f) = input.failover.as_mut() else {
        return;
    };
    let switcher = &mut f.switcher;
    for (i, (socket, jitter)) in f.backups.iter_mut().enumerate() {
        ingest::drain_into(rx, socket, jitter, |arrival, _, outcome| {
            if ingest::stored_position(outcome).is_some() {
                switcher.packet(1 + i, arrival);
            }
        });
    }
}

/// Plays out every source, decides, and feeds the outputs with the source on air.
pub(super) fn pull(input: &mut InputRuntime, now: MonoTime, scratch: &mut [i32]) {
    let channels = input.channels;
    let usable = scratch.len() / channels * channels;
    let Some(mut f) = input.failover.take() else {
        return;
    };
    if let Some((arrival, _)) = input.last_stored {
        f.switcher.packet(0, arrival);
    }
    for buf in &mut f.played {
        buf.clear();
    }
    // Main: the input's own buffer.
    loop {
        let pulled = input.jitter.pull(now, &mut scratch[..usable]);
        if pulled.frames == 0 {
            break;
        }
        let last = pulled.position + pulled.frames as u64 - 1;
        if let Some(due) = input.jitter.clock().due_time(last) {
            input.pull_lag.record(now.duration_since(due));
        }
        f.played[0].extend_from_slice(&scratch[..pulled.frames * channels]);
        if pulled.frames * channels < usable {
            break;
        }
    }
    for (i, (_, jitter)) in f.backups.iter_mut().enumerate() {
        loop {
            let pulled = jitter.pull(now, &mut scratch[..usable]);
            if pulled.frames == 0 {
                break;
            }
            f.played[1 + i].extend_from_slice(&scratch[..pulled.frames * channels]);
            if pulled.frames * channels < usable {
                break;
            }
        }
    }
    let backups = f.backups.len();
    if let Some(tone) = &mut f.tone {
        // The tone runs on the local clock.
        let (start, produced) = *f.tone_clock.get_or_insert((now, 0));
        let due = (now.duration_since(start).as_secs_f64() * f64::from(f.sample_rate)) as u64;
        let frames = due.saturating_sub(produced).min((usable / channels) as u64) as usize;
        let out = &mut f.played[backups + 1];
        out.resize(frames * channels, 0);
        tone.fill(out);
        f.tone_clock = Some((start, produced + frames as u64));
    }
    // Sources are indexed alike in the switcher and in `played`: main, backups, fallback.
    for slot in 0..=backups {
        let played = std::mem::take(&mut f.played[slot]);
        f.switcher.audio(slot, now, &played);
        f.played[slot] = played;
    }
    f.switcher.clock(0, now, f.clock_gate.get());
    if let Some(switch) = f.switcher.decide(now) {
        let (from, to) = (switch.from, switch.to);
        f.last_reason = Some(switch.reason);
        f.fade = (f.crossfade_frames > 0).then_some((from, 0));
        if switch.reason == SwitchReason::Restored {
            info!(input = %f.name, from = %slot_name(from, backups), to = %slot_name(to, backups), reason = %switch.reason.name(), "failover: switched");
        } else {
            warn!(input = %f.name, from = %slot_name(from, backups), to = %slot_name(to, backups), reason = %switch.reason.name(), "failover: switched");
        }
    }
    let active = f.switcher.active().min(f.played.len() - 1);
    let mut out = std::mem::take(&mut f.played[active]);
    if let Some((old, done)) = f.fade {
        let done = crossfade(&mut out, &f.played[old], channels, done, f.crossfade_frames);
        f.fade = (done < f.crossfade_frames).then_some((old, done));
    }
    if !out.is_empty() {
        ingest::push_to_rings(input, &out, now, None);
    }
    f.played[active] = out;
    input.failover = Some(f);
}

/// The API's view.
pub(super) fn status(snapshot: &FailoverSnapshot) -> FailoverStatus {
    FailoverStatus {
        active: slot_name(snapshot.active, snapshot.backups).to_owned(),
        switches: snapshot.switches,
        last_reason: snapshot.last_reason.map(|r| r.name().to_owned()),
        main_clock: snapshot
            .main_clock
            .map(|locked| if locked { "locked" } else { "unlocked" }.to_owned()),
        backup: snapshot.backup_stats[0]
            .map(|stats| InputCounters::from_stats(&stats, snapshot.sample_rate, 0, 0.0)),
        backups: snapshot
            .backup_stats
            .iter()
            .flatten()
            .map(|stats| InputCounters::from_stats(stats, snapshot.sample_rate, 0, 0.0))
            .collect(),
    }
}
