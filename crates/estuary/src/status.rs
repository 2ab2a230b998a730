//! What the daemon shows about itself: the data behind the REST API, the dashboard, the
//! Prometheus endpoint and `estuary status`.
//!
//! These are plain serialisable views, built by the supervisor from the pipeline's snapshots
//! (about 20 times a second) and read by the API without touching the audio threads. Levels in
//! dB are floored at [`DB_FLOOR`] because JSON has no −∞: −150 dB means digital silence.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use estuary_engine::monitor::{MeterSnapshot, PairLevels};
use estuary_engine::stats::StreamStats;

/// Lowest level reported, standing for digital silence (−∞ dB).
pub const DB_FLOOR: f64 = -150.0;

/// A level for JSON: finite, and floored at [`DB_FLOOR`].
pub fn db(level: f64) -> f64 {
    if level.is_nan() {
        DB_FLOOR
    } else {
        level.max(DB_FLOOR)
    }
}

/// Everything the daemon shows, except the meters (see [`InputMeters`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub system: SystemStatus,
    pub clock: ClockStatus,
    pub inputs: Vec<InputStatus>,
    pub outputs: Vec<OutputStatus>,
    pub discovery: DiscoveryStatus,
    /// Alarms raised now, most recent first.
    pub alarms: Vec<AlarmStatus>,
    /// Alarm notifiers and their delivery counters.
    #[serde(default)]
    pub notifications: Vec<NotifierStatus>,
    /// Recorders (`[[recorders]]`).
    #[serde(default)]
    pub recorders: Vec<RecorderStatus>,
    /// The Dante device (`[dante]`), when one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dante: Option<crate::dante::status::DanteStatus>,
}

/// One recorder: what it writes and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecorderStatus {
    pub name: String,
    pub input: String,
    /// `waiting` (no audio yet), `recording`, `idle` (VOX, between takes), `disk_full`,
    /// `failed` (retrying) or `stopped`.
    pub state: String,
    /// The first file of the current take.
    pub file: Option<String>,
    /// Files started.
    pub files: u64,
    /// Audio bytes in the current take's files.
    pub bytes: u64,
    /// Audio bytes in closed files.
    pub bytes_closed: u64,
    /// Frames written (silence for gaps included).
    pub frames: u64,
    /// Runs of silence written for audio that never came (listed in the sidecars).
    pub gaps: u64,
    pub gap_frames: u64,
    pub sample_rate: u32,
    /// Frames not written: the disk was full or failing.
    pub frames_dropped: u64,
    pub files_deleted: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// The `record_failed` condition is raised.
    pub alarm: bool,
    /// How the current take's audio reaches the disk: `direct` (`O_DIRECT`), `buffered`
    /// (the page cache: FLAC, or a filesystem such as tmpfs that refuses `O_DIRECT`), or
    /// `mixed`; empty before the first take.
    pub io: String,
}

/// An alarm notifier (webhook, e-mail, syslog) and how its deliveries went.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct NotifierStatus {
    pub name: String,
    /// `webhook`, `email` or `syslog`.
    pub kind: String,
    /// Notifications delivered.
    pub sent: u64,
    /// Notifications given up after every retry failed.
    pub failed: u64,
    /// Delivery attempts repeated after a failure.
    pub retries: u64,
    /// Notifications dropped because the queue was full (the oldest go first).
    pub dropped: u64,
    /// Waiting now.
    pub queued: u64,
    pub last_error: Option<String>,
}

/// The host and the process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SystemStatus {
    pub version: String,
    pub hostname: String,
    pub pid: u32,
    /// When the daemon started, RFC 3339 UTC.
    pub started_at: String,
    pub uptime_s: f64,
    /// CPU used by the daemon over the last second, in percent of one core.
    pub cpu_percent: f64,
    /// CPU-seconds used since start (user + system).
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub memory_rss_bytes: u64,
    pub cpu_cores: u32,
    /// 1-minute load average of the host.
    pub load_average: f64,
    pub interfaces: Vec<InterfaceStatus>,
    /// The configuration file edits are written to (none for an embedded config).
    pub config_path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InterfaceStatus {
    pub name: String,
    pub up: bool,
    pub multicast: bool,
    pub addresses: Vec<String>,
}

/// The clock the media is timed by.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ClockStatus {
    /// `system`: playout is timed by the host's monotonic clock, each input locked to its own
    /// sender's RTP clock. (A PTP follower is not part of this build.)
    pub source: String,
    /// Whether a PTP grandmaster is followed.
    pub ptp_locked: bool,
    /// Grandmasters the received streams declare in their SDP (`ts-refclk`), by input.
    pub stream_references: Vec<StreamClockReference>,
    /// The PTP clock (`[clock] mode = "follower"` or `"grandmaster"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptp: Option<crate::clock::PtpStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StreamClockReference {
    pub input: String,
    /// e.g. `ptp=IEEE1588-2008:00-1D-C1-FF-FE-12-34-56:0`.
    pub reference: String,
    /// The stream names a PTP grandmaster other than the one our clock follows.
    #[serde(default)]
    pub mismatch: bool,
}

/// One input (a route: the input and the outputs it feeds).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InputStatus {
    pub name: String,
    pub kind: String,
    /// The configured source: an address, or the discovered stream followed (`sap:NAME`).
    pub source: String,
    /// `waiting` (for a followed stream), `receiving` or `failed`.
    pub state: String,
    /// Why the input failed, when it did.
    pub reason: Option<String>,
    /// Seconds since the current stream started.
    pub since_s: Option<f64>,
    pub latency_ms: f64,
    pub stream: Option<StreamInfo>,
    pub counters: InputCounters,
    pub health: Health,
    /// Output names fed by this input.
    pub outputs: Vec<String>,
    /// ST 2022-7 inputs: both paths (the merged result is `counters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<RedundancyStatus>,
    /// Failover inputs: the source on air.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverStatus>,
    /// SRT inputs: the connection, the transport stream, the decoder and the drift buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srt: Option<SrtInputStatus>,
    /// The stream's SDP `ts-refclk` names another PTP grandmaster than the one followed:
    /// its sender is not synchronized with us (set only while our PTP clock is locked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_mismatch: Option<String>,
}

/// An SRT input (`kind = "srt"`): from the SRT connection down to the re-clocked audio.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SrtInputStatus {
    /// `connecting`, `listening`, `connected`, `backoff` or `stopped`.
    pub state: String,
    /// The connected peer.
    pub peer: Option<String>,
    /// The latest connection failure, e.g. `peer rejected: bad passphrase`.
    pub last_error: Option<String>,
    pub reconnects: u64,
    pub connect_failures: u64,
    /// SRT packets received (libsrt `pktRecvTotal`) and their payload bytes.
    pub packets: u64,
    pub bytes: u64,
    /// Packets libsrt found missing (most are recovered by retransmission).
    pub lost_packets: u64,
    /// Retransmitted packets received.
    pub retransmitted_packets: u64,
    /// Packets dropped as too late, or never recovered: their audio is concealed.
    pub dropped_packets: u64,
    /// Packets that could not be decrypted (wrong passphrase on a listener).
    pub undecrypted_packets: u64,
    pub rtt_ms: f64,
    /// Messages read from libsrt.
    pub messages: u64,
    /// Transport stream: packets, continuity errors, bytes skipped to resynchronise, malformed.
    pub ts_packets: u64,
    pub continuity_errors: u64,
    pub ts_skipped_bytes: u64,
    pub ts_malformed: u64,
    /// The codec decoded: `aac`, `mp2`, `opus` or `s302m` (none before the PMT).
    pub codec: Option<String>,
    /// The decoded audio's rate and channels, before resampling and channel mapping.
    pub codec_sample_rate: u32,
    pub codec_channels: u32,
    pub frames_decoded: u64,
    pub decode_errors: u64,
    /// Elementary streams of kinds that cannot be decoded (their audio is ignored).
    pub unsupported_streams: u64,
    /// Silence inserted for audio missing between access units (by PTS), in frames.
    pub concealed_frames: u64,
    /// PTS jumps too large to conceal (the sender restarted its clock).
    pub pts_discontinuities: u64,
    /// Drift buffer: `resample` (sinc, always steered) or `lossless` (bit-exact unless
    /// steered, then frame slips).
    pub conversion: Option<String>,
    /// Output frames per input frame (rate conversion × drift correction).
    pub ratio: f64,
    /// The drift correction now, ppm (positive: the sender's clock is slow against ours).
    pub correction_ppm: f64,
    /// Smoothed buffer fill and its target, milliseconds.
    pub buffer_ms: f64,
    pub buffer_target_ms: f64,
    /// The longest gap between two deliveries from the sender (the target grows by half
    /// of it), ms.
    pub burst_ms: f64,
    /// Times the buffer ran dry (silence played) and the frames of silence.
    pub underruns: u64,
    pub underrun_frames: u64,
    /// Times the buffer overflowed (oldest audio dropped) and the frames dropped.
    pub overruns: u64,
    pub overrun_frames: u64,
    /// Frames skipped when playback (re)started, to start at the live edge (a sender
    /// flushing a backlog on connect).
    pub start_skipped_frames: u64,
    /// Lossless path: ticks during which the ratio was not exactly 1 (drift being absorbed).
    pub steered_ticks: u64,
    /// Audio frames handed to the outputs (silence while nothing plays is not counted).
    pub frames_played: u64,
}

/// ST 2022-7: the two paths of a redundant input, and their skew.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RedundancyStatus {
    /// Path 0 (the input's `address`/first SDP stream), then path 1 (`redundant`).
    pub paths: Vec<PathStatus>,
    /// Latest skew: path 1's arrival minus path 0's for the same packet, microseconds.
    pub skew_us: f64,
    /// Largest skew measured, microseconds.
    pub max_abs_skew_us: f64,
    /// The skew the buffer absorbs (`max_skew`), milliseconds.
    pub max_skew_ms: f64,
}

/// A failover input: which source is on air.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FailoverStatus {
    /// `main`, `backup`, `backup2` or `fallback`.
    pub active: String,
    /// Switches since the input started.
    pub switches: u64,
    /// Why the last switch happened: `no_packets`, `silence`, `clock_unlocked` or `restored`.
    pub last_reason: Option<String>,
    /// The main stream's clock as the clock rule (`clock_unlocked_after`) judges it:
    /// `locked` or `unlocked`; absent when the rule is off or our clock never locked yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_clock: Option<String>,
    /// The backup stream's counters (the main stream's are the input's `counters`).
    pub backup: Option<InputCounters>,
    /// Every backup's counters, in priority order (`backup`, `backup2`).
    #[serde(default)]
    pub backups: Vec<InputCounters>,
}

/// Counters of one ST 2022-7 path.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct PathStatus {
    pub received: u64,
    /// Packets missing on this path (its own sequence numbers).
    pub lost: u64,
    /// Copies from this path that went on air.
    pub used: u64,
    /// Copies that arrived after the other path's copy (the protection at work).
    pub redundant: u64,
    /// Copies that arrived more than `max_skew` after the other path's.
    pub beyond_skew: u64,
}

/// The stream an input receives.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StreamInfo {
    pub destination: String,
    /// Source-specific multicast sender, if any.
    pub source: Option<String>,
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub frames_per_packet: Option<u32>,
    pub label: Option<String>,
    /// The announced SDP the input was started from (followed streams only).
    pub sdp: Option<String>,
}

/// Counters since the current stream started (see `estuary_engine::stats::StreamStats`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct InputCounters {
    pub packets_received: u64,
    pub bytes_received: u64,
    pub packets_lost: u64,
    pub packets_late: u64,
    pub packets_duplicate: u64,
    pub packets_reordered: u64,
    pub frames_concealed: u64,
    pub frames_discarded: u64,
    pub malformed: u64,
    pub wrong_payload_type: u64,
    pub ssrc_changes: u64,
    pub resyncs: u64,
    /// Frames an output or meter ring had no room for.
    pub ring_overruns: u64,
    /// RFC 3550 interarrival jitter, microseconds.
    pub jitter_us: f64,
    pub buffer_fill_frames: u64,
    pub ssrc: Option<u32>,
    /// Playout lag p99 of the ingest tick, milliseconds.
    pub playout_lag_p99_ms: f64,
}

impl InputCounters {
    pub fn from_stats(s: &StreamStats, sample_rate: u32, ring_overruns: u64, lag_ms: f64) -> Self {
        InputCounters {
            packets_received: s.packets_received,
            bytes_received: s.bytes_received,
            packets_lost: s.packets_lost,
            packets_late: s.packets_late,
            packets_duplicate: s.packets_duplicate,
            packets_reordered: s.packets_reordered,
            frames_concealed: s.frames_concealed,
            frames_discarded: s.frames_discarded,
            malformed: s.malformed,
            wrong_payload_type: s.wrong_payload_type,
            ssrc_changes: s.ssrc_changes,
            resyncs: s.resyncs,
            ring_overruns,
            jitter_us: if sample_rate == 0 {
                0.0
            } else {
                f64::from(s.jitter) * 1e6 / f64::from(sample_rate)
            },
            buffer_fill_frames: s.buffer_fill_frames,
            ssrc: s.ssrc,
            playout_lag_p99_ms: lag_ms,
        }
    }
}

/// A summary badge: the worst raised alarm.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, `warning`, `critical`, or `idle` (nothing to judge yet).
    pub level: String,
    /// Short names of the raised conditions, e.g. `silence ch1`, `loss`.
    pub conditions: Vec<String>,
    /// Media clock drift of the sender against the local clock, ppm.
    pub drift_ppm: Option<f64>,
}

/// One output.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct OutputStatus {
    pub name: String,
    pub input: String,
    pub kind: String,
    /// `caller` or `listener`.
    pub mode: String,
    pub address: String,
    pub codec: String,
    /// `connecting`, `listening`, `connected`, `backoff` or `stopped`.
    pub state: String,
    pub peer: Option<String>,
    pub last_error: Option<String>,
    pub counters: OutputCounters,
    pub health: Health,
    /// AES67 outputs: the SDP announced for the stream.
    #[serde(default)]
    pub sdp: Option<String>,
    /// Icecast / HTTP outputs: the title on air, when one was set.
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct OutputCounters {
    pub frames_encoded: u64,
    pub access_units: u64,
    pub encode_errors: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub messages_sent: u64,
    pub messages_dropped_not_connected: u64,
    pub messages_dropped_send_error: u64,
    pub bytes_sent: u64,
    pub rtt_ms: f64,
    pub retransmitted_packets: u64,
    pub sender_dropped_packets: u64,
    pub send_loss_packets: u64,
    pub send_rate_mbps: f64,
    /// Codec frame hand-off p99 (ring → SRT), milliseconds; AES67: send time behind the
    /// packet's deadline, p99.
    pub handoff_p99_ms: f64,
    /// AES67: packet slots sent empty-handed because the ring held no audio.
    #[serde(default)]
    pub underrun_packets: u64,
    /// AES67: frames dropped because the input ran ahead of the media clock.
    #[serde(default)]
    pub frames_dropped: u64,
    /// AES67: worst send time behind a packet's deadline, milliseconds.
    #[serde(default)]
    pub pacing_max_ms: f64,
    /// AES67: RTP timeline restarts on a PTP lock, unlock or grandmaster change.
    #[serde(default)]
    pub clock_rebases: u64,
    /// Icecast / HTTP: chunks waiting for the network writer (Icecast queue; HTTP: none).
    #[serde(default)]
    pub queue_chunks: u64,
    /// Icecast / HTTP: encoded chunks a full queue had no room for (a slow destination).
    #[serde(default)]
    pub chunks_dropped: u64,
    #[serde(default)]
    pub bytes_dropped: u64,
    /// Icecast: bits per second sent over the last seconds.
    #[serde(default)]
    pub bitrate_bps: u64,
    /// HTTP: listeners connected now.
    #[serde(default)]
    pub listeners: u64,
    /// HTTP: listeners refused (wrong path, no token, full) and cut for falling behind.
    #[serde(default)]
    pub listeners_refused: u64,
    #[serde(default)]
    pub listeners_too_slow: u64,
    /// Icecast / HTTP: streams started (connections, title changes on Ogg).
    #[serde(default)]
    pub streams_started: u64,
    /// Icecast / HTTP: title changes taken (config file watch or API).
    #[serde(default)]
    pub title_updates: u64,
    /// Icecast: failed `/admin/metadata` updates.
    #[serde(default)]
    pub metadata_errors: u64,
    /// Icecast, RTMP, HTTP: errors recorded as `last_error`, and when the last one happened
    /// (Unix seconds; 0: none yet).
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub last_error_unix_seconds: f64,
}

/// Stream discovery.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DiscoveryStatus {
    pub enabled: bool,
    pub sap: bool,
    pub ravenna: bool,
    pub streams: Vec<crate::discover::StreamRow>,
    pub sap_datagrams: u64,
    pub sap_malformed: u64,
    /// Announced SDPs the catalog refused (unparseable).
    pub refused: u64,
}

/// A raised alarm.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AlarmStatus {
    /// Stable identity: `input/NAME/silence/ch1`, `output/NAME/disconnected`.
    pub key: String,
    /// The rule that raised it.
    pub rule: String,
    /// What is watched: `input`, `output` or `system`.
    pub scope: String,
    /// Input or output name.
    pub subject: String,
    /// 1-based channel, for per-channel conditions.
    pub channel: Option<u16>,
    /// `silence`, `clipping`, `loss`, `no_packets`, `disconnected`, …
    pub condition: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub message: String,
    /// The measured value that decided it (dBFS, packets, ppm… per condition).
    pub value: f64,
    /// RFC 3339 UTC.
    pub raised_at: String,
}

/// One entry of the event history: an alarm raised or cleared, a route or config change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increasing from 1 since the daemon started.
    pub id: u64,
    /// RFC 3339 UTC.
    pub at: String,
    /// `alarm_raised`, `alarm_cleared`, `config_applied`, `config_rejected`, `route`.
    pub kind: String,
    pub severity: String,
    /// The alarm key, input or output the event is about.
    pub subject: String,
    pub message: String,
}

/// Live meters of one input, published about 20 times a second.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InputMeters {
    pub input: String,
    /// Frames measured since the route started.
    pub frames: u64,
    pub channels: Vec<ChannelMeter>,
    pub loudness: Vec<LoudnessMeter>,
    /// Stereo pairs' correlation (−1..1), when the phase detector is on.
    pub pairs: Vec<PairMeter>,
}

/// Levels of one channel, dB (floored at [`DB_FLOOR`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct ChannelMeter {
    /// Sample peak with peak hold, dBFS.
    pub peak: f64,
    /// True peak (BS.1770-4) with peak hold, dBTP.
    pub true_peak: f64,
    /// RMS over 300 ms, dBFS.
    pub rms: f64,
    pub peak_max: f64,
    pub true_peak_max: f64,
    pub clicks: u64,
}

/// EBU R128 loudness of a channel group, LUFS / LU (floored at [`DB_FLOOR`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct LoudnessMeter {
    /// 1-based first channel.
    pub first_channel: u16,
    pub channels: u16,
    pub momentary: f64,
    pub short_term: f64,
    pub integrated: f64,
    pub range: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct PairMeter {
    /// 1-based first channel of the pair.
    pub first_channel: u16,
    pub correlation: Option<f64>,
}

impl InputMeters {
    /// The view of a monitor snapshot.
    pub fn from_snapshot(input: &str, snap: &MeterSnapshot) -> Self {
        InputMeters {
            input: input.to_owned(),
            frames: snap.frames,
            channels: snap
                .channels
                .iter()
                .map(|c| ChannelMeter {
                    peak: db(c.peak),
                    true_peak: db(c.true_peak),
                    rms: db(c.rms),
                    peak_max: db(c.peak_max),
                    true_peak_max: db(c.true_peak_max),
                    clicks: c.clicks,
                })
                .collect(),
            loudness: snap
                .loudness
                .iter()
                .map(|g| LoudnessMeter {
                    first_channel: g.first_channel + 1,
                    channels: g.channels,
                    momentary: db(g.levels.momentary),
                    short_term: db(g.levels.short_term),
                    integrated: db(g.levels.integrated),
                    range: g.levels.range.max(0.0),
                })
                .collect(),
            pairs: snap
                .pairs
                .iter()
                .map(|p: &PairLevels| PairMeter {
                    first_channel: p.first_channel + 1,
                    correlation: p.correlation,
                })
                .collect(),
        }
    }
}
