//! Status reporting: each cause of trouble logged once when it first appears, and periodic
//! summaries of every input and output.

use tracing::warn;

use estuary_engine::stats::StreamStats;

use super::{Reporting, RouteState, Running};

/// Logs each cause of trouble once when it first appears, and periodic summaries.
#[derive(Debug, Default)]
pub struct Reporter {
    seen: Vec<(String, StreamStats)>,
}

impl Reporter {
    pub fn watch_causes(&mut self, running: &Running) {
        for (name, snap) in running.input_stats() {
            let previous = match self.seen.iter_mut().find(|(n, _)| *n == name) {
                Some((_, prev)) => prev,
                None => {
                    self.seen.push((name.clone(), StreamStats::default()));
                    &mut self.seen.last_mut().expect("just pushed").1
                }
            };
            let s = snap.stats;
            let causes = [
                (
                    "malformed packets (truncated or not RTP)",
                    previous.malformed,
                    s.malformed,
                ),
                (
                    "packets with an unexpected payload type",
                    previous.wrong_payload_type,
                    s.wrong_payload_type,
                ),
                (
                    "SSRC changes (a different sender)",
                    previous.ssrc_changes,
                    s.ssrc_changes,
                ),
                (
                    "stream restarts (timestamp jump)",
                    previous.resyncs,
                    s.resyncs,
                ),
                ("lost packets", previous.packets_lost, s.packets_lost),
                (
                    "late packets (arrived after playout)",
                    previous.packets_late,
                    s.packets_late,
                ),
            ];
            for (what, before, now) in causes {
                if before == 0 && now > 0 {
                    warn!(input = %name, count = now, "{what}; further ones are counted in the status");
                }
            }
            *previous = s;
        }
    }

    pub fn report(&self, running: &Running, reporting: Reporting) {
        if let Some(discovery) = running.discovery() {
            let sap = discovery.sap_stats();
            let catalog = discovery.catalog();
            let (refused, _) = catalog.rejected();
            let line = format!(
                "discovery: {} stream(s) known; SAP {} datagrams, {} decoded, {} malformed, {} encrypted, {} ignored; {} announced SDP refused",
                catalog.entries().len(),
                sap.received,
                sap.decoded,
                sap.malformed,
                sap.encrypted,
                sap.ignored,
                refused
            );
            drop(catalog);
            reporting.emit(&line);
        }
        for ((name, snap), (_, state)) in running
            .input_stats()
            .into_iter()
            .zip(running.route_states())
        {
            match state {
                RouteState::Waiting { selector } => {
                    reporting.emit(&format!(
                        "input {name}: waiting for {selector} to be announced"
                    ));
                    continue;
                }
                RouteState::Failed { reason } => {
                    reporting.emit(&format!("input {name}: failed: {reason}"));
                    continue;
                }
                RouteState::Receiving { .. } => {}
            }
            let s = snap.stats;
            let line = format!(
                "input {name}: {} packets, {} lost, {} late, {} duplicate, {} reordered, {} malformed, {} wrong payload type, {} concealed frames, {} discarded frames, {} restarts, jitter {} samples, fill {} frames, playout lag p99 {:.2} ms",
                s.packets_received,
                s.packets_lost,
                s.packets_late,
                s.packets_duplicate,
                s.packets_reordered,
                s.malformed,
                s.wrong_payload_type,
                s.frames_concealed,
                s.frames_discarded,
                s.resyncs,
                s.jitter,
                s.buffer_fill_frames,
                snap.pull_lag.quantile(0.99).as_secs_f64() * 1000.0
            );
            reporting.emit(&line);
        }
        for line in running.net_report_lines() {
            reporting.emit(&line);
        }
        for (name, snap, srt) in running.output_status() {
            if running.is_net_output(&name) {
                continue;
            }
            let Some(srt) = srt else {
                reporting.emit(&format!(
                    "output {name}: AES67, {} packets sent, {} underruns, {} frames dropped, {} send errors, pacing p99 {:.3} ms",
                    snap.access_units,
                    snap.underrun_packets,
                    snap.frames_dropped,
                    snap.send_errors,
                    snap.handoff.quantile(0.99).as_secs_f64() * 1000.0
                ));
                continue;
            };
            let line = format!(
                "output {name}: {}, {} frames encoded, {} messages sent, {} dropped while not connected, rtt {:.1} ms, {} retransmitted, hand-off p99 {:.2} ms",
                srt.state,
                snap.frames_encoded,
                srt.messages_sent,
                srt.messages_dropped_not_connected,
                srt.rtt_ms,
                srt.retransmitted_packets,
                snap.handoff.quantile(0.99).as_secs_f64() * 1000.0
            );
            reporting.emit(&line);
        }
    }
}
