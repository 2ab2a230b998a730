//! The discovery service: listens for stream announcements on its own threads and keeps the
//! engine's [`Catalog`] up to date.
//!
//! - SAP: one listener socket on port 9875 joined to the configured groups (unicast SAP to
//!   the port is accepted too, which the demo uses on loopback);
//! - RAVENNA: an mDNS/DNS-SD browser; each session found is read with RTSP DESCRIBE.
//!
//! Readers take the catalog lock briefly; a generation counter tells them whether anything
//! changed since they last looked, so the supervisor reconciles routes only on changes.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::{debug, info, warn};

use estuary_engine::catalog::{Catalog, CatalogEvent, Protocol, SessionIdentity};
use estuary_io::clock::monotonic_now;
use estuary_io::mcast;
use estuary_io::sap::{SapListener, SapListenerConfig, SapListenerStats};
use estuary_wire::sap::{MessageType, SapPacket};

use crate::config::DiscoveryConfig;
use crate::shutdown::Stop;

/// How often silent entries are aged.
const TICK: Duration = Duration::from_secs(1);
/// How long one SAP receive waits, which bounds how late a stop request is seen.
const SAP_WAIT: Duration = Duration::from_millis(100);

/// State shared between the discovery threads and their readers.
#[derive(Debug, Default)]
struct Shared {
    catalog: Mutex<Catalog>,
    generation: AtomicU64,
    sap_stats: Mutex<SapListenerStats>,
}

impl Shared {
    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a catalog change and tells readers the catalog moved on.
    fn changed(&self, event: &CatalogEvent) {
        match event {
            CatalogEvent::Added { protocol, name } => {
                info!(%protocol, stream = %name, "stream announced");
            }
            CatalogEvent::Updated { protocol, name } => {
                info!(%protocol, stream = %name, "stream description changed");
            }
            CatalogEvent::Stale { protocol, name } => {
                warn!(%protocol, stream = %name, "no announcement for three intervals; stream marked stale");
            }
            CatalogEvent::Revived { protocol, name } => {
                info!(%protocol, stream = %name, "stale stream announced again");
            }
            CatalogEvent::Removed {
                protocol,
                name,
                why,
            } => {
                info!(%protocol, stream = %name, reason = ?why, "stream removed");
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// The running discovery service; stops its threads on drop.
#[derive(Debug)]
pub struct Discovery {
    shared: Arc<Shared>,
    halt: Stop,
    threads: Vec<JoinHandle<()>>,
}

impl Discovery {
    pub fn start(config: &DiscoveryConfig) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        let halt = Stop::default();
        let iface = match &config.interface {
            Some(spec) => Some(mcast::resolve_interface(spec.get_ref())?),
            None => None,
        };
        let mut threads = Vec::new();
        if config.sap {
            let listener = open_sap_listener(&config.sap_groups, iface.clone())?;
            let (shared, halt) = (Arc::clone(&shared), halt.clone());
            threads.push(
                thread::Builder::new()
                    .name("sap-listen".into())
                    .spawn(move || sap_loop(listener, &shared, &halt))?,
            );
        }
        {
            let (shared, halt) = (Arc::clone(&shared), halt.clone());
            threads.push(
                thread::Builder::new()
                    .name("catalog-age".into())
                    .spawn(move || age_loop(&shared, &halt))?,
            );
        }
        Ok(Self {
            shared,
            halt,
            threads,
        })
    }

    /// Changes every time the catalog does.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    pub fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.shared.catalog()
    }

    /// SAP datagram counters (received, decoded, encrypted, malformed, ignored).
    pub fn sap_stats(&self) -> SapListenerStats {
        *self
            .shared
            .sap_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.halt.request();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Opens the SAP socket. A group that cannot be joined (no multicast route, as on a machine
/// with only loopback) is reported and left out rather than stopping discovery: unicast SAP
/// and the other groups still work.
fn open_sap_listener(
    groups: &[IpAddr],
    iface: Option<mcast::Interface>,
) -> anyhow::Result<SapListener> {
    let config = |groups: Vec<IpAddr>| SapListenerConfig {
        groups,
        iface: iface.clone(),
        timeout: Some(SAP_WAIT),
        ..SapListenerConfig::default()
    };
    if let Ok(listener) = SapListener::open(&config(groups.to_vec())) {
        return Ok(listener);
    }
    let mut joinable = Vec::new();
    for &group in groups {
        match SapListener::open(&config(vec![group])) {
            Ok(_) => joinable.push(group),
            Err(e) => warn!(%group, error = %e, "cannot join this SAP group; listening without it"),
        }
    }
    Ok(SapListener::open(&config(joinable))?)
}

fn sap_loop(mut listener: SapListener, shared: &Shared, halt: &Stop) {
    while !halt.requested() {
        match listener.recv() {
            Ok(Some((packet, from))) => on_sap_packet(shared, &packet, from.ip()),
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "SAP receive failed");
                thread::sleep(SAP_WAIT);
            }
        }
        if let Ok(mut stats) = shared.sap_stats.try_lock() {
            *stats = listener.stats();
        }
    }
}

fn on_sap_packet(shared: &Shared, packet: &SapPacket, from: IpAddr) {
    let key = format!("{}/{:04x}", packet.origin, packet.msg_id_hash);
    match packet.message_type {
        MessageType::Announce => {
            let Some(sdp) = packet.sdp() else {
                debug!(%key, "SAP payload is not UTF-8");
                return;
            };
            let result = shared.catalog().announce(
                monotonic_now(),
                Protocol::Sap,
                &key,
                &announcer_of(packet, from),
                sdp,
            );
            match result {
                Ok(Some(event)) => shared.changed(&event),
                Ok(None) => {}
                Err(e) => debug!(%key, %from, error = %e, "announced SDP refused"),
            }
        }
        MessageType::Delete => {
            let identity = packet.origin_line().and_then(identity_of_origin_line);
            let event = shared
                .catalog()
                .withdraw(Protocol::Sap, &key, identity.as_ref());
            if let Some(event) = event {
                shared.changed(&event);
            }
        }
    }
}

/// Who announced: the SAP origin field, or the datagram's source when the origin is unset.
fn announcer_of(packet: &SapPacket, from: IpAddr) -> String {
    if packet.origin.is_unspecified() {
        from.to_string()
    } else {
        packet.origin.to_string()
    }
}

/// `o=<username> <sess-id> <sess-version> IN IP4 <address>` → the session's identity.
fn identity_of_origin_line(line: &str) -> Option<SessionIdentity> {
    let mut fields = line.strip_prefix("o=")?.split_whitespace();
    let username = fields.next()?.to_owned();
    let session_id = fields.next()?.parse().ok()?;
    let _version = fields.next()?;
    let address = fields.nth(2)?.to_owned();
    Some(SessionIdentity {
        username,
        session_id,
        address,
    })
}

fn age_loop(shared: &Shared, halt: &Stop) {
    let mut events = Vec::new();
    let mut next = std::time::Instant::now();
    while !halt.requested() {
        // Short sleeps so a stop request is seen quickly; ageing itself needs only 1 s steps.
        thread::sleep(Duration::from_millis(100));
        if std::time::Instant::now() < next {
            continue;
        }
        next += TICK;
        shared.catalog().tick(monotonic_now(), &mut events);
        for event in events.drain(..) {
            shared.changed(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_lines_give_the_session_identity() {
        let id = identity_of_origin_line("o=- 345738 345740 IN IP4 192.168.2.153").expect("id");
        assert_eq!(id.username, "-");
        assert_eq!(id.session_id, 345_738);
        assert_eq!(id.address, "192.168.2.153");
        assert_eq!(identity_of_origin_line("o=jdoe x 1 IN IP4 10.0.0.1"), None);
        assert_eq!(identity_of_origin_line("s=nothing"), None);
        assert_eq!(identity_of_origin_line("o=- 1 1 IN IP4"), None);
    }
}
