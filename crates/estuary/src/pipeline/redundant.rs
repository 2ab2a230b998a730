//! Opening the second path of an ST 2022-7 input, and its status.

use anyhow::Context as _;
use tracing::info;

use estuary_engine::redundancy::PathMerger;
use estuary_io::mcast;

use super::RedundancySnapshot;
use super::ingest::RedundantPath;
use crate::config::InputConfig;
use crate::status::{PathStatus, RedundancyStatus};

/// Opens the second socket when the input has a second path (configured, or in its SDP).
pub(super) fn open_second_path(
    input: &InputConfig,
    sdp: Option<&str>,
) -> anyhow::Result<Option<RedundantPath>> {
    let name = input.name.get_ref();
    let leg = input
        .redundant_leg(sdp)
        .map_err(|(_, field, message)| anyhow::anyhow!("input {name}: {field}: {message}"))?;
    let Some(leg) = leg else {
        return Ok(None);
    };
    let iface = leg
        .interface
        .as_deref()
        .map(mcast::resolve_interface)
        .transpose()
        .with_context(|| format!("input {name}: redundant.interface"))?;
    let socket = mcast::open_receive_socket(leg.destination, leg.source, iface.as_ref())
        .with_context(|| {
            format!(
                "input {name}: cannot receive the second path on {}",
                leg.destination
            )
        })?;
    let max_skew = input.skew_allowance(true);
    info!(
        input = %name,
        destination = %leg.destination,
        interface = ?leg.interface,
        max_skew_ms = max_skew.as_millis() as u64,
        "ST 2022-7 second path"
    );
    Ok(Some(RedundantPath {
        socket,
        merger: PathMerger::new(max_skew),
        max_skew,
    }))
}

/// The API's view of both paths.
pub(super) fn status(snapshot: &RedundancySnapshot) -> RedundancyStatus {
    let path = |i: usize| {
        let c = snapshot.paths[i];
        PathStatus {
            received: c.received,
            lost: c.lost,
            used: c.used,
            redundant: c.redundant,
            beyond_skew: c.beyond_skew,
        }
    };
    RedundancyStatus {
        paths: vec![path(0), path(1)],
        skew_us: snapshot.skew.last_us,
        max_abs_skew_us: snapshot.skew.max_abs_us,
        max_skew_ms: snapshot.max_skew.as_secs_f64() * 1000.0,
    }
}
