//! The one transmit thread of every AES67 output: a deadline schedule on the media clock.
//!
//! Each output ([`Aes67Worker`]) knows when its next packet is due. The thread sleeps
//! (`clock_nanosleep`, absolute) until the earliest deadline of all of them, lets every
//! output queue the packets due by then into per-socket [`SendBatch`]es, and hands each
//! batch to the kernel with one `sendmmsg`. Outputs that share an interface, TTL and DSCP
//! share one unconnected socket (each datagram names its destination), so N streams on the
//! same packet grid cost one wake-up and one system call per packet time, not 2N.
//! Timelines start on their packet-time grid, which is what puts streams on the same ticks.
//!
//! Outputs come and go with their routes: [`register`] hands a worker over; the thread
//! drops it once the route's halt is requested and answers the [`Registration`].
//!
//! Generator inputs run here too ([`register_generator`]): after the packets of a tick are
//! out, the thread makes the frames of any generator tick due within a millisecond, so a
//! generated stream costs no thread and no wake-up of its own, and a generator never
//! delays a packet.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::Duration;

use estuary_engine::time::MonoTime;
use estuary_io::clock::{monotonic_now, set_timer_slack, sleep_until};
use estuary_io::mcast::{self, Interface};
use estuary_io::sched;
use estuary_io::sendbatch::SendBatch;

use super::Registration;
use super::aes67::Aes67Worker;
use super::generator::Generator;

/// Datagrams per `sendmmsg`: 64 streams of one tick in one call.
const BATCH_SLOTS: usize = 64;
/// Largest datagram: an Ethernet MTU's worth of RTP (AES67 packets never fragment).
const SLOT_BYTES: usize = 1500;
/// How long the thread naps when it has no output at all.
const IDLE: Duration = Duration::from_millis(200);

/// One socket's pending datagrams, and whom to charge for the ones the kernel refuses.
pub(super) struct Batch {
    socket: Arc<UdpSocket>,
    send: SendBatch,
    /// The output (index in the thread's list) of each queued datagram.
    owners: Vec<usize>,
    /// Outputs charged one send error each since the last tick, filled at flush.
    refused: Vec<usize>,
}

impl Batch {
    fn new(socket: Arc<UdpSocket>) -> Self {
        Self {
            socket,
            send: SendBatch::new(BATCH_SLOTS, SLOT_BYTES),
            owners: Vec::with_capacity(BATCH_SLOTS),
            refused: Vec::with_capacity(BATCH_SLOTS),
        }
    }

    /// Queues `datagram` to `dest` for output `owner`; a full batch goes out first.
    pub fn push(
        &mut self,
        owner: usize,
        dest: &estuary_io::sendbatch::SockAddr,
        datagram: &[u8],
    ) -> bool {
        if self.send.is_full() {
            self.flush();
        }
        let queued = self.send.push(dest, datagram);
        if queued {
            self.owners.push(owner);
        }
        queued
    }

    fn flush(&mut self) {
        if self.send.is_empty() {
            return;
        }
        let owners = &self.owners;
        let refused = &mut self.refused;
        self.send.flush(&*self.socket, |slot, _errno| {
            if let Some(&owner) = owners.get(slot)
                && refused.len() < refused.capacity()
            {
                refused.push(owner);
            }
        });
        self.owners.clear();
    }
}

/// Where one leg of an output goes: the batch of its socket and the destination.
pub(super) struct Leg {
    pub socket: Arc<UdpSocket>,
    pub dest: estuary_io::sendbatch::SockAddr,
    /// Index of the socket's batch, set when the thread adopts the output.
    pub batch: usize,
}

/// Answered when the transmit thread has let go of an output.
struct Adopted {
    worker: Aes67Worker,
    released: Sender<()>,
}

struct AdoptedGenerator {
    generator: Generator,
    released: Sender<()>,
    /// When its next tick is due.
    next: MonoTime,
}

struct TxThread {
    inbox: Mutex<Vec<Adopted>>,
    generators: Mutex<Vec<AdoptedGenerator>>,
    arrived: AtomicBool,
    thread: Thread,
}

static TX: OnceLock<TxThread> = OnceLock::new();

fn tx_thread() -> &'static TxThread {
    TX.get_or_init(|| {
        let thread = super::spawn_shared("aes67-tx", run);
        TxThread {
            inbox: Mutex::new(Vec::new()),
            generators: Mutex::new(Vec::new()),
            arrived: AtomicBool::new(false),
            thread,
        }
    })
}

/// Hands `worker` to the transmit thread. Returns the answer for when it lets go, and the
/// thread to wake when audio arrives (waking it costs nothing: it sleeps on its deadlines).
pub(super) fn register(worker: Aes67Worker) -> (Registration, Thread) {
    let tx = tx_thread();
    let (released, registration) = Registration::new(tx.thread.clone());
    super::lock(&tx.inbox).push(Adopted { worker, released });
    tx.arrived.store(true, Ordering::Release);
    tx.thread.unpark();
    (registration, tx.thread.clone())
}

/// Hands a generator input to the transmit thread, which makes its frames until the
/// route's halt is requested.
pub(super) fn register_generator(generator: Generator) -> Registration {
    let tx = tx_thread();
    let (released, registration) = Registration::new(tx.thread.clone());
    super::lock(&tx.generators).push(AdoptedGenerator {
        generator,
        released,
        next: MonoTime::from_nanos(0),
    });
    tx.arrived.store(true, Ordering::Release);
    tx.thread.unpark();
    registration
}

fn run() {
    super::realtime(sched::OUTPUT_PRIORITY);
    if let Err(e) = set_timer_slack(Duration::from_nanos(1)) {
        tracing::debug!(error = %e, "timer slack unchanged");
    }
    let mut outputs: Vec<Adopted> = Vec::new();
    let mut generators: Vec<AdoptedGenerator> = Vec::new();
    let mut batches: Vec<Batch> = Vec::new();
    let mut wake = MonoTime::from_nanos(0);
    loop {
        let Some(tx) = TX.get() else {
            thread::park_timeout(IDLE);
            continue;
        };
        let mut changed = false;
        if tx.arrived.swap(false, Ordering::Acquire) {
            outputs.append(&mut super::lock(&tx.inbox));
            generators.append(&mut super::lock(&tx.generators));
            changed = true;
        }
        let before = outputs.len();
        outputs.retain_mut(|o| {
            if !o.worker.halted() {
                return true;
            }
            o.worker.finish();
            let _ = o.released.send(());
            false
        });
        generators.retain(|g| {
            let keep = !g.generator.halted();
            if !keep {
                let _ = g.released.send(());
            }
            keep
        });
        if changed || outputs.len() != before {
            batches = adopt(&mut outputs);
        }
        if outputs.is_empty() && generators.is_empty() {
            thread::park_timeout(IDLE);
            continue;
        }
        if changed {
            // A new generator's first frames, or a new output's first look at its ring.
            wake = monotonic_now();
        }
        sleep_until(wake);
        let now = monotonic_now();
        // A generator whose tick is already past (the thread was held up) catches up
        // first: the packets owed since then need its frames.
        for g in &mut generators {
            if g.next <= now {
                g.next = g.generator.step(now);
            }
        }
        let mut next = MonoTime::from_nanos(u64::MAX);
        for (i, o) in outputs.iter_mut().enumerate() {
            next = next.min(o.worker.step(now, i, &mut batches));
        }
        for batch in &mut batches {
            batch.flush();
            for owner in batch.refused.drain(..) {
                if let Some(o) = outputs.get_mut(owner) {
                    o.worker.count_send_error();
                }
            }
        }
        // After the packets: the generators are a tick ahead, and their work (tens of µs
        // for many streams) must not delay a send.
        let now = monotonic_now();
        for g in &mut generators {
            g.next = g.generator.step(now);
            next = next.min(g.next);
        }
        wake = next;
    }
}

/// One batch per distinct socket of `outputs`, and each leg pointed at its socket's.
fn adopt(outputs: &mut [Adopted]) -> Vec<Batch> {
    let mut batches: Vec<Batch> = Vec::new();
    for o in outputs.iter_mut() {
        for leg in o.worker.legs_mut() {
            leg.batch = match batches
                .iter()
                .position(|b| Arc::ptr_eq(&b.socket, &leg.socket))
            {
                Some(i) => i,
                None => {
                    batches.push(Batch::new(Arc::clone(&leg.socket)));
                    batches.len() - 1
                }
            };
        }
    }
    batches
}

/// What makes two legs able to share a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SocketKey {
    ipv6: bool,
    interface: Option<(u32, Option<std::net::Ipv4Addr>)>,
    ttl: u32,
    dscp: u8,
}

static SOCKETS: Mutex<Vec<(SocketKey, Weak<UdpSocket>)>> = Mutex::new(Vec::new());

/// A send socket for `dest` through `iface` with `ttl` and `dscp`, shared with every other
/// output that has the same settings while any of them runs.
pub(super) fn shared_socket(
    dest: SocketAddr,
    iface: Option<&Interface>,
    ttl: u32,
    dscp: u8,
) -> std::io::Result<Arc<UdpSocket>> {
    let key = SocketKey {
        ipv6: dest.is_ipv6(),
        interface: iface.map(|i| (i.index, i.ipv4)),
        ttl,
        dscp,
    };
    let mut pool = super::lock(&SOCKETS);
    pool.retain(|(_, weak)| weak.strong_count() > 0);
    if let Some(socket) = pool
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, weak)| weak.upgrade())
    {
        return Ok(socket);
    }
    let socket = Arc::new(mcast::open_shared_send_socket(dest, iface, ttl, dscp)?);
    pool.push((key, Arc::downgrade(&socket)));
    Ok(socket)
}
