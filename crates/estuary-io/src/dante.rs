//! A Dante device on the network (unofficial implementation): the ARC control server and
//! the mDNS records that make controllers (netaudio, Dante Controller) find it.
//!
//! The device's state lives in the engine's pure [`Device`]; this module owns the socket,
//! the responder thread and the mDNS publication, and calls back when the state changes so
//! the daemon can persist it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use estuary_engine::dante::subscriber::{BundleSlot, ChannelInfo};
use estuary_engine::dante::{Device, DeviceState};
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

/// DNS-SD types of the records a device publishes.
pub const ARC_SERVICE: &str = "_netaudio-arc._udp.local.";
pub const CHAN_SERVICE: &str = "_netaudio-chan._udp.local.";
pub const BUND_SERVICE: &str = "_netaudio-bund._udp.local.";
pub const CMC_SERVICE: &str = "_netaudio-cmc._udp.local.";

/// The CMC dialect answered on the CMC port.
const CMCP_VERSION: &str = "1.2.0";

/// The 8-byte device id of the device at `address` whose ARC port is `arc_port`: a 6-byte
/// locally administered pseudo-MAC (no vendor MAC is ours to claim) then two zero bytes, as
/// hardware sends its MAC then `0000`. The pseudo-MAC is `02`, the ARC port's offset from
/// 4440 (so two devices on one address differ), and the IPv4 address. CMC, conmon and the
/// `_netaudio-cmc` record carry it; controllers read its first six bytes as the device's MAC
/// and take two devices with one MAC for one (netaudio 0.4.2 then refuses to route between
/// them as a self-connection), and netaudio sends no conmon request to a device whose id is
/// not a MAC + `0000`.
pub fn device_id(address: std::net::Ipv4Addr, arc_port: u16) -> [u8; 8] {
    let [a, b, c, d] = address.octets();
    let instance = arc_port.wrapping_sub(4440) as u8;
    [0x02, instance, a, b, c, d, 0, 0]
}

/// The ARC dialect we speak: netaudio 0.4.2 picks the legacy messages for 2.7.41 and
/// refuses routing for versions it does not know.
const ARCP_VERSION: &str = "2.7.41";

/// Where the device listens and what it publishes.
#[derive(Debug, Clone)]
pub struct DanteOptions {
    /// The address controllers and other devices reach us on (published in mDNS).
    pub address: IpAddr,
    /// ARC port (4440 on real devices; another one for a second device on one host).
    pub arc_port: u16,
    /// Flow-control port published in the channel records.
    pub flow_port: u16,
    /// CMC port published as `_netaudio-cmc` (8800 on real devices).
    pub cmc_port: u16,
    /// Only this interface for mDNS; `None` uses every interface.
    pub interface: Option<String>,
    /// The device's TX latency, published for receivers.
    pub latency: Duration,
    /// Multicast bundles the device transmits.
    pub bundles: Vec<TxBundle>,
}

/// A multicast bundle: TX channels sent together to one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxBundle {
    /// Its number (`<id>@<device>._netaudio-bund`, and `b.<id>` in the channel records).
    pub id: u16,
    /// TX channel per position of the frames, in order.
    pub channels: Vec<u16>,
    pub group: std::net::SocketAddrV4,
    /// Frames per packet.
    pub fpp: u16,
}

/// Why the device cannot run.
#[derive(Debug, thiserror::Error)]
pub enum DanteIoError {
    #[error("cannot bind the Dante ARC port {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("mDNS: {0}")]
    Mdns(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn mdns_err(e: mdns_sd::Error) -> DanteIoError {
    DanteIoError::Mdns(e.to_string())
}

/// Called with the new state after a controller changed it.
pub type OnChange = Box<dyn FnMut(&DeviceState) + Send>;

/// A running device: the ARC responder thread and the mDNS records.
pub struct DanteServer {
    device: Arc<Mutex<Device>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    mdns: ServiceDaemon,
}

impl std::fmt::Debug for DanteServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DanteServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl DanteServer {
    /// Binds the ARC port, publishes the device and answers controllers until dropped.
    ///
    /// # Errors
    /// The port is taken, or the mDNS responder cannot start.
    pub fn start(
        device: Device,
        options: DanteOptions,
        on_change: OnChange,
    ) -> Result<DanteServer, DanteIoError> {
        let addr = SocketAddr::new(options.address, options.arc_port);
        let socket = UdpSocket::bind(addr).map_err(|source| DanteIoError::Bind { addr, source })?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let local_addr = socket.local_addr()?;
        let mut publisher = Publisher::new(&options, local_addr.port())?;
        publisher.publish(&device)?;
        let mdns = publisher.daemon.clone();
        let device = Arc::new(Mutex::new(device));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (device, stop) = (Arc::clone(&device), Arc::clone(&stop));
            thread::Builder::new()
                .name("dante-arc".into())
                .spawn(move || serve(&socket, &device, &stop, publisher, on_change))?
        };
        Ok(DanteServer {
            device,
            stop,
            thread: Some(thread),
            local_addr,
            mdns,
        })
    }

    /// The shared device (the receiver reports subscription statuses into it).
    pub fn shared_device(&self) -> Arc<Mutex<Device>> {
        Arc::clone(&self.device)
    }

    /// Starts following the TX channels other devices publish (`_netaudio-chan`).
    ///
    /// # Errors
    /// The mDNS browse cannot start.
    pub fn browse_channels(&self) -> Result<ChannelDirectory, DanteIoError> {
        let channels = self.follow(CHAN_SERVICE, "dante-browse", |r| {
            let ipv4 = r.addresses.iter().find_map(|a| match a.to_ip_addr() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })?;
            let mut info = ChannelInfo::from_record(ipv4, r.port, |k| {
                r.txt_properties.get_property_val_str(k)
            })?;
            info.bundle =
                BundleSlot::from_txt(r.txt_properties.iter().map(|p| (p.key(), p.val_str())));
            Some(info)
        })?;
        // Multicast bundles: group, port and channel count by `<id>@<device>`.
        let bundles = self.follow(BUND_SERVICE, "dante-bundles", |r| {
            BundleSlot::group_from_record(|k| r.txt_properties.get_property_val_str(k))
        })?;
        Ok(ChannelDirectory { channels, bundles })
    }

    /// Keeps a map of one service's records by instance name, parsed by `parse` (records it
    /// rejects are skipped), while the responder runs: its browse thread ends by itself when
    /// the responder shuts down and drops its sender.
    fn follow<T: Send + 'static>(
        &self,
        service: &str,
        thread_name: &str,
        parse: impl Fn(&mdns_sd::ResolvedService) -> Option<T> + Send + 'static,
    ) -> Result<Records<T>, DanteIoError> {
        let events = self.mdns.browse(service).map_err(mdns_err)?;
        let records: Records<T> = Arc::default();
        let map = Arc::clone(&records);
        thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                while let Ok(event) = events.recv() {
                    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                    match event {
                        ServiceEvent::ServiceResolved(r) => {
                            let name =
                                crate::ravenna::mdns::instance_name(&r.fullname, &r.ty_domain);
                            match parse(&r) {
                                Some(record) => {
                                    map.insert(name, record);
                                }
                                None => tracing::debug!(%name, %r.ty_domain, "record ignored"),
                            }
                        }
                        ServiceEvent::ServiceRemoved(ty, fullname) => {
                            map.remove(&crate::ravenna::mdns::instance_name(&fullname, &ty));
                        }
                        _ => {}
                    }
                }
            })?;
        Ok(records)
    }

    /// The device's current state (for the API).
    pub fn device(&self) -> MutexGuard<'_, Device> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for DanteServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    socket: &UdpSocket,
    device: &Mutex<Device>,
    stop: &AtomicBool,
    mut publisher: Publisher,
    mut on_change: OnChange,
) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Acquire) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Dante ARC socket failed");
                thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let mut d = device.lock().unwrap_or_else(|e| e.into_inner());
        let (reply, changes) = d.handle_arc(&buf[..len]);
        if let Some(reply) = reply
            && let Err(e) = socket.send_to(&reply, from)
        {
            tracing::debug!(error = %e, %from, "Dante ARC reply not sent");
        }
        if changes.device_name || changes.tx_names {
            tracing::info!(name = d.name(), "Dante device renamed; publishing again");
            if let Err(e) = publisher.publish(&d) {
                tracing::warn!(error = %e, "Dante mDNS records not published");
            }
        }
        if changes.any() {
            on_change(&d.state());
        }
    }
    publisher.withdraw();
}

/// The multicast groups other devices' bundles use (`_netaudio-bund` records heard within
/// `listen`, a device's own records named `<id>@<own_device>` excepted): what a device
/// claiming a group for a new bundle must avoid. Dante's reference devices probe for
/// 3 × 400 ms before taking a group. A record found but not yet resolved (its TXT holds the
/// group) extends the wait, up to [`BUNDLE_RESOLVE_LIMIT`].
///
/// # Errors
/// The mDNS responder cannot start.
pub fn bundle_groups_in_use(
    interface: Option<&str>,
    own_device: &str,
    listen: Duration,
) -> Result<Vec<std::net::Ipv4Addr>, DanteIoError> {
    let daemon = crate::ravenna::mdns_responder(interface).map_err(mdns_err)?;
    let events = daemon.browse(BUND_SERVICE).map_err(mdns_err)?;
    let own = format!("@{own_device}");
    let start = std::time::Instant::now();
    let mut pending: Vec<String> = Vec::new();
    let mut groups = Vec::new();
    loop {
        let until = if pending.is_empty() {
            start + listen
        } else {
            start + BUNDLE_RESOLVE_LIMIT.max(listen)
        };
        let Some(left) = until.checked_duration_since(std::time::Instant::now()) else {
            break;
        };
        let Ok(event) = events.recv_timeout(left) else {
            break;
        };
        match event {
            ServiceEvent::ServiceFound(_, fullname) => {
                let ty = BUND_SERVICE;
                let name = crate::ravenna::mdns::instance_name(&fullname, ty);
                if !name.ends_with(&own) && !pending.contains(&fullname) {
                    pending.push(fullname);
                }
            }
            ServiceEvent::ServiceResolved(r) => {
                pending.retain(|f| *f != r.fullname);
                let name = crate::ravenna::mdns::instance_name(&r.fullname, &r.ty_domain);
                if name.ends_with(&own) {
                    continue;
                }
                if let Some((group, _)) =
                    BundleSlot::group_from_record(|k| r.txt_properties.get_property_val_str(k))
                    && !groups.contains(group.ip())
                {
                    groups.push(*group.ip());
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => pending.retain(|f| *f != fullname),
            _ => {}
        }
    }
    let _ = daemon.shutdown();
    Ok(groups)
}

/// The longest [`bundle_groups_in_use`] waits for a bundle record it found to resolve.
pub const BUNDLE_RESOLVE_LIMIT: Duration = Duration::from_secs(10);

/// Multicast bundles found on the network: (group, channel count) by `<id>@<device>`.
/// Records of one mDNS service by instance name.
type Records<T> = Arc<Mutex<HashMap<String, T>>>;

/// TX channels found on the network, by `channel@device`.
#[derive(Debug, Clone)]
pub struct ChannelDirectory {
    channels: Records<ChannelInfo>,
    bundles: Records<(SocketAddrV4, u16)>,
}

impl ChannelDirectory {
    /// A TX channel's record; for a channel in a multicast bundle, only once the bundle's
    /// record (its group) is known too.
    pub fn lookup(&self, channel: &str, device: &str) -> Option<ChannelInfo> {
        let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let mut info = map.get(&format!("{channel}@{device}")).cloned()?;
        if let Some(bundle) = info.bundle.as_mut() {
            let bundles = self.bundles.lock().unwrap_or_else(|e| e.into_inner());
            bundle.group = Some(*bundles.get(&format!("{}@{device}", bundle.id))?);
        }
        Some(info)
    }
}

/// The device's mDNS records.
struct Publisher {
    daemon: ServiceDaemon,
    options: DanteOptions,
    arc_port: u16,
    registered: Vec<String>,
}

impl Publisher {
    fn new(options: &DanteOptions, arc_port: u16) -> Result<Publisher, DanteIoError> {
        let daemon =
            crate::ravenna::mdns_responder(options.interface.as_deref()).map_err(mdns_err)?;
        Ok(Publisher {
            daemon,
            options: options.clone(),
            arc_port,
            registered: Vec::new(),
        })
    }

    fn register(
        &mut self,
        ty: &str,
        instance: &str,
        host: &str,
        port: u16,
        txt: HashMap<String, String>,
    ) -> Result<(), DanteIoError> {
        let info = ServiceInfo::new(ty, instance, host, self.options.address, port, txt)
            .map_err(mdns_err)?;
        self.registered.push(info.get_fullname().to_owned());
        self.daemon.register(info).map_err(mdns_err)
    }

    /// Publishes the device as it is now and withdraws the records it no longer has (every
    /// record carries the device name, so a device rename replaces them all). A record that
    /// stays is registered again in place, not withdrawn first: withdrawn and re-announced
    /// at once, it met its own goodbye and the responder renamed the host `NAME (2)`.
    fn publish(&mut self, device: &Device) -> Result<(), DanteIoError> {
        let before = std::mem::take(&mut self.registered);
        let result = self.publish_records(device);
        for fullname in before.iter().filter(|f| !self.registered.contains(f)) {
            if let Ok(done) = self.daemon.unregister(fullname) {
                let _ = done.recv_timeout(Duration::from_millis(500));
            }
        }
        result
    }

    fn publish_records(&mut self, device: &Device) -> Result<(), DanteIoError> {
        let name = device.name().to_owned();
        // One host name per device: controllers group a device's services by SRV target.
        let host = format!("{name}.local.");
        let spec = device.spec();
        let txt = |pairs: &[(&str, String)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let arc = txt(&[
            ("arcp_vers", ARCP_VERSION.into()),
            ("arcp_min", "0.2.4".into()),
            ("router_vers", "4.0.2".into()),
            ("router_info", spec.board.clone()),
            ("mf", "Estuary".into()),
            ("model", "_0000000000000001".into()),
        ]);
        self.register(ARC_SERVICE, &name, &host, self.arc_port, arc)?;
        if let IpAddr::V4(v4) = self.options.address {
            let id: String = device_id(v4, self.options.arc_port)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let cmc = txt(&[
                ("id", id),
                // The process id conmon messages carry (0: netaudio drops any other).
                ("process", "0".into()),
                ("cmcp_vers", CMCP_VERSION.into()),
                ("cmcp_min", "1.0.0".into()),
                ("server_vers", "4.0.2".into()),
                ("channels", "0x6000004d".into()),
                ("mf", "Estuary".into()),
                ("model", "_0000000000000001".into()),
            ]);
            self.register(CMC_SERVICE, &name, &host, self.options.cmc_port, cmc)?;
        }
        let bytes = (spec.format.bits / 8).max(2);
        let nchan = spec.max_channels_per_flow.min(spec.tx_channels).max(1);
        let latency_ns = self.options.latency.as_nanos().to_string();
        for (number, factory, friendly) in device.tx_channels() {
            let mut record = txt(&[
                ("txtvers", "2".into()),
                ("dbcp1", "0x1102".into()),
                ("dbcp", "0x1004".into()),
                ("id", number.to_string()),
                ("rate", spec.format.sample_rate.to_string()),
                ("pcm", format!("{bytes} e")),
                ("enc", spec.format.bits.to_string()),
                ("en", spec.format.bits.to_string()),
                ("latency_ns", latency_ns.clone()),
                ("fpp", "32,2".into()),
                ("nchan", nchan.to_string()),
            ]);
            for bundle in &self.options.bundles {
                if let Some(pos) = bundle.channels.iter().position(|&c| c == number) {
                    record.insert(format!("b.{}", bundle.id), (pos + 1).to_string());
                }
            }
            let mut factory_record = record.clone();
            factory_record.insert("default".into(), String::new());
            let port = self.options.flow_port;
            self.register(
                CHAN_SERVICE,
                &format!("{factory}@{name}"),
                &host,
                port,
                factory_record,
            )?;
            if let Some(friendly) = friendly.filter(|f| *f != factory) {
                record.remove("default");
                self.register(
                    CHAN_SERVICE,
                    &format!("{friendly}@{name}"),
                    &host,
                    port,
                    record,
                )?;
            }
        }
        for bundle in self.options.bundles.clone() {
            let record = txt(&[
                ("txtvers", "1".into()),
                ("id", bundle.id.to_string()),
                ("nchan", bundle.channels.len().to_string()),
                ("latency_ns", latency_ns.clone()),
                ("fpp", bundle.fpp.to_string()),
                ("rate", spec.format.sample_rate.to_string()),
                ("enc", spec.format.bits.to_string()),
                ("a.0", bundle.group.ip().to_string()),
                ("p.0", bundle.group.port().to_string()),
            ]);
            self.register(
                BUND_SERVICE,
                &format!("{}@{name}", bundle.id),
                &host,
                self.options.flow_port,
                record,
            )?;
        }
        Ok(())
    }

    fn withdraw(&mut self) {
        for fullname in self.registered.drain(..) {
            if let Ok(done) = self.daemon.unregister(&fullname) {
                let _ = done.recv_timeout(Duration::from_millis(500));
            }
        }
    }
}
