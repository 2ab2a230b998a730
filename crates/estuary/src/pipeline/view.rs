//! The status views of the running pipeline, for the supervisor to publish.

use std::time::Instant;

use estuary_io::clock::monotonic_now;
use estuary_io::srt::SrtState;

use super::{Route, RouteState, Running};
use crate::config::{CodecConfig, InputPlan, SourceSpec, SrtModeConfig};
use crate::discover;
use crate::gateway::{Condition, Scope, Signal};
use crate::status::{
    DiscoveryStatus, Health, InputCounters, InputMeters, InputStatus, OutputCounters, OutputStatus,
    Status, StreamClockReference, StreamInfo,
};

impl Running {
    /// Inputs, outputs, discovery and clock; the supervisor adds system figures and alarms.
    pub fn status(&self) -> Status {
        let mut status = Status {
            inputs: self.routes.iter().map(input_status).collect(),
            outputs: self.routes.iter().flat_map(output_statuses).collect(),
            discovery: self.discovery_status(),
            recorders: self.recorder_status(),
            clock: crate::clock::clock_status(),
            dante: crate::dante::status::status(),
            ..Status::default()
        };
        let locked_gm = crate::clock::locked_grandmaster();
        for (input, route) in status.inputs.iter_mut().zip(&self.routes) {
            // A discovered stream's SDP, else the configured one (inline or file).
            let configured = input
                .stream
                .as_ref()
                .is_some_and(|s| s.sdp.is_none())
                .then_some(route.configured_sdp.as_deref())
                .flatten();
            let reference = input
                .stream
                .as_ref()
                .and_then(|s| s.sdp.as_deref())
                .or(configured)
                .and_then(|sdp| {
                    sdp.lines()
                        .find_map(|l| l.trim().strip_prefix("a=ts-refclk:"))
                });
            if let Some(reference) = reference {
                let mismatch = crate::clock::grandmaster_mismatch(reference, locked_gm.as_ref());
                input.clock_mismatch = mismatch.clone();
                status.clock.stream_references.push(StreamClockReference {
                    input: input.name.clone(),
                    reference: reference.to_owned(),
                    mismatch: mismatch.is_some(),
                });
            }
        }
        for stream in &mut status.discovery.streams {
            stream.used_by = status
                .inputs
                .iter()
                .filter(|i| i.source == stream.source)
                .map(|i| i.name.clone())
                .collect();
        }
        status
    }

    /// The meters of every measured input that is receiving.
    pub fn meters(&self) -> Vec<InputMeters> {
        self.routes
            .iter()
            .filter(|r| r.detectors.is_some() && matches!(r.state, RouteState::Receiving { .. }))
            .map(|r| {
                InputMeters::from_snapshot(r.config.name.get_ref(), &super::lock(&r.meter).meters)
            })
            .collect()
    }

    /// Signals for outputs that lost their peer (or, as callers, never reached it) and got
    /// it back, and for routes that failed and recovered. Call it periodically.
    pub fn watch_outputs(&mut self) -> Vec<Signal> {
        let mut signals = Vec::new();
        let mut seen = Vec::new();
        for route in &self.routes {
            let failed = matches!(route.state, RouteState::Failed { .. });
            let name = route.config.name.get_ref().clone();
            let key = format!("input/{name}");
            let before = self
                .output_watch
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|w| w.1);
            if before.unwrap_or(false) != failed {
                signals.push(signal(Scope::Input, &name, Condition::RouteFailed, failed));
            }
            seen.push((key, failed, false));
            for slot in &route.outputs {
                let name = slot.config.name.get_ref().clone();
                // An AES67 sender has no peer to lose.
                let Some(srt) = slot.sink.srt() else {
                    continue;
                };
                let status = srt.status();
                let connected = matches!(status.state, SrtState::Connected { .. });
                let key = format!("output/{name}");
                let (was_down, ever_connected) = self
                    .output_watch
                    .iter()
                    .find(|(k, _, _)| *k == key)
                    .map_or((false, false), |w| (w.1, w.2));
                let ever = ever_connected || connected;
                // A listener nobody has called yet is waiting, not broken; a caller that
                // cannot connect, or any output that lost its peer, is down.
                let caller = slot.config.mode == Some(SrtModeConfig::Caller);
                let failing =
                    status.connect_failures > 0 || matches!(status.state, SrtState::Backoff { .. });
                let down = !connected && (ever || (caller && failing));
                if down != was_down {
                    signals.push(signal(Scope::Output, &name, Condition::Disconnected, down));
                }
                seen.push((key, down, ever));
            }
        }
        // Gone routes and outputs clear what they had raised.
        for (key, down, _) in &self.output_watch {
            if *down && !seen.iter().any(|(k, _, _)| k == key) {
                let (scope, name, condition) = match key.split_once('/') {
                    Some(("input", n)) => (Scope::Input, n, Condition::RouteFailed),
                    Some((_, n)) => (Scope::Output, n, Condition::Disconnected),
                    None => continue,
                };
                signals.push(signal(scope, name, condition, false));
            }
        }
        self.output_watch = seen;
        signals
    }

    fn discovery_status(&self) -> DiscoveryStatus {
        let Some(discovery) = &self.discovery else {
            return DiscoveryStatus {
                enabled: false,
                ..DiscoveryStatus::default()
            };
        };
        let sap = discovery.sap_stats();
        let catalog = discovery.catalog();
        DiscoveryStatus {
            enabled: true,
            sap: self.config.discovery.sap,
            ravenna: self.config.discovery.ravenna,
            streams: discover::rows(catalog.entries(), monotonic_now()),
            sap_datagrams: sap.received,
            sap_malformed: sap.malformed,
            refused: catalog.rejected().0,
        }
    }
}

fn signal(scope: Scope, subject: &str, condition: Condition, raised: bool) -> Signal {
    Signal {
        scope,
        subject: subject.to_owned(),
        channel: None,
        condition,
        raised,
        value: 0.0,
        at: std::time::SystemTime::now(),
    }
}

fn input_status(route: &Route) -> InputStatus {
    let config = &route.config;
    let snap = *super::lock(&route.snapshot);
    let mut totals = snap.stats;
    totals.add_counters(&route.carried.stats);
    // Only the raised conditions and the drift: the meters themselves go out through
    // `Running::meters`, so the snapshot is not copied twice per publication.
    let (raised, drift_ppm) = {
        let meter = super::lock(&route.meter);
        (meter.raised.clone(), meter.health.drift_ppm)
    };
    let source = match config.source_spec() {
        Ok(Some(SourceSpec::Discovered(selector))) => selector.to_string(),
        _ => match config.plan() {
            Ok(InputPlan::Fixed(stream)) => stream.destination.to_string(),
            _ => String::new(),
        },
    };
    let (state, reason, since, stream) = match &route.state {
        RouteState::Waiting { .. } => ("waiting", None, None, None),
        RouteState::Failed { reason } => ("failed", Some(reason.clone()), None, None),
        RouteState::Receiving { stream, sdp, since } => (
            "receiving",
            None,
            Some(Instant::now().duration_since(*since).as_secs_f64()),
            Some(StreamInfo {
                destination: stream.destination.to_string(),
                source: stream.source.map(|s| s.to_string()),
                encoding: stream.format.encoding_name().to_owned(),
                sample_rate: stream.sample_rate,
                channels: stream.channels,
                frames_per_packet: stream.frames_per_packet,
                label: stream.label.clone(),
                sdp: sdp.clone(),
            }),
        ),
    };
    let rate = stream.as_ref().map_or(0, |s| s.sample_rate);
    let conditions: Vec<String> = raised
        .iter()
        .map(|(c, ch)| match ch {
            Some(ch) => format!("{} ch{ch}", c.name()),
            None => c.name().to_owned(),
        })
        .collect();
    let level = match state {
        "failed" => "critical",
        "receiving" if !conditions.is_empty() => "warning",
        "receiving" => "ok",
        _ => "idle",
    };
    InputStatus {
        name: config.name.get_ref().clone(),
        kind: config.kind.name().into(),
        source,
        state: state.into(),
        reason,
        since_s: since,
        latency_ms: config.latency.as_secs_f64() * 1000.0,
        stream,
        counters: InputCounters::from_stats(
            &totals,
            rate,
            snap.ring_overruns + route.carried.ring_overruns,
            snap.pull_lag.quantile(0.99).as_secs_f64() * 1000.0,
        ),
        health: Health {
            level: level.into(),
            conditions,
            drift_ppm,
        },
        outputs: route
            .outputs
            .iter()
            .map(|o| o.config.name.get_ref().clone())
            .collect(),
        redundancy: snap.redundancy.as_ref().map(super::redundant::status),
        failover: snap.failover.as_ref().map(super::failover::status),
        srt: route
            .srt
            .as_deref()
            .map(|shared| super::srt_in::status(shared, rate.max(1))),
        clock_mismatch: None,
    }
}

fn output_statuses(route: &Route) -> impl Iterator<Item = OutputStatus> + '_ {
    route.outputs.iter().map(move |slot| {
        let c = &slot.config;
        let snap = super::lock(&slot.snapshot).clone();
        let srt = match &slot.sink {
            super::Sink::Srt(srt) => srt.status(),
            super::Sink::Aes67(sender) => return aes67_status(route, c, &snap, sender),
            super::Sink::Net(sink) => return super::netout::status(route, c, &snap, sink),
        };
        let (state, peer) = match &srt.state {
            SrtState::Connecting => ("connecting", None),
            SrtState::Listening => ("listening", None),
            SrtState::Connected { peer } => ("connected", Some(peer.to_string())),
            SrtState::Backoff { .. } => ("backoff", None),
            _ => ("stopped", None),
        };
        let level = match state {
            "connected" => "ok",
            "listening" => "idle",
            _ => "warning",
        };
        OutputStatus {
            name: c.name.get_ref().clone(),
            input: c.input.get_ref().clone(),
            kind: "srt".into(),
            mode: match c.mode {
                Some(SrtModeConfig::Caller) => "caller".into(),
                _ => "listener".into(),
            },
            address: c.address.to_string(),
            codec: match c.codec {
                Some(CodecConfig::Opus) => "opus".into(),
                _ => "pcm".into(),
            },
            state: state.into(),
            peer,
            last_error: srt.last_error.clone(),
            counters: OutputCounters {
                frames_encoded: snap.frames_encoded,
                access_units: snap.access_units,
                encode_errors: snap.encode_errors,
                reconnects: srt.reconnects,
                connect_failures: srt.connect_failures,
                messages_sent: srt.messages_sent,
                messages_dropped_not_connected: srt.messages_dropped_not_connected,
                messages_dropped_send_error: srt.messages_dropped_send_error,
                bytes_sent: srt.bytes_sent,
                rtt_ms: srt.rtt_ms,
                retransmitted_packets: srt.retransmitted_packets,
                sender_dropped_packets: srt.sender_dropped_packets,
                send_loss_packets: srt.send_loss_packets,
                send_rate_mbps: srt.send_rate_mbps,
                handoff_p99_ms: snap.handoff.quantile(0.99).as_secs_f64() * 1000.0,
                ..OutputCounters::default()
            },
            health: Health {
                level: level.into(),
                conditions: if level == "warning" {
                    vec![state.to_owned()]
                } else {
                    Vec::new()
                },
                drift_ppm: None,
            },
            sdp: None,
            title: None,
        }
    })
}

/// An AES67 output: `sending` while its route receives, with its SDP and pacing figures.
fn aes67_status(
    route: &Route,
    c: &crate::config::OutputConfig,
    snap: &super::OutputSnapshot,
    sender: &super::aes67::Aes67Sender,
) -> OutputStatus {
    let sending = matches!(route.state, RouteState::Receiving { .. });
    let mut conditions = Vec::new();
    if snap.underrun_packets > 0 {
        conditions.push("underrun".to_owned());
    }
    if snap.send_errors > 0 {
        conditions.push("send errors".to_owned());
    }
    let level = match (sending, conditions.is_empty()) {
        (false, _) => "idle",
        (true, true) => "ok",
        (true, false) => "warning",
    };
    OutputStatus {
        name: c.name.get_ref().clone(),
        input: c.input.get_ref().clone(),
        kind: "aes67".into(),
        mode: if c.address.ip().is_multicast() {
            "multicast".into()
        } else {
            "unicast".into()
        },
        address: c.address.to_string(),
        codec: c
            .format
            .as_ref()
            .map_or_else(|| "L24".to_owned(), |f| f.get_ref().to_ascii_uppercase()),
        state: if sending { "sending" } else { "stopped" }.into(),
        peer: None,
        last_error: None,
        counters: OutputCounters {
            frames_encoded: snap.frames_encoded,
            access_units: snap.access_units,
            encode_errors: snap.encode_errors,
            messages_sent: snap.access_units,
            messages_dropped_send_error: snap.send_errors,
            handoff_p99_ms: snap.handoff.quantile(0.99).as_secs_f64() * 1000.0,
            underrun_packets: snap.underrun_packets,
            frames_dropped: snap.frames_dropped,
            pacing_max_ms: snap.handoff.max().as_secs_f64() * 1000.0,
            clock_rebases: snap.clock_rebases,
            ..OutputCounters::default()
        },
        health: Health {
            level: level.into(),
            conditions,
            drift_ppm: None,
        },
        sdp: sender.sdp(),
        title: None,
    }
}
