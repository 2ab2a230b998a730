//! Recorders: an input's audio into BWF/RF64 files, one writer thread per recorder.
//!
//! The ingest thread copies each pulled block into the recorder's own wait-free ring, like
//! an output's, with an event saying at which media-clock position it starts and where the
//! jitter buffer concealed missing packets. The writer thread does all file I/O, so a slow
//! or full disk can never delay audio: a ring that overflows costs the recorder frames
//! (written as counted silence), never the outputs.
//!
//! Files never shift in time: concealed audio is written as silence of exactly its length
//! and listed in a JSON sidecar with its position and cause. The header is rewritten every
//! `header_interval` so a file cut by kill -9 or power loss plays up to that point
//! (`estuary repair` fixes the rest).

pub mod cli;
mod closer;
pub mod config;
mod direct;
mod file;
mod flac;
mod gaps;
mod media_clock;
mod pack;
pub mod repair;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tracing::{info, warn};

use estuary_wire::wav::{self, Bext, Header, Spec};

use closer::{Closer, Done};
pub use config::RecorderConfig;
use config::{FileFormat, FsyncPolicy, Track};
use file::TrackFile;
use gaps::{GapList, SidecarHead};
use media_clock::MediaClock;

use crate::gateway::{Condition, Scope, Signal};
use crate::shutdown::Stop;
use crate::status::RecorderStatus;

/// What the ingest thread tells a recorder besides the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEvent {
    /// `frames` frames starting at media position `position` are in the sample ring.
    Chunk { position: u64, frames: u32 },
    /// The jitter buffer concealed `frames` frames from `position` (inside a chunk).
    Gap { position: u64, frames: u32 },
    /// A packet arrived after its place was played: the last gap was late, not lost.
    Late,
}

/// Events the ring holds: one chunk per ingest pull (1 ms) plus gaps, for 2 s and more.
pub const EVENT_RING: usize = 8_192;
/// Audio the sample ring holds: a disk may stall this long without losing audio.
pub const SAMPLE_RING: Duration = Duration::from_secs(2);
/// A forward jump of the media position up to this long is filled with silence; a longer
/// one (or one backwards: a new stream) starts new files.
const MAX_FILL: Duration = Duration::from_secs(10);
/// How long a recorder sleeps between drains (on its own timer: the ingest thread does not
/// wake recorders, which would cost it an interrupt to the other CPU each time). A wake-up
/// costs a context switch per recorder (a quarter of the recorders' CPU at 10 wake-ups a
/// second); files are written at the header rewrites anyway, so waking more often would not
/// put audio on disk sooner.
pub const WAKE: Duration = Duration::from_millis(250);
/// Frames of contiguous chunks packed at once (100 ms at 48 kHz): one pass over the ring per
/// 100 ms, whose slots are handed back once it is packed.
const BATCH: usize = 4_800;
/// Gaps marked as cue points in each WAV file (5 KiB of header); all of them are in the
/// sidecar.
const CUE_SLOTS: usize = 64;
/// How often a recorder whose disk is full tries again.
const RETRY: Duration = Duration::from_secs(2);
/// How often retention runs.
const RETENTION_PERIOD: Duration = Duration::from_secs(10);
/// How long shutdown waits for the takes being closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Set only by `bench record` to time recording against ingest alone in one process, in
/// turns (see the bench); the daemon never sets either. While `PAUSED`, the ingest feeds no
/// recorder and recorders hold their work (draining, packing, writing), so each turn's
/// recording work is done in a running turn. While `IN_TURNS`, the media position's jump over
/// a paused turn is skipped instead of filled with silence (the bench's files are discarded).
pub static PAUSED: AtomicBool = AtomicBool::new(false);
pub static IN_TURNS: AtomicBool = AtomicBool::new(false);

/// One gap in a file, as the sidecar lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GapRecord {
    /// Media-clock position (RTP timestamp, extended) of the first silent frame.
    pub position: u64,
    /// Frames from the start of the file.
    pub offset: u64,
    pub frames: u64,
    /// `lost` (never arrived), `late` (arrived after its playout time), `dropped` (the
    /// recorder's ring was full, or the stream jumped forward).
    pub cause: &'static str,
}

/// The files of one take: one per track, started on the same media-clock sample.
struct FileSet {
    files: Vec<TrackFile>,
    start_position: u64,
    frames: u64,
    /// The media position where the next take starts (`rotate_every`).
    rotate_at: Option<u64>,
    gaps: GapList,
    recorder: String,
}

impl FileSet {
    /// Writes what is left, the final headers and the sidecar (on the closer thread); a take
    /// that holds nothing leaves no files.
    fn close_files(&mut self, fsync: bool) -> Done {
        let mut done = Done::default();
        let cues = cues(self.gaps.first());
        for file in &mut self.files {
            if let Err(e) = file.close(fsync, &cues) {
                warn!(recorder = %self.recorder, file = %file.path.display(), error = %e, "closing");
                done.errors += 1;
                done.error = Some((e, false));
            }
        }
        done.bytes_closed = self.files.iter().map(|f| f.data_bytes).sum::<u64>();
        if self.files.iter().all(|f| f.data_bytes == 0) && self.gaps.count == 0 {
            // Nothing recorded (the disk was full at once): leave no empty files behind.
            for f in &self.files {
                let _ = std::fs::remove_file(&f.path);
            }
            self.gaps.remove();
            return done;
        }
        if let Err(e) = self.gaps.write() {
            warn!(recorder = %self.recorder, error = %e, "cannot write the gap list");
            done.errors += 1;
            done.error = Some((e, false));
        }
        done
    }
}

/// Level-triggered recording state.
struct Vox {
    /// Left-justified 32-bit amplitude.
    threshold: u32,
    hang: u64,
    pre_roll: u64,
    /// The last `pre_roll` frames, interleaved, starting at `buffer_start`.
    buffer: std::collections::VecDeque<i32>,
    buffer_start: u64,
    /// Position just after the last loud frame.
    last_loud: Option<u64>,
    /// The input channels recorded (only those trigger).
    channels: Vec<usize>,
}

/// What a failure to write means for the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Ok,
    Failed { retry_at: Instant },
}

pub struct RecorderWorker {
    config: RecorderConfig,
    input: String,
    tracks: Vec<Track>,
    channels: usize,
    sample_rate: u32,
    /// `None` only while a chunk is read from it.
    samples: Option<rtrb::Consumer<i32>>,
    events: rtrb::Consumer<FeedEvent>,
    shared: Arc<Mutex<RecorderStatus>>,
    signals: Option<Sender<Signal>>,
    set: Option<FileSet>,
    next_position: Option<u64>,
    pending_gaps: Vec<GapRecord>,
    /// Late packets seen and not yet attributed to a gap.
    late_pending: bool,
    health: Health,
    status: RecorderStatus,
    /// The samples of a VOX chunk (kept to reuse its allocation).
    chunk_buf: Vec<i32>,
    next_header: Instant,
    next_retention: Instant,
    vox: Option<Vox>,
    /// Fsyncs and closes takes off this thread.
    closer: Option<Closer>,
    /// The stream's media clock against the wall clock, from its first take.
    clock: Option<MediaClock>,
}

impl RecorderWorker {
    pub fn new(
        config: &RecorderConfig,
        (channels, sample_rate): (u16, u32),
        (samples, events): (rtrb::Consumer<i32>, rtrb::Consumer<FeedEvent>),
        shared: Arc<Mutex<RecorderStatus>>,
        signals: Option<Sender<Signal>>,
    ) -> anyhow::Result<Self> {
        let name = config.name.get_ref().clone();
        let tracks = config
            .tracks(channels)
            .and_then(|t| config.check_flac_tracks(&t).map(|()| t))
            .map_err(|(_, f, m)| anyhow::anyhow!("recorder {name}: {f}: {m}"))?;
        if tracks.len() > 1 && !config.template.get_ref().contains("{track}") {
            anyhow::bail!(
                "recorder {name}: template: needs {{track}}: this recorder writes {} files at a time",
                tracks.len()
            );
        }
        config::check_directory(config.directory.get_ref())
            .map_err(|m| anyhow::anyhow!("recorder {name}: directory: {m}"))?;
        let status = RecorderStatus {
            name: name.clone(),
            input: config.input.get_ref().clone(),
            state: "waiting".into(),
            sample_rate,
            ..RecorderStatus::default()
        };
        *lock(&shared) = status.clone();
        let closer = Closer::start(&name)
            .map_err(|e| anyhow::anyhow!("recorder {name}: cannot start a thread: {e}"))?;
        let now = Instant::now();
        Ok(Self {
            config: config.clone(),
            input: config.input.get_ref().clone(),
            tracks,
            channels: usize::from(channels),
            sample_rate,
            samples: Some(samples),
            events,
            shared,
            signals,
            set: None,
            next_position: None,
            pending_gaps: Vec::new(),
            late_pending: false,
            health: Health::Ok,
            status,
            chunk_buf: Vec::new(),
            next_header: now + config.header_interval,
            next_retention: now,
            vox: config.vox.as_ref().map(|v| {
                let frames = |d: Duration| (d.as_secs_f64() * f64::from(sample_rate)) as u64;
                Vox {
                    threshold: (10f64.powf(v.threshold.get_ref() / 20.0) * 2f64.powi(31))
                        .min(f64::from(u32::MAX)) as u32,
                    hang: frames(v.hang),
                    pre_roll: frames(v.pre_roll),
                    buffer: std::collections::VecDeque::new(),
                    buffer_start: 0,
                    last_loud: None,
                    channels: Vec::new(),
                }
            }),
            closer: Some(closer),
            clock: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.status.name
    }

    /// Writes until `halt`, then closes the files validly.
    pub fn run(mut self, halt: &Stop) {
        loop {
            let stopping = halt.requested();
            let paused = PAUSED.load(Ordering::Relaxed) && !stopping;
            if !paused {
                self.drain();
            }
            self.closed();
            let now = Instant::now();
            if now >= self.next_header && !paused {
                self.next_header = now + self.config.header_interval;
                self.sync_headers();
            }
            if now >= self.next_retention {
                self.next_retention = now + RETENTION_PERIOD;
                self.retention();
            }
            self.publish();
            if stopping {
                break;
            }
            // On time for the next header rewrite, which bounds what kill -9 can cost.
            let until_header = self.next_header.saturating_duration_since(Instant::now());
            thread::park_timeout(if paused { WAKE } else { WAKE.min(until_header) });
        }
        self.close_set();
        if let Some(closer) = self.closer.take() {
            for done in closer.finish(CLOSE_TIMEOUT) {
                self.apply(done);
            }
        }
        self.status.state = "stopped".into();
        self.status.file = None;
        self.publish();
    }

    /// Takes in what the closer thread finished.
    fn closed(&mut self) {
        let done = self
            .closer
            .as_mut()
            .map(Closer::finished)
            .unwrap_or_default();
        for d in done {
            self.apply(d);
        }
    }

    fn apply(&mut self, done: Done) {
        self.status.bytes_closed += done.bytes_closed;
        match done.error {
            // The open take could not be made safe: end it and try again (counted there).
            Some((e, true)) if self.set.is_some() => {
                self.status.errors += done.errors.saturating_sub(1);
                self.failed(&e);
            }
            Some((e, _)) => {
                self.status.errors += done.errors;
                self.status.last_error = Some(e.to_string());
            }
            None => self.status.errors += done.errors,
        }
    }

    /// Writes what the ring holds. Contiguous chunks (1 ms each from the ingest) are
    /// written as one run of up to [`BATCH`] frames: one pass and one append per file for
    /// 100 ms instead of per millisecond. Gap and late events end a run, so each applies
    /// exactly where it did.
    fn drain(&mut self) {
        let mut run: Option<(u64, usize)> = None;
        while let Ok(event) = self.events.pop() {
            match event {
                FeedEvent::Chunk { position, frames } => {
                    let frames = frames as usize;
                    match &mut run {
                        Some((start, n))
                            if *start + *n as u64 == position && *n + frames <= BATCH =>
                        {
                            *n += frames;
                        }
                        _ => {
                            if let Some((start, n)) = run.replace((position, frames)) {
                                self.chunk(start, n);
                            }
                        }
                    }
                }
                FeedEvent::Gap { position, frames } => {
                    if let Some((start, n)) = run.take() {
                        self.chunk(start, n);
                    }
                    self.note_gap(position, frames);
                }
                FeedEvent::Late => {
                    if let Some((start, n)) = run.take() {
                        self.chunk(start, n);
                    }
                    self.late_pending = true;
                }
            }
        }
        if let Some((start, n)) = run {
            self.chunk(start, n);
        }
    }

    fn note_gap(&mut self, position: u64, frames: u32) {
        let frames = u64::from(frames);
        // A run cut by a pull boundary comes in two events: join them.
        if let Some(last) = self.pending_gaps.last_mut()
            && last.position + last.frames == position
        {
            last.frames += frames;
            return;
        }
        if let Some(set) = &mut self.set
            && self.pending_gaps.is_empty()
            && set.gaps.extend_last(position, frames)
        {
            self.status.gap_frames += frames;
            return;
        }
        self.pending_gaps.push(GapRecord {
            position,
            offset: 0,
            frames,
            cause: "lost",
        });
    }

    fn chunk(&mut self, position: u64, frames: usize) {
        let Some(mut ring) = self.samples.take() else {
            return;
        };
        self.chunk_from(&mut ring, position, frames);
        self.samples = Some(ring);
    }

    /// Packs the chunk straight from the ring's slots (the packer prefetches ahead: the ring
    /// was written a quarter of a second ago, and is read from memory either way), then
    /// hands them back. Copying the run out first cost a third more.
    fn chunk_from(&mut self, ring: &mut rtrb::Consumer<i32>, position: u64, frames: usize) {
        let n = frames * self.channels;
        let Ok(chunk) = ring.read_chunk(n.min(ring.slots())) else {
            return;
        };
        if chunk.len() < n {
            // Cannot happen while the ingest pushes samples before their event; be safe.
            self.status.errors += 1;
            chunk.commit_all();
            return;
        }
        if let Some(expected) = self.next_position
            && position != expected
        {
            let jump = position.wrapping_sub(expected);
            let max = MAX_FILL.as_secs() * u64::from(self.sample_rate);
            if position > expected && jump <= max && self.set.is_some() {
                if !IN_TURNS.load(Ordering::Relaxed) {
                    self.fill(expected, jump);
                }
            } else {
                info!(recorder = %self.status.name, "the stream jumped in time; starting new files");
                self.close_set();
                self.clock = None;
            }
        }
        self.next_position = Some(position + frames as u64);
        let (a, b) = chunk.as_slices();
        if self.vox.is_some() || a.len() % self.channels != 0 {
            // VOX keeps the pre-roll; a ring that wrapped inside a frame (its pushes are
            // whole frames, so never) would split one.
            let mut data = std::mem::take(&mut self.chunk_buf);
            data.clear();
            data.extend_from_slice(a);
            data.extend_from_slice(b);
            if self.vox.is_some() {
                self.vox_chunk(position, &data, frames);
            } else {
                self.write_aligned(position, [data.as_slice(), &[]]);
            }
            self.chunk_buf = data;
        } else {
            self.write_aligned(position, [a, b]);
        }
        chunk.commit_all();
    }

    /// Writes a run of frames given in two parts (where the ring wraps); before the first
    /// take of an aligned recorder, from its first aligned sample only.
    fn write_aligned(&mut self, position: u64, parts: [&[i32]; 2]) {
        let ch = self.channels;
        let frames = (parts[0].len() + parts[1].len()) / ch;
        let mut skip = match self.config.align {
            Some(align) if self.set.is_none() => {
                let every = (align.as_secs_f64() * f64::from(self.sample_rate)).round() as u64;
                let skip = (every - position % every.max(1)) % every.max(1);
                if skip >= frames as u64 {
                    // Before the first aligned sample: not part of any take.
                    self.pending_gaps.clear();
                    return;
                }
                skip as usize
            }
            _ => 0,
        };
        let mut at = position;
        for part in parts {
            let part_frames = part.len() / ch;
            let k = skip.min(part_frames);
            skip -= k;
            if part_frames > k {
                self.write(at + k as u64, &part[k * ch..], part_frames - k);
            }
            at += part_frames as u64;
        }
    }

    /// VOX: keeps the pre-roll while quiet, starts a take (with the pre-roll) when loud, ends
    /// it `hang` after the last loud frame.
    fn vox_chunk(&mut self, position: u64, data: &[i32], frames: usize) {
        let Some(mut vox) = self.vox.take() else {
            return;
        };
        let ch = self.channels;
        let end = position + frames as u64;
        if vox.channels.is_empty() {
            vox.channels = self
                .tracks
                .iter()
                .flat_map(|t| t.channels.clone())
                .collect();
        }
        let (channels, threshold) = (&vox.channels, vox.threshold);
        let is_loud = |f: &[i32]| channels.iter().any(|&c| f[c].unsigned_abs() >= threshold);
        let first_loud = data.chunks_exact(ch).position(is_loud);
        if let Some(k) = data.chunks_exact(ch).rposition(is_loud) {
            vox.last_loud = Some(position + k as u64 + 1);
        }
        let active = vox.last_loud.is_some_and(|l| end <= l + vox.hang);
        if self.set.is_none() {
            if vox.buffer_start + (vox.buffer.len() / ch) as u64 != position {
                vox.buffer.clear();
                vox.buffer_start = position;
            }
            // The buffer keeps `pre_roll` frames before this chunk, and this chunk.
            let excess = (vox.buffer.len() / ch).saturating_sub(vox.pre_roll as usize);
            vox.buffer.drain(..excess * ch);
            vox.buffer_start += excess as u64;
            vox.buffer.extend(data);
            if !active {
                let start = vox.buffer_start;
                self.pending_gaps.retain(|g| g.position + g.frames > start);
                if self.status.state == "waiting" || self.status.state == "recording" {
                    self.status.state = "idle".into();
                }
                self.vox = Some(vox);
                return;
            }
            // Exactly `pre_roll` before the first loud frame (or as much as there is).
            let trigger = first_loud.map_or(position, |k| position + k as u64);
            let start = trigger.saturating_sub(vox.pre_roll).max(vox.buffer_start);
            vox.buffer.drain(..(start - vox.buffer_start) as usize * ch);
            let take: Vec<i32> = vox.buffer.drain(..).collect();
            vox.buffer_start = end;
            self.vox = Some(vox);
            self.write(start, &take, take.len() / ch);
            return;
        }
        self.vox = Some(vox);
        self.write(position, data, frames);
        if !active {
            self.close_set();
            self.status.state = "idle".into();
            self.status.file = None;
        }
    }

    /// Silence for frames the recorder never got, so the file does not shift.
    fn fill(&mut self, position: u64, frames: u64) {
        // Counted as well as listed (the soak saw a full ring leave the API at 0), once: a
        // write that fails counts its frames itself.
        let counted = self.status.frames_dropped;
        self.pending_gaps.push(GapRecord {
            position,
            offset: 0,
            frames,
            cause: "dropped",
        });
        let block = 4_800usize;
        let zeros = vec![0i32; block * self.channels];
        let mut done = 0u64;
        while done < frames {
            let n = (frames - done).min(block as u64) as usize;
            self.write(position + done, &zeros[..n * self.channels], n);
            done += n as u64;
        }
        if self.status.frames_dropped == counted {
            self.status.frames_dropped += frames;
        }
    }

    fn write(&mut self, position: u64, data: &[i32], frames: usize) {
        if let Health::Failed { retry_at } = self.health {
            if Instant::now() < retry_at {
                self.status.frames_dropped += frames as u64;
                self.pending_gaps.clear();
                return;
            }
            self.health = Health::Ok;
        }
        let bits = *self.config.bits.get_ref();
        let bytes = (frames * usize::from(bits / 8)) as u64;
        if self.must_rotate(position, bytes) {
            self.close_set();
        }
        if self.set.is_none()
            && let Err(e) = self.open_set(position)
        {
            self.failed(&e);
            self.status.frames_dropped += frames as u64;
            return;
        }
        // A rotation inside the block (also one just opened): the next take starts exactly
        // on its sample.
        if let Some(at) = self.set.as_ref().and_then(|s| s.rotate_at)
            && at > position
            && at < position + frames as u64
        {
            let k = (at - position) as usize;
            let ch = self.channels;
            self.write(position, &data[..k * ch], k);
            self.write(at, &data[k * ch..], frames - k);
            return;
        }
        let Some(set) = &mut self.set else {
            return;
        };
        let end = position + frames as u64;
        let mut later = Vec::new();
        for mut gap in self.pending_gaps.drain(..) {
            // A gap past this block (a rotation split it) goes to the next take.
            if gap.position + gap.frames > end {
                let after = (gap.position + gap.frames - end).min(gap.frames);
                later.push(GapRecord {
                    position: gap.position.max(end),
                    frames: after,
                    ..gap.clone()
                });
                gap.frames -= after;
                if gap.frames == 0 {
                    continue;
                }
            }
            // A gap that began before the take started counts from its first frame.
            if gap.position < set.start_position {
                let before = set.start_position - gap.position;
                if before >= gap.frames {
                    continue;
                }
                gap.frames -= before;
                gap.position = set.start_position;
            }
            gap.offset = gap.position - set.start_position;
            if self.late_pending && gap.cause == "lost" {
                gap.cause = "late";
            }
            self.status.gap_frames += gap.frames;
            // One gap a rotation or a long fill split in blocks stays one.
            if !set.gaps.extend_last(gap.position, gap.frames) {
                self.status.gaps += 1;
                set.gaps.push(gap);
            }
        }
        self.pending_gaps = later;
        if self.pending_gaps.is_empty() {
            self.late_pending = false;
        }
        let result = if self.config.format == FileFormat::Flac {
            self.tracks
                .iter()
                .zip(&mut set.files)
                .try_for_each(|(track, file)| {
                    file.append(data, (self.channels, &track.channels), bits)
                })
        } else {
            file::append_pcm(&mut set.files, &self.tracks, data, self.channels, bits)
        };
        match result {
            Ok(()) => {
                set.frames += frames as u64;
                self.status.frames += frames as u64;
                if self.status.state != "recording" {
                    self.status.state = "recording".into();
                }
            }
            Err(e) => {
                self.status.frames_dropped += frames as u64;
                self.failed(&e);
            }
        }
    }

    fn must_rotate(&self, position: u64, more_bytes_per_channel: u64) -> bool {
        let Some(set) = &self.set else {
            return false;
        };
        if set.rotate_at.is_some_and(|at| position >= at) {
            return true;
        }
        let limit = self.config.rotate_bytes.as_ref().map(|b| *b.get_ref());
        self.tracks.iter().zip(&set.files).any(|(track, file)| {
            let more = more_bytes_per_channel * track.channels.len() as u64;
            !file.fits(more) || limit.is_some_and(|l| file.pending() + more > l)
        })
    }

    fn open_set(&mut self, position: u64) -> std::io::Result<()> {
        let rate = self.sample_rate;
        let clock = *self
            .clock
            .get_or_insert_with(|| MediaClock::new(position, SystemTime::now(), rate));
        // Named after the media clock's time (on the hour for a take that starts there).
        let when = civil(clock.wall_time(position));
        let dir = self.config.directory.get_ref().clone();
        let render = |track: &str, seq: u32| -> PathBuf {
            let mut name = render_template(
                self.config.template.get_ref(),
                &when,
                (&self.status.name, &self.input, track),
            );
            if seq > 1 {
                name.push_str(&format!("-{seq}"));
            }
            dir.join(name)
        };
        let has_track = self.config.template.get_ref().contains("{track}");
        // Two takes in the same second (a stream that jumped) must not overwrite each other.
        let mut seq = 1;
        let (paths, sidecar) = loop {
            let paths: Vec<PathBuf> = self
                .tracks
                .iter()
                .map(|t| with_ext(&render(&t.name, seq), self.config.format.extension()))
                .collect();
            let sidecar = if has_track {
                with_ext(&render("gaps", seq), "json")
            } else {
                with_ext(&render("", seq), "gaps.json")
            };
            if paths.iter().all(|p| !p.exists()) && !sidecar.exists() {
                break (paths, sidecar);
            }
            seq += 1;
        };
        let bits = *self.config.bits.get_ref();
        let rf64 = self.config.format == FileFormat::Rf64;
        let mut files = Vec::with_capacity(paths.len());
        for (track, path) in self.tracks.iter().zip(&paths) {
            let spec = Spec {
                channels: track.channels.len() as u16,
                sample_rate: self.sample_rate,
                bits,
            };
            let description = format!("{} {} {}", self.status.name, self.input, track.name);
            let reference = format!("{}-{}", self.status.name, position);
            let created = if self.config.format == FileFormat::Flac {
                TrackFile::create_flac(
                    path,
                    spec,
                    &flac_comments(&description, &reference, &when, position, track),
                )
            } else {
                let header = Header {
                    spec,
                    bext: Some(Bext {
                        description,
                        originator: "Estuary".into(),
                        originator_reference: reference,
                        origination_date: format!("{:04}-{:02}-{:02}", when.0, when.1, when.2),
                        origination_time: format!("{:02}:{:02}:{:02}", when.3, when.4, when.5),
                        time_reference: position,
                    }),
                    ixml: Some(wav::ixml_tracks(&self.input, &track.channel_names)),
                    cue_slots: CUE_SLOTS,
                };
                TrackFile::create(path, header, rf64)
            };
            match created {
                Ok(f) => files.push(f),
                Err(e) => {
                    for f in &files {
                        let _ = std::fs::remove_file(&f.path);
                    }
                    return Err(e);
                }
            }
        }
        self.status.io = io_mode(&files).into();
        info!(recorder = %self.status.name, file = %paths[0].display(), files = paths.len(), time_reference = position, io = %self.status.io, "recording");
        self.status.files += paths.len() as u64;
        self.status.file = Some(paths[0].display().to_string());
        let rotate_at = self
            .config
            .rotate_every
            .map(|every| clock.next_boundary(position, every));
        let head = SidecarHead {
            recorder: &self.status.name,
            input: &self.status.input,
            sample_rate: self.sample_rate,
            time_reference: position,
            files: paths
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect(),
        };
        self.set = Some(FileSet {
            files,
            start_position: position,
            frames: 0,
            rotate_at,
            gaps: GapList::new(sidecar, &head, CUE_SLOTS),
            recorder: self.status.name.clone(),
        });
        Ok(())
    }

    /// Writes the audio staged (all files' at once), rewrites the headers with the sizes and
    /// cue points (cheap: the page cache) and the sidecar; the fsync that makes them safe
    /// runs on the closer thread.
    fn sync_headers(&mut self) {
        let Some(set) = &mut self.set else {
            return;
        };
        let mut error = None;
        let cues = cues(set.gaps.first());
        file::flush_together(&mut set.files);
        for file in &mut set.files {
            if let Err(e) = file.sync_header(false, &cues) {
                error = Some(e);
            }
        }
        if let Err(e) = set.gaps.write() {
            error = Some(e);
        }
        self.status.bytes = set.files.iter().map(|f| f.data_bytes).sum::<u64>();
        if let Some(e) = error {
            self.failed(&e);
            return;
        }
        if self.config.fsync == FsyncPolicy::Header
            && let Some(closer) = &mut self.closer
        {
            let files = &set.files;
            if let Some(done) = closer.sync(|| files.iter().map(TrackFile::clone_fd).collect()) {
                self.apply(done);
            }
        }
    }

    /// Hands the current take to the closer thread, which closes it validly.
    fn close_set(&mut self) {
        let Some(set) = self.set.take() else {
            return;
        };
        self.status.bytes = 0;
        let fsync = self.config.fsync != FsyncPolicy::Never;
        let done = match &mut self.closer {
            Some(closer) => closer.close(set, fsync),
            None => Some({
                let mut set = set;
                set.close_files(fsync)
            }),
        };
        if let Some(done) = done {
            self.apply(done);
        }
    }

    /// A write failed: close what is open validly, raise the alarm, retry later.
    fn failed(&mut self, e: &std::io::Error) {
        let full = matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        warn!(recorder = %self.status.name, error = %e, "recording failed; retrying in {}s", RETRY.as_secs());
        self.status.errors += 1;
        self.status.last_error = Some(e.to_string());
        self.status.state = if full { "disk_full" } else { "failed" }.into();
        self.health = Health::Failed {
            retry_at: Instant::now() + RETRY,
        };
        self.close_set();
        self.next_position = None;
        self.clock = None;
        self.pending_gaps.clear();
        self.signal(true);
    }

    fn signal(&mut self, raised: bool) {
        if self.status.alarm == raised {
            return;
        }
        self.status.alarm = raised;
        if let Some(signals) = &self.signals {
            let _ = signals.send(Signal {
                scope: Scope::Output,
                subject: self.status.name.clone(),
                channel: None,
                condition: Condition::RecordFailed,
                raised,
                value: 0.0,
                at: SystemTime::now(),
            });
        }
    }

    fn publish(&mut self) {
        if self.status.alarm && self.status.state == "recording" {
            self.status.last_error = None;
            self.signal(false);
        }
        if let Some(set) = &self.set {
            self.status.bytes = set.files.iter().map(TrackFile::pending).sum();
            // A file whose direct writes failed went on through the page cache.
            self.status.io = io_mode(&set.files).into();
        }
        *lock(&self.shared) = self.status.clone();
    }

    fn retention(&mut self) {
        if self.config.keep_for.is_none() && self.config.keep_bytes.is_none() {
            return;
        }
        let open: Vec<PathBuf> = self
            .set
            .iter()
            .flat_map(|s| {
                s.files
                    .iter()
                    .map(|f| f.path.clone())
                    .chain([s.gaps.path.clone()])
            })
            .collect();
        let deleted = retention::apply(
            self.config.directory.get_ref(),
            &open,
            self.config.keep_for,
            self.config.keep_bytes,
            SystemTime::now(),
        );
        self.status.files_deleted += deleted;
    }
}

mod retention {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    /// Deletes recordings (`.wav`, `.flac`, `.json`) under `dir` older than `keep_for`, then the oldest
    /// while they total more than `keep_bytes`; never one in `open`. Returns how many.
    pub fn apply(
        dir: &Path,
        open: &[PathBuf],
        keep_for: Option<Duration>,
        keep_bytes: Option<u64>,
        now: SystemTime,
    ) -> u64 {
        let mut files = Vec::new();
        collect(dir, &mut files, 0);
        let mut total: u64 = files.iter().map(|f| f.2).sum();
        files.retain(|(p, _, _)| !open.contains(p));
        files.sort_by_key(|(_, modified, _)| *modified);
        let mut deleted = 0;
        for (path, modified, len) in files {
            let old =
                keep_for.is_some_and(|k| now.duration_since(modified).unwrap_or_default() > k);
            let over = keep_bytes.is_some_and(|k| total > k);
            if (old || over) && std::fs::remove_file(&path).is_ok() {
                deleted += 1;
                total -= len;
            }
        }
        deleted
    }

    fn collect(dir: &Path, out: &mut Vec<(PathBuf, SystemTime, u64)>, depth: u32) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && depth < 8 {
                collect(&path, out, depth + 1);
            } else if meta.is_file()
                && path
                    .extension()
                    .is_some_and(|e| e == "wav" || e == "flac" || e == "json")
                && let Ok(modified) = meta.modified()
            {
                out.push((path, modified, meta.len()));
            }
        }
    }
}

/// Gaps as WAV cue points with a region and a label (`gap: lost`), as far as the reserved
/// room and 32-bit positions go.
fn cues(gaps: &[GapRecord]) -> Vec<wav::Cue> {
    gaps.iter()
        .take(CUE_SLOTS)
        .map_while(|g| {
            Some(wav::Cue {
                offset: u32::try_from(g.offset).ok()?,
                frames: u32::try_from(g.frames).unwrap_or(u32::MAX),
                label: format!("gap: {}", g.cause),
            })
        })
        .collect()
}

/// The metadata a BWF file has in `bext`, as Vorbis comments (the names follow the BWF
/// fields, as other tools that carry them to FLAC do).
fn flac_comments(
    description: &str,
    reference: &str,
    when: &Civil,
    position: u64,
    track: &Track,
) -> Vec<String> {
    vec![
        format!("DESCRIPTION={description}"),
        "ORIGINATOR=Estuary".to_owned(),
        format!("ORIGINATOR_REFERENCE={reference}"),
        format!(
            "DATE={:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            when.0, when.1, when.2, when.3, when.4, when.5
        ),
        format!("TIME_REFERENCE={position}"),
        format!("TRACKNAMES={}", track.channel_names.join(",")),
    ]
}

/// How `files` are written, for the status.
fn io_mode(files: &[TrackFile]) -> &'static str {
    let direct = files.iter().filter(|f| f.is_direct()).count();
    match direct {
        0 => "buffered",
        n if n == files.len() => "direct",
        _ => "mixed",
    }
}

fn with_ext(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// UTC (year, month, day, hour, minute, second).
type Civil = (i64, u32, u32, u32, u32, u32);

/// UTC calendar time (no time zone database on the box is needed; names sort in order).
fn civil(t: SystemTime) -> Civil {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

fn render_template(
    template: &str,
    c: &Civil,
    (recorder, input, track): (&str, &str, &str),
) -> String {
    template
        .replace("{recorder}", recorder)
        .replace("{input}", input)
        .replace("{track}", track)
        .replace("{date}", &format!("{:04}-{:02}-{:02}", c.0, c.1, c.2))
        .replace("{time}", &format!("{:02}{:02}{:02}", c.3, c.4, c.5))
        .replace("{year}", &format!("{:04}", c.0))
        .replace("{month}", &format!("{:02}", c.1))
        .replace("{day}", &format!("{:02}", c.2))
        .replace("{hour}", &format!("{:02}", c.3))
        .replace("{minute}", &format!("{:02}", c.4))
        .replace("{second}", &format!("{:02}", c.5))
        .replace("{seq}", "")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_228_245);
        assert_eq!(civil(t), (2026, 11, 21, 2, 30, 45));
        assert_eq!(civil(SystemTime::UNIX_EPOCH), (1970, 1, 1, 0, 0, 0));
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(civil(leap), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn templates_render() {
        let c = (2026, 1, 2, 3, 4, 5);
        assert_eq!(
            render_template(
                "{input}/{date}/{hour}/{recorder}-{time}-{track}",
                &c,
                ("r", "stage", "mics")
            ),
            "stage/2026-01-02/03/r-030405-mics"
        );
    }

    #[test]
    fn retention_deletes_by_age_then_size_but_not_open_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let now = SystemTime::now();
        for (age, (name, len)) in [
            ("a.wav", 100),
            ("b.wav", 100),
            ("c.json", 10),
            ("keep.txt", 5),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; len]).expect("write");
            let file = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            file.set_modified(now - Duration::from_secs(100 - age as u64))
                .expect("mtime");
        }
        let open = [dir.path().join("b.wav")];
        let n = retention::apply(dir.path(), &open, None, Some(120), now);
        assert_eq!(n, 1);
        assert!(dir.path().join("b.wav").exists());
        assert!(dir.path().join("keep.txt").exists());
        let n = retention::apply(
            dir.path(),
            &[],
            Some(Duration::ZERO),
            None,
            now + Duration::from_secs(5),
        );
        assert_eq!(n, 2);
        assert!(dir.path().join("keep.txt").exists());
    }

    /// The ingest's pulls cut lost packets at arbitrary frames (just after a sender's burst
    /// boundary on a real network), drains and header syncs come at any time: the sidecars
    /// list exactly the concealed frames, whole packets each (the 1-h soak found some cut).
    #[test]
    fn sidecars_list_exactly_the_concealed_frames_however_pulls_cut_them() {
        for round in 1..=40 {
            sidecars_list_exactly_the_concealed_frames(round);
        }
    }

    fn sidecars_list_exactly_the_concealed_frames(round: u64) {
        let dir = tempfile::tempdir().expect("tmp");
        // Every other round one mono file per channel (the vector packer), else one
        // interleaved file.
        let mono = round.is_multiple_of(2);
        let config: RecorderConfig = toml::from_str(&format!(
            "name = \"r\"\ninput = \"i\"\ndirectory = \"{}\"\nrotate_every = \"1s\"\n{}",
            dir.path().display(),
            if mono { "layout = \"mono\"\n" } else { "" }
        ))
        .expect("config");
        let (mut samples, samples_rx) = rtrb::RingBuffer::new(48_000 * 2 * 2);
        let (mut events, events_rx) = rtrb::RingBuffer::new(EVENT_RING);
        let shared = Arc::new(Mutex::new(RecorderStatus::default()));
        let mut worker =
            RecorderWorker::new(&config, (2, 48_000), (samples_rx, events_rx), shared, None)
                .expect("worker");
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(round);
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        const FPP: u64 = 6;
        let start = 1_000_016u64;
        let total = 48_000 * 3;
        let lost: Vec<bool> = (0..total / FPP).map(|_| next(50) == 0).collect();
        let mut at = 0u64;
        while at < total {
            // Pulls end a few frames past a 2-ms burst boundary, or anywhere.
            let end = if next(2) == 0 {
                (at / 96 + 1) * 96 + next(6)
            } else {
                at + 1 + next(120)
            }
            .min(total);
            let mut run: Option<(u64, u64)> = None;
            for n in at..end {
                if lost[(n / FPP) as usize] {
                    match &mut run {
                        Some((_, len)) => *len += 1,
                        None => run = Some((n, 1)),
                    }
                    samples.push(0).expect("room");
                    samples.push(0).expect("room");
                } else {
                    if let Some((p, len)) = run.take() {
                        events
                            .push(FeedEvent::Gap {
                                position: start + p,
                                frames: len as u32,
                            })
                            .expect("room");
                    }
                    let [left, right] = sent_frame(n);
                    samples.push(left).expect("room");
                    samples.push(right).expect("room");
                }
            }
            if let Some((p, len)) = run {
                events
                    .push(FeedEvent::Gap {
                        position: start + p,
                        frames: len as u32,
                    })
                    .expect("room");
            }
            events
                .push(FeedEvent::Chunk {
                    position: start + at,
                    frames: (end - at) as u32,
                })
                .expect("room");
            at = end;
            if next(4) == 0 {
                worker.drain();
            }
            if next(40) == 0 {
                worker.sync_headers();
            }
        }
        worker.drain();
        worker.close_set();
        let closer = worker.closer.take().expect("closer");
        for done in closer.finish(CLOSE_TIMEOUT) {
            assert!(done.error.is_none(), "{:?}", done.error);
        }
        let mut listed = vec![false; total as usize];
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            let path = entry.expect("entry").path();
            if !path.to_string_lossy().ends_with("gaps.json") {
                continue;
            }
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            for gap in json["gaps"].as_array().expect("gaps") {
                let p = gap["position"].as_u64().expect("position") - start;
                for n in p..p + gap["frames"].as_u64().expect("frames") {
                    assert!(!listed[n as usize], "frame {n} listed twice");
                    listed[n as usize] = true;
                }
            }
        }
        for n in 0..total {
            assert_eq!(
                listed[n as usize],
                lost[(n / FPP) as usize],
                "round {round}: frame {n} (packet offset {})",
                n % FPP
            );
        }
        // The takes, in order, hold every frame as sent (the ring wrapped inside some
        // chunks), and silence exactly where the sidecars say.
        let mut takes: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "wav"))
            .collect();
        takes.sort();
        // Per track (the name's last part), its takes in order.
        let mut tracks: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
        for path in &takes {
            let bytes = std::fs::read(path).expect("read");
            let info = wav::parse(&bytes).expect("a valid file");
            let at = info.data_offset as usize;
            let stem = path.file_stem().expect("name").to_string_lossy();
            let track = stem.rsplit('-').next().expect("track").to_owned();
            tracks
                .entry(track)
                .or_default()
                .extend(wav::unpack(&bytes[at..at + info.data_size as usize], 24));
        }
        let tracks: Vec<Vec<i32>> = tracks.into_values().collect();
        let recorded: Vec<i32> = match &tracks[..] {
            [both] => both.clone(),
            [left, right] => left.iter().zip(right).flat_map(|(l, r)| [*l, *r]).collect(),
            other => panic!("round {round}: {} tracks", other.len()),
        };
        assert_eq!(tracks.len(), if mono { 2 } else { 1 }, "round {round}");
        assert_eq!(recorded.len() as u64, total * 2, "round {round}");
        for (n, frame) in recorded.chunks_exact(2).enumerate() {
            let want = if listed[n] {
                [0, 0]
            } else {
                sent_frame(n as u64)
            };
            assert_eq!(frame, want, "round {round}: frame {n}");
        }
    }

    /// Frame `n` of the test signal: a distinct 24-bit value per frame and channel.
    fn sent_frame(n: u64) -> [i32; 2] {
        let v = (n as i32 + 1) << 8;
        [v, -v]
    }
}
