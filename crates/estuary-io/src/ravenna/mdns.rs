//! DNS-SD over mDNS (RFC 6762, RFC 6763) for RAVENNA sessions, with `mdns-sd`.
//!
//! RAVENNA announces every session as an instance of `_rtsp._tcp.local.` named after the
//! session, and also under the subtype `_ravenna_session` (RFC 6763 §7.1), so a receiver
//! can ask only for sessions and skip other RTSP services (a device's own
//! `_ravenna._sub._http._tcp` web page, cameras).
//!
//! `mdns-sd` runs its own responder thread on UDP 5353. It shares the port with
//! avahi-daemon through SO_REUSEPORT (both bind with it), as the tests check.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

use super::{RavennaError, by_name_path};

/// DNS-SD service type of RTSP servers, RAVENNA sessions among them.
pub const RTSP_SERVICE: &str = "_rtsp._tcp.local.";
/// The RAVENNA session subtype of [`RTSP_SERVICE`].
pub const RAVENNA_SESSION_SUBTYPE: &str = "_ravenna_session._sub._rtsp._tcp.local.";

/// Starts an mDNS responder on `interface` only, or on every interface.
///
/// # Errors
/// The responder cannot start or the interface is unknown.
pub fn responder(interface: Option<&str>) -> Result<ServiceDaemon, mdns_sd::Error> {
    let daemon = ServiceDaemon::new()?;
    if let Some(name) = interface {
        daemon.disable_interface(IfKind::All)?;
        daemon.enable_interface(IfKind::Name(name.to_owned()))?;
    }
    Ok(daemon)
}

/// Where the mDNS responder runs.
#[derive(Debug, Clone, Default)]
pub struct MdnsOptions {
    /// Only this interface (by name); `None` uses every interface, loopback included.
    pub interface: Option<String>,
    /// Host label we publish as `<label>.local.`; `None` uses `estuary-<hostname>`, so
    /// that we never contend for the name avahi-daemon already holds for the machine.
    pub host_label: Option<String>,
    /// Addresses we publish; empty publishes the addresses of the enabled interfaces.
    pub addresses: Vec<IpAddr>,
}

impl MdnsOptions {
    fn daemon(&self) -> Result<ServiceDaemon, RavennaError> {
        responder(self.interface.as_deref()).map_err(mdns_err)
    }

    fn host_name(&self) -> String {
        let label = self.host_label.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host = host.trim();
            if host.is_empty() {
                "estuary".to_owned()
            } else {
                format!("estuary-{host}")
            }
        });
        format!("{label}.local.")
    }
}

fn mdns_err(e: mdns_sd::Error) -> RavennaError {
    RavennaError::Mdns(e.to_string())
}

/// One RTSP service instance resolved on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RavennaService {
    /// Instance name, unescaped: for RAVENNA, the session name.
    pub name: String,
    /// True when found under the `_ravenna_session` subtype.
    pub ravenna_session: bool,
    /// Target host, e.g. `device.local.`.
    pub host: String,
    /// Addresses of the host, IPv4 first.
    pub addresses: Vec<IpAddr>,
    /// RTSP port.
    pub port: u16,
}

impl RavennaService {
    /// Where to send `DESCRIBE`: the first address (IPv4 preferred) and the port.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.addresses
            .first()
            .map(|a| SocketAddr::new(*a, self.port))
    }

    /// The RTSP path of the session, `/by-name/<name>`.
    pub fn rtsp_path(&self) -> String {
        by_name_path(&self.name)
    }
}

/// What a [`RavennaBrowser`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RavennaEvent {
    /// An instance was resolved (again, when its records change).
    Found(RavennaService),
    /// An instance said goodbye or expired.
    Removed {
        /// Instance name, unescaped.
        name: String,
        /// True for the `_ravenna_session` subtype browse.
        ravenna_session: bool,
    },
}

/// Browses `_rtsp._tcp` and its `_ravenna_session` subtype; poll it for events.
pub struct RavennaBrowser {
    daemon: ServiceDaemon,
    events: mpsc::Receiver<RavennaEvent>,
}

impl RavennaBrowser {
    /// Starts an mDNS responder and both browses.
    ///
    /// # Errors
    /// The responder cannot start (no usable interface, port 5353 refused).
    pub fn new(options: &MdnsOptions) -> Result<Self, RavennaError> {
        let daemon = options.daemon()?;
        let (tx, events) = mpsc::channel();
        for (ty, ravenna_session) in [(RTSP_SERVICE, false), (RAVENNA_SESSION_SUBTYPE, true)] {
            let rx = daemon.browse(ty).map_err(mdns_err)?;
            let tx = tx.clone();
            // Ends by itself when the daemon shuts down and drops its sender.
            std::thread::Builder::new()
                .name("mdns-browse".into())
                .spawn(move || {
                    while let Ok(ev) = rx.recv() {
                        let Some(ev) = convert(ev, ravenna_session) else {
                            continue;
                        };
                        if tx.send(ev).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| RavennaError::Mdns(format!("cannot start browse thread: {e}")))?;
        }
        Ok(Self { daemon, events })
    }

    /// The next event, if one is waiting.
    pub fn try_recv(&self) -> Option<RavennaEvent> {
        self.events.try_recv().ok()
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<RavennaEvent> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl std::fmt::Debug for RavennaBrowser {
    // `ServiceDaemon` has no Debug of its own.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RavennaBrowser").finish_non_exhaustive()
    }
}

impl Drop for RavennaBrowser {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

fn convert(ev: ServiceEvent, ravenna_session: bool) -> Option<RavennaEvent> {
    match ev {
        ServiceEvent::ServiceResolved(r) => {
            let mut addresses: Vec<IpAddr> = r.addresses.iter().map(|a| a.to_ip_addr()).collect();
            // IPv4 first, then stable order, so `socket_addr` is deterministic.
            addresses.sort_by_key(|a| (a.is_ipv6(), *a));
            Some(RavennaEvent::Found(RavennaService {
                name: instance_name(&r.fullname, &r.ty_domain),
                ravenna_session,
                host: r.host.clone(),
                addresses,
                port: r.port,
            }))
        }
        ServiceEvent::ServiceRemoved(ty, fullname) => Some(RavennaEvent::Removed {
            name: instance_name(&fullname, &ty),
            ravenna_session,
        }),
        _ => None,
    }
}

/// The instance label of `<instance>.<service type>`, with DNS escapes (`\.`, `\\`,
/// `\DDD`, RFC 1035 §5.1) undone.
pub(crate) fn instance_name(fullname: &str, ty_domain: &str) -> String {
    // A subtype browse may report the subtype domain; the instance sits before the
    // service type either way.
    let base = ty_domain
        .rsplit_once("._sub.")
        .map_or(ty_domain, |(_, base)| base);
    let label = fullname
        .strip_suffix(base)
        .map_or(fullname, |l| l.strip_suffix('.').unwrap_or(l));
    unescape(label)
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let decimal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u8>().ok());
        match (decimal, bytes.get(i + 1)) {
            (Some(v), _) => {
                out.push(v);
                i += 4;
            }
            (None, Some(&next)) => {
                out.push(next);
                i += 2;
            }
            (None, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Announces our sessions as `_rtsp._tcp` instances with the `_ravenna_session` subtype;
/// says goodbye for all of them on drop.
pub struct RavennaPublisher {
    daemon: ServiceDaemon,
    options: MdnsOptions,
    /// Session name → DNS-SD full name.
    published: BTreeMap<String, String>,
}

impl RavennaPublisher {
    /// Starts an mDNS responder.
    ///
    /// # Errors
    /// The responder cannot start.
    pub fn new(options: &MdnsOptions) -> Result<Self, RavennaError> {
        Ok(Self {
            daemon: options.daemon()?,
            options: options.clone(),
            published: BTreeMap::new(),
        })
    }

    /// Announces (or re-announces) session `name` served by our RTSP server on `port`.
    ///
    /// # Errors
    /// The name is not a valid DNS-SD instance name (over 63 bytes), or the responder
    /// has stopped.
    pub fn publish(&mut self, name: &str, port: u16) -> Result<(), RavennaError> {
        let host = self.options.host_name();
        let addrs: &[IpAddr] = &self.options.addresses;
        let info = ServiceInfo::new(
            RAVENNA_SESSION_SUBTYPE,
            name,
            &host,
            addrs,
            port,
            HashMap::<String, String>::new(),
        )
        .map_err(mdns_err)?;
        let info = if addrs.is_empty() {
            info.enable_addr_auto()
        } else {
            info
        };
        let fullname = info.get_fullname().to_owned();
        self.daemon.register(info).map_err(mdns_err)?;
        self.published.insert(name.to_owned(), fullname);
        Ok(())
    }

    /// Withdraws session `name` (goodbye packets, RFC 6762 §10.1); false if unknown.
    ///
    /// # Errors
    /// The responder has stopped.
    pub fn unpublish(&mut self, name: &str) -> Result<bool, RavennaError> {
        let Some(fullname) = self.published.remove(name) else {
            return Ok(false);
        };
        let done = self.daemon.unregister(&fullname).map_err(mdns_err)?;
        // The goodbye is sent at once; wait a little so a drop right after still sends it.
        let _ = done.recv_timeout(Duration::from_secs(1));
        Ok(true)
    }

    /// Names currently announced.
    pub fn published(&self) -> impl Iterator<Item = &str> {
        self.published.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for RavennaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RavennaPublisher")
            .field("options", &self.options)
            .field("published", &self.published)
            .finish_non_exhaustive()
    }
}

impl Drop for RavennaPublisher {
    fn drop(&mut self) {
        let names: Vec<String> = self.published.keys().cloned().collect();
        for name in names {
            let _ = self.unpublish(&name);
        }
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_unescape() {
        assert_eq!(
            instance_name("Anubis Combo LR._rtsp._tcp.local.", RTSP_SERVICE),
            "Anubis Combo LR"
        );
        assert_eq!(
            instance_name("mic8-12\\.a._rtsp._tcp.local.", RAVENNA_SESSION_SUBTYPE),
            "mic8-12.a"
        );
        assert_eq!(unescape("a\\032b\\\\"), "a b\\");
    }
}
