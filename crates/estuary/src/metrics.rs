//! `/metrics`: the status and meters in the Prometheus text exposition format (0.0.4).
//!
//! Names follow the Prometheus conventions: an `estuary_` prefix, base units in the name
//! (`_seconds`, `_bytes`, `_dbfs`, `_lufs`), `_total` on counters. Input counters count since
//! the input's current stream started, so they reset when a stream restarts; Prometheus'
//! `rate()` handles such resets.

use std::fmt::Write as _;

use crate::gateway::{Condition, Scope};
use crate::status::{InputCounters, InputMeters, OutputCounters, Status};

/// Renders everything.
pub fn render(status: &Status, meters: &[InputMeters]) -> String {
    let mut w = Writer::default();
    build_info(&mut w, status);
    process(&mut w, status);
    inputs(&mut w, status);
    levels(&mut w, meters);
    outputs(&mut w, status);
    net_outputs(&mut w, status);
    alarms(&mut w, status);
    ptp(&mut w, status);
    w.out
}

/// The PTP clock, when `[clock]` runs one.
fn ptp(w: &mut Writer, status: &Status) {
    let Some(p) = &status.clock.ptp else {
        return;
    };
    let gm = p.grandmaster.as_deref().unwrap_or("");
    let gauges: [(&str, &str, f64); 8] = [
        (
            "estuary_ptp_locked",
            "1 while the PTP follower is locked or we are the grandmaster.",
            f64::from(u8::from(p.state == "locked" || p.state == "grandmaster")),
        ),
        (
            "estuary_ptp_offset_seconds",
            "Offset from the PTP master (servo estimate).",
            p.offset_ns.unwrap_or(f64::NAN) / 1e9,
        ),
        (
            "estuary_ptp_mean_path_delay_seconds",
            "Mean path delay to the PTP master.",
            p.mean_path_delay_ns.unwrap_or(f64::NAN) / 1e9,
        ),
        (
            "estuary_ptp_frequency_ppm",
            "Frequency correction of the PTP overlay clock.",
            p.frequency_ppm,
        ),
        (
            "estuary_ptp_offset_rms_seconds",
            "RMS of the last 128 PTP offsets.",
            p.jitter.rms_ns / 1e9,
        ),
        (
            "estuary_ptp_offset_abs_max_seconds",
            "Largest |offset| of the last 128.",
            p.jitter.max_abs_ns / 1e9,
        ),
        (
            "estuary_ptp_steps_removed",
            "Steps removed from the grandmaster.",
            f64::from(p.steps_removed),
        ),
        ("estuary_ptp_domain", "PTP domain.", f64::from(p.domain)),
    ];
    for (name, help, value) in gauges {
        w.family(name, "gauge", help);
        w.sample(name, &[("grandmaster", gm)], value);
    }
    let counters: [(&str, &str, u64); 5] = [
        (
            "estuary_ptp_bmca_changes_total",
            "Port state or grandmaster changes.",
            p.bmca_changes,
        ),
        (
            "estuary_ptp_lock_losses_total",
            "Times the PTP follower lost its lock.",
            p.lock_losses,
        ),
        (
            "estuary_ptp_clock_steps_total",
            "Steps of the PTP overlay clock.",
            p.steps,
        ),
        (
            "estuary_ptp_measurements_total",
            "PTP offset measurements.",
            p.measurements,
        ),
        (
            "estuary_ptp_send_errors_total",
            "PTP packets the kernel refused.",
            p.send_errors,
        ),
    ];
    for (name, help, value) in counters {
        w.family(name, "counter", help);
        w.sample(name, &[], value as f64);
    }
}

#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn build_info(w: &mut Writer, status: &Status) {
    w.family(
        "estuary_build_info",
        "gauge",
        "Always 1; the version is in the labels.",
    );
    let version = if status.system.version.is_empty() {
        env!("CARGO_PKG_VERSION")
    } else {
        status.system.version.as_str()
    };
    w.sample("estuary_build_info", &[("version", version)], 1.0);
}

fn process(w: &mut Writer, status: &Status) {
    let s = &status.system;
    let gauges: [(&str, &str, &str, f64); 3] = [
        (
            "estuary_process_cpu_seconds_total",
            "counter",
            "CPU time used by the daemon (user + system), seconds.",
            s.cpu_seconds,
        ),
        (
            "estuary_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the daemon, bytes.",
            s.memory_rss_bytes as f64,
        ),
        (
            "estuary_process_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
            s.uptime_s,
        ),
    ];
    for (name, kind, help, value) in gauges {
        w.family(name, kind, help);
        w.sample(name, &[], value);
    }
    w.family(
        "estuary_process_cpu_ratio",
        "gauge",
        "CPU used over the last second, as a fraction of one core.",
    );
    w.sample("estuary_process_cpu_ratio", &[], s.cpu_percent / 100.0);
}

/// One input counter: (metric name, help, value).
type InputField = (&'static str, &'static str, fn(&InputCounters) -> f64);

const INPUT_COUNTERS: [InputField; 13] = [
    (
        "estuary_input_packets_received_total",
        "RTP packets received.",
        |c| c.packets_received as f64,
    ),
    (
        "estuary_input_received_bytes_total",
        "RTP payload bytes received.",
        |c| c.bytes_received as f64,
    ),
    (
        "estuary_input_packets_lost_total",
        "RTP packets never received.",
        |c| c.packets_lost as f64,
    ),
    (
        "estuary_input_packets_late_total",
        "Packets that arrived after their playout time.",
        |c| c.packets_late as f64,
    ),
    (
        "estuary_input_packets_duplicate_total",
        "Duplicate packets.",
        |c| c.packets_duplicate as f64,
    ),
    (
        "estuary_input_packets_reordered_total",
        "Packets that arrived out of order.",
        |c| c.packets_reordered as f64,
    ),
    (
        "estuary_input_frames_concealed_total",
        "Audio frames concealed for missing packets.",
        |c| c.frames_concealed as f64,
    ),
    (
        "estuary_input_frames_discarded_total",
        "Audio frames discarded.",
        |c| c.frames_discarded as f64,
    ),
    (
        "estuary_input_packets_malformed_total",
        "Packets that were not valid RTP.",
        |c| c.malformed as f64,
    ),
    (
        "estuary_input_packets_wrong_payload_type_total",
        "Packets with another RTP payload type.",
        |c| c.wrong_payload_type as f64,
    ),
    (
        "estuary_input_ssrc_changes_total",
        "Changes of the sender's SSRC.",
        |c| c.ssrc_changes as f64,
    ),
    (
        "estuary_input_resyncs_total",
        "Jitter-buffer resynchronisations.",
        |c| c.resyncs as f64,
    ),
    (
        "estuary_input_ring_overruns_total",
        "Frames an output or meter ring had no room for.",
        |c| c.ring_overruns as f64,
    ),
];

const INPUT_GAUGES: [InputField; 3] = [
    (
        "estuary_input_jitter_seconds",
        "RFC 3550 interarrival jitter, seconds.",
        |c| c.jitter_us / 1e6,
    ),
    (
        "estuary_input_buffer_fill_frames",
        "Frames in the jitter buffer.",
        |c| c.buffer_fill_frames as f64,
    ),
    (
        "estuary_input_playout_lag_p99_seconds",
        "Playout lag of the ingest tick, 99th percentile, seconds.",
        |c| c.playout_lag_p99_ms / 1e3,
    ),
];

fn inputs(w: &mut Writer, status: &Status) {
    w.family(
        "estuary_input_up",
        "gauge",
        "1 when the input is receiving its stream.",
    );
    for i in &status.inputs {
        let up = if i.state == "receiving" { 1.0 } else { 0.0 };
        w.sample("estuary_input_up", &[("input", &i.name)], up);
    }
    for (fields, kind) in [
        (&INPUT_COUNTERS[..], "counter"),
        (&INPUT_GAUGES[..], "gauge"),
    ] {
        for (name, help, get) in fields {
            w.family(name, kind, help);
            for i in &status.inputs {
                w.sample(name, &[("input", &i.name)], get(&i.counters));
            }
        }
    }
}

/// One meter value of a channel.
type ChannelField = (
    &'static str,
    &'static str,
    fn(&crate::status::ChannelMeter) -> f64,
);

const CHANNEL_GAUGES: [ChannelField; 3] = [
    (
        "estuary_input_peak_dbfs",
        "Sample peak with peak hold, dBFS (-150: silence).",
        |c| c.peak,
    ),
    (
        "estuary_input_true_peak_dbtp",
        "True peak (BS.1770-4) with peak hold, dBTP.",
        |c| c.true_peak,
    ),
    (
        "estuary_input_rms_dbfs",
        "RMS level over 300 ms, dBFS.",
        |c| c.rms,
    ),
];

type LoudnessField = (
    &'static str,
    &'static str,
    fn(&crate::status::LoudnessMeter) -> f64,
);

const LOUDNESS_GAUGES: [LoudnessField; 4] = [
    (
        "estuary_input_loudness_momentary_lufs",
        "EBU R128 momentary loudness (400 ms), LUFS.",
        |l| l.momentary,
    ),
    (
        "estuary_input_loudness_short_term_lufs",
        "EBU R128 short-term loudness (3 s), LUFS.",
        |l| l.short_term,
    ),
    (
        "estuary_input_loudness_integrated_lufs",
        "EBU R128 integrated loudness since the stream started, LUFS.",
        |l| l.integrated,
    ),
    (
        "estuary_input_loudness_range_lu",
        "EBU R128 loudness range, LU.",
        |l| l.range,
    ),
];

fn levels(w: &mut Writer, meters: &[InputMeters]) {
    for (name, help, get) in CHANNEL_GAUGES {
        w.family(name, "gauge", help);
        for m in meters {
            for (i, c) in m.channels.iter().enumerate() {
                let channel = (i + 1).to_string();
                w.sample(name, &[("input", &m.input), ("channel", &channel)], get(c));
            }
        }
    }
    for (name, help, get) in LOUDNESS_GAUGES {
        w.family(name, "gauge", help);
        for m in meters {
            for l in &m.loudness {
                let last = l.first_channel + l.channels.saturating_sub(1);
                let channels = format!("{}-{last}", l.first_channel);
                w.sample(
                    name,
                    &[("input", &m.input), ("channels", &channels)],
                    get(l),
                );
            }
        }
    }
}

type OutputField = (&'static str, &'static str, fn(&OutputCounters) -> f64);

const OUTPUT_COUNTERS: [OutputField; 12] = [
    (
        "estuary_output_frames_encoded_total",
        "Audio frames encoded.",
        |c| c.frames_encoded as f64,
    ),
    (
        "estuary_output_access_units_total",
        "Codec access units produced.",
        |c| c.access_units as f64,
    ),
    (
        "estuary_output_encode_errors_total",
        "Encoder errors.",
        |c| c.encode_errors as f64,
    ),
    (
        "estuary_output_reconnects_total",
        "Connections re-established (SRT, Icecast, RTMP).",
        |c| c.reconnects as f64,
    ),
    (
        "estuary_output_connect_failures_total",
        "SRT connection attempts that failed.",
        |c| c.connect_failures as f64,
    ),
    (
        "estuary_output_messages_sent_total",
        "SRT messages sent.",
        |c| c.messages_sent as f64,
    ),
    (
        "estuary_output_messages_dropped_not_connected_total",
        "Messages dropped while no peer was connected.",
        |c| c.messages_dropped_not_connected as f64,
    ),
    (
        "estuary_output_messages_dropped_send_error_total",
        "Messages dropped on a send error.",
        |c| c.messages_dropped_send_error as f64,
    ),
    (
        "estuary_output_sent_bytes_total",
        "Bytes sent (SRT; Icecast, RTMP: to the server; HTTP: to all listeners).",
        |c| c.bytes_sent as f64,
    ),
    (
        "estuary_output_packets_retransmitted_total",
        "SRT packets retransmitted.",
        |c| c.retransmitted_packets as f64,
    ),
    (
        "estuary_output_packets_sender_dropped_total",
        "SRT packets the sender dropped as too late.",
        |c| c.sender_dropped_packets as f64,
    ),
    (
        "estuary_output_packets_send_lost_total",
        "SRT packets reported lost by the receiver.",
        |c| c.send_loss_packets as f64,
    ),
];

const OUTPUT_GAUGES: [OutputField; 3] = [
    (
        "estuary_output_rtt_seconds",
        "SRT round-trip time, seconds.",
        |c| c.rtt_ms / 1e3,
    ),
    (
        "estuary_output_send_rate_bits_per_second",
        "Send rate, bit/s (SRT; Icecast and RTMP: measured over the last seconds).",
        |c| c.send_rate_mbps * 1e6,
    ),
    (
        "estuary_output_handoff_p99_seconds",
        "Codec frame hand-off (ring to SRT), 99th percentile, seconds.",
        |c| c.handoff_p99_ms / 1e3,
    ),
];

fn outputs(w: &mut Writer, status: &Status) {
    w.family(
        "estuary_output_connected",
        "gauge",
        "1 when the output has a connected peer (SRT caller or listener, Icecast, RTMP).",
    );
    for o in &status.outputs {
        let up = if o.state == "connected" { 1.0 } else { 0.0 };
        w.sample(
            "estuary_output_connected",
            &[("output", &o.name), ("input", &o.input)],
            up,
        );
    }
    for (fields, kind) in [
        (&OUTPUT_COUNTERS[..], "counter"),
        (&OUTPUT_GAUGES[..], "gauge"),
    ] {
        for (name, help, get) in fields {
            w.family(name, kind, help);
            for o in &status.outputs {
                w.sample(name, &[("output", &o.name)], get(&o.counters));
            }
        }
    }
}

/// Every state an output can report, for the `estuary_output_state` state set.
const OUTPUT_STATES: [&str; 8] = [
    "connecting",
    "listening",
    "connected",
    "serving",
    "waiting",
    "backoff",
    "failed",
    "stopped",
];

/// The compressed network outputs' own counters (Icecast, RTMP, HTTP listen-in).
const NET_COUNTERS: [OutputField; 9] = [
    (
        "estuary_output_frames_dropped_total",
        "Audio frames not encoded: no destination connected (Icecast, RTMP) or, for AES67, the input ran ahead.",
        |c| c.frames_dropped as f64,
    ),
    (
        "estuary_output_chunks_dropped_total",
        "Encoded chunks a full queue had no room for (a slow or dead destination or listener).",
        |c| c.chunks_dropped as f64,
    ),
    (
        "estuary_output_dropped_bytes_total",
        "Bytes of the chunks dropped on a full queue.",
        |c| c.bytes_dropped as f64,
    ),
    (
        "estuary_output_streams_started_total",
        "Streams started (container header sent): connections, Ogg title chains.",
        |c| c.streams_started as f64,
    ),
    (
        "estuary_output_title_updates_total",
        "Titles taken (config file watch or API).",
        |c| c.title_updates as f64,
    ),
    (
        "estuary_output_metadata_errors_total",
        "Icecast title updates (/admin/metadata) that failed.",
        |c| c.metadata_errors as f64,
    ),
    (
        "estuary_output_listeners_refused_total",
        "HTTP listen-in requests refused (wrong path, no token, full).",
        |c| c.listeners_refused as f64,
    ),
    (
        "estuary_output_listeners_too_slow_total",
        "HTTP listen-in listeners disconnected for falling behind.",
        |c| c.listeners_too_slow as f64,
    ),
    (
        "estuary_output_errors_total",
        "Errors recorded as the output's last error (failed connections, refusals, writes).",
        |c| c.errors as f64,
    ),
];

const NET_GAUGES: [OutputField; 3] = [
    (
        "estuary_output_queue_chunks",
        "Encoded chunks waiting for the network writer.",
        |c| c.queue_chunks as f64,
    ),
    (
        "estuary_output_listeners",
        "HTTP listen-in listeners connected now.",
        |c| c.listeners as f64,
    ),
    (
        "estuary_output_last_error_timestamp_seconds",
        "Unix time of the output's last error; 0 when it has had none.",
        |c| c.last_error_unix_seconds,
    ),
];

/// Icecast, RTMP and HTTP listen-in outputs: their state as a state set, and their counters.
fn net_outputs(w: &mut Writer, status: &Status) {
    let net: Vec<_> = status
        .outputs
        .iter()
        .filter(|o| matches!(o.kind.as_str(), "icecast" | "rtmp" | "http"))
        .collect();
    w.family(
        "estuary_output_state",
        "gauge",
        "1 for the state the output is in (a state set: one series per state).",
    );
    for o in &status.outputs {
        for state in OUTPUT_STATES {
            let on = f64::from(u8::from(o.state == state));
            w.sample(
                "estuary_output_state",
                &[("output", &o.name), ("state", state)],
                on,
            );
        }
    }
    for (fields, kind) in [(&NET_COUNTERS[..], "counter"), (&NET_GAUGES[..], "gauge")] {
        for (name, help, get) in fields {
            w.family(name, kind, help);
            for o in &net {
                w.sample(name, &[("output", &o.name)], get(&o.counters));
            }
        }
    }
}

fn alarms(w: &mut Writer, status: &Status) {
    w.family(
        "estuary_alarms_active",
        "gauge",
        "Alarms raised now, by severity.",
    );
    for severity in ["info", "warning", "critical"] {
        let n = status
            .alarms
            .iter()
            .filter(|a| a.severity == severity)
            .count();
        w.sample("estuary_alarms_active", &[("severity", severity)], n as f64);
    }
    // Every condition, zeros included, so a dashboard's series exist before the first alarm.
    w.family(
        "estuary_alarm_conditions_active",
        "gauge",
        "Alarms raised now, by what is watched and condition.",
    );
    for scope in [Scope::Input, Scope::Output, Scope::Clock] {
        for condition in Condition::ALL {
            let n = status
                .alarms
                .iter()
                .filter(|a| a.scope == scope.name() && a.condition == condition.name())
                .count();
            w.sample(
                "estuary_alarm_conditions_active",
                &[("scope", scope.name()), ("condition", condition.name())],
                n as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{AlarmStatus, ChannelMeter, InputStatus};

    #[test]
    fn renders_families_with_escaped_labels() {
        let status = Status {
            inputs: vec![InputStatus {
                name: "a\"b".into(),
                state: "receiving".into(),
                counters: InputCounters {
                    packets_received: 42,
                    ..InputCounters::default()
                },
                ..InputStatus::default()
            }],
            alarms: vec![AlarmStatus {
                severity: "critical".into(),
                ..AlarmStatus::default()
            }],
            ..Status::default()
        };
        let meters = vec![InputMeters {
            input: "a\"b".into(),
            channels: vec![ChannelMeter {
                peak: -18.0,
                ..ChannelMeter::default()
            }],
            ..InputMeters::default()
        }];
        let text = render(&status, &meters);
        assert!(text.contains("# TYPE estuary_input_packets_received_total counter\n"));
        assert!(text.contains("estuary_input_packets_received_total{input=\"a\\\"b\"} 42\n"));
        assert!(text.contains("estuary_input_peak_dbfs{input=\"a\\\"b\",channel=\"1\"} -18\n"));
        assert!(text.contains("estuary_input_up{input=\"a\\\"b\"} 1\n"));
        assert!(text.contains("estuary_alarms_active{severity=\"critical\"} 1\n"));
    }

    #[test]
    fn network_outputs_have_a_state_set_and_their_counters() {
        use crate::status::{OutputCounters, OutputStatus};
        let status = Status {
            outputs: vec![OutputStatus {
                name: "ice".into(),
                kind: "icecast".into(),
                state: "waiting".into(),
                counters: OutputCounters {
                    chunks_dropped: 3,
                    queue_chunks: 64,
                    last_error_unix_seconds: 1.7e9,
                    errors: 2,
                    ..OutputCounters::default()
                },
                ..OutputStatus::default()
            }],
            ..Status::default()
        };
        let text = render(&status, &[]);
        for line in [
            "estuary_output_state{output=\"ice\",state=\"waiting\"} 1\n",
            "estuary_output_state{output=\"ice\",state=\"connected\"} 0\n",
            "# TYPE estuary_output_chunks_dropped_total counter\n",
            "estuary_output_chunks_dropped_total{output=\"ice\"} 3\n",
            "estuary_output_queue_chunks{output=\"ice\"} 64\n",
            "estuary_output_last_error_timestamp_seconds{output=\"ice\"} 1700000000\n",
            "estuary_output_errors_total{output=\"ice\"} 2\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
