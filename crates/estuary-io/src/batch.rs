//! Batched UDP receive (`recvmmsg`) with kernel arrival timestamps, and an epoll
//! wrapper for a thread that serves many sockets.
//!
//! A [`BatchReceiver`] allocates every buffer once; [`BatchReceiver::recv`] performs one
//! system call and never allocates, so it is usable on the receive thread.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use estuary_engine::time::MonoTime;

use crate::clock::{monotonic_now, realtime_now_ns};

/// Bytes per slot: more than an Ethernet MTU, so an AES67 packet is never truncated.
pub const SLOT_BYTES: usize = 2048;

/// Control-message space per slot, in `u64`s (8-byte aligned like `cmsghdr`).
/// `CMSG_SPACE(sizeof(struct timespec))` is 32 bytes; 64 leaves room for one more.
const CMSG_WORDS: usize = 8;

/// One datagram from the last [`BatchReceiver::recv`].
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// Payload (at most the slot size; see `truncated`).
    pub data: &'a [u8],
    /// Sender's address (`0.0.0.0:0` if the kernel gave none).
    pub source: SocketAddr,
    /// Arrival time on `CLOCK_MONOTONIC`: the kernel's `SO_TIMESTAMPNS` receive time
    /// when present, else the time of the `recv` call.
    pub arrival: MonoTime,
    /// `arrival` came from the kernel timestamp (not the fallback).
    pub kernel_timestamp: bool,
    /// The datagram was larger than the slot (`MSG_TRUNC`) and `data` is cut short.
    pub truncated: bool,
}

/// Reusable buffers for `recvmmsg(2)`: N slots of [`SLOT_BYTES`].
pub struct BatchReceiver {
    slot_bytes: usize,
    buffers: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    control: Box<[u64]>,
    headers: Box<[libc::mmsghdr]>,
    count: usize,
    /// `CLOCK_REALTIME − CLOCK_MONOTONIC` in ns, measured at the last `recv`.
    realtime_offset_ns: i128,
    /// `CLOCK_MONOTONIC` right after the last `recv` returned.
    recv_time: MonoTime,
}

// SAFETY: the raw pointers inside `iovecs` and `headers` only ever point into the
// boxed buffers owned by this same struct (boxes do not move their heap data when the
// struct moves), and they are rewritten before every use. Nothing is shared with
// another thread, so moving the whole receiver to another thread is sound.
unsafe impl Send for BatchReceiver {}

impl std::fmt::Debug for BatchReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchReceiver")
            .field("slots", &self.headers.len())
            .field("slot_bytes", &self.slot_bytes)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl BatchReceiver {
    /// `slots` datagrams per call, [`SLOT_BYTES`] each.
    pub fn new(slots: usize) -> Self {
        Self::with_slot_size(slots, SLOT_BYTES)
    }

    /// `slots` datagrams per call, `slot_bytes` each (both at least 1).
    pub fn with_slot_size(slots: usize, slot_bytes: usize) -> Self {
        let slots = slots.max(1);
        let slot_bytes = slot_bytes.max(1);
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which
        // all-zero bytes (null pointers, zero lengths) are valid values.
        let zero_name: libc::sockaddr_storage = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let zero_iov: libc::iovec = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        Self {
            slot_bytes,
            buffers: vec![0u8; slots * slot_bytes].into_boxed_slice(),
            names: vec![zero_name; slots].into_boxed_slice(),
            iovecs: vec![zero_iov; slots].into_boxed_slice(),
            control: vec![0u64; slots * CMSG_WORDS].into_boxed_slice(),
            headers: vec![zero_hdr; slots].into_boxed_slice(),
            count: 0,
            realtime_offset_ns: 0,
            recv_time: MonoTime::from_nanos(0),
        }
    }

    /// Number of slots (maximum datagrams per [`recv`](Self::recv)).
    pub fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// Receives up to [`capacity`](Self::capacity) datagrams with ONE nonblocking
    /// `recvmmsg` call. Returns how many arrived: 0 when none was waiting (`EAGAIN`)
    /// or the call was interrupted. Read them with [`packets`](Self::packets).
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.count = 0;
        let slots = self.headers.len();
        for i in 0..slots {
            // SAFETY: i * slot_bytes + slot_bytes <= buffers.len() by construction,
            // so the pointer stays inside the allocation.
            let base = unsafe { self.buffers.as_mut_ptr().add(i * self.slot_bytes) };
            self.iovecs[i] = libc::iovec {
                iov_base: base.cast(),
                iov_len: self.slot_bytes,
            };
            let hdr = &mut self.headers[i];
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = self.control[i * CMSG_WORDS..].as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = CMSG_WORDS * mem::size_of::<u64>();
            hdr.msg_hdr.msg_flags = 0;
        }
        let before_rt = realtime_now_ns();
        let before_mono = monotonic_now();
        // SAFETY: `headers` holds `slots` initialized mmsghdrs whose name, iovec and
        // control pointers refer to live buffers of the stated sizes owned by self;
        // the timeout pointer may be null.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.recv_time = monotonic_now();
        self.realtime_offset_ns = i128::from(before_rt) - i128::from(before_mono.as_nanos());
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                _ => Err(err),
            };
        }
        self.count = n as usize;
        Ok(self.count)
    }

    /// The datagrams of the last [`recv`](Self::recv), in arrival order.
    pub fn packets(&self) -> impl Iterator<Item = Received<'_>> + '_ {
        (0..self.count).map(move |i| self.packet(i))
    }

    fn packet(&self, i: usize) -> Received<'_> {
        let hdr = &self.headers[i];
        let len = (hdr.msg_len as usize).min(self.slot_bytes);
        let start = i * self.slot_bytes;
        let data = &self.buffers[start..start + len];
        let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let source = sockaddr_to_std(&self.names[i], hdr.msg_hdr.msg_namelen)
            .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
        let (arrival, kernel_timestamp) = match self.kernel_realtime_ns(hdr) {
            Some(rt) => {
                let mono = i128::from(rt) - self.realtime_offset_ns;
                // A timestamp after the call returned, or absurdly old, means the wall
                // clock was stepped in between: trust the call time instead.
                let recv = i128::from(self.recv_time.as_nanos());
                if mono <= recv && mono > recv - 10_000_000_000 {
                    (MonoTime::from_nanos(mono as u64), true)
                } else {
                    (self.recv_time, false)
                }
            }
            None => (self.recv_time, false),
        };
        Received {
            data,
            source,
            arrival,
            kernel_timestamp,
            truncated,
        }
    }

    /// The `SCM_TIMESTAMPNS` time (ns since the Unix epoch) of one received message.
    fn kernel_realtime_ns(&self, hdr: &libc::mmsghdr) -> Option<u64> {
        let msg = &hdr.msg_hdr;
        if msg.msg_controllen == 0 || msg.msg_control.is_null() {
            return None;
        }
        // SAFETY: msg_control/msg_controllen describe our own control buffer as filled
        // in by the kernel; the CMSG_* helpers stay within msg_controllen.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
        while !cmsg.is_null() {
            // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR return either null or a pointer to a
            // complete cmsghdr inside the control buffer.
            let c = unsafe { &*cmsg };
            if c.cmsg_level == libc::SOL_SOCKET
                && c.cmsg_type == libc::SCM_TIMESTAMPNS
                && c.cmsg_len as usize
                    // SAFETY: CMSG_LEN only computes a length.
                    >= unsafe { libc::CMSG_LEN(mem::size_of::<libc::timespec>() as u32) } as usize
            {
                // SAFETY: the length check above guarantees a timespec of data after
                // the header; it may be unaligned, hence read_unaligned.
                let ts: libc::timespec =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
                if ts.tv_sec < 0 || ts.tv_nsec < 0 {
                    return None;
                }
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            // SAFETY: `msg` and `cmsg` are valid as established above.
            cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
        }
        None
    }
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(ss.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family and length say the storage holds a sockaddr_in; the
            // storage is aligned for every sockaddr type.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Waits until `fd` is readable or `timeout` passes. Returns whether it is readable.
/// `EINTR` counts as "not readable yet".
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one valid pollfd that outlives the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.raw_os_error() == Some(libc::EINTR) {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(rc > 0 && pfd.revents & (libc::POLLIN | libc::POLLERR) != 0)
}

/// Level-triggered epoll set for a thread that serves many sockets.
///
/// Register each socket with a caller-chosen token; [`wait`](Self::wait) fills a
/// reusable event buffer and yields the tokens of readable sockets.
pub struct Poller {
    epoll: OwnedFd,
    events: Box<[libc::epoll_event]>,
    ready: usize,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("epoll", &self.epoll)
            .field("capacity", &self.events.len())
            .field("ready", &self.ready)
            .finish()
    }
}

impl Poller {
    /// A poller reporting at most `max_events` ready sockets per wait.
    pub fn new(max_events: usize) -> io::Result<Self> {
        // SAFETY: plain system call with a valid flag.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            epoll,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)]
                .into_boxed_slice(),
            ready: 0,
        })
    }

    /// Watches `fd` for readability, reporting it as `token`.
    pub fn add(&self, fd: &impl AsRawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), token)
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: &impl AsRawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll descriptor and event struct; the kernel copies `ev`.
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits up to `timeout` (forever with `None`) and returns the tokens of ready
    /// sockets (empty on timeout or `EINTR`). Does not allocate.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
    ) -> io::Result<impl Iterator<Item = u64> + '_> {
        let ms = match timeout {
            None => -1,
            // Round up so a sub-millisecond timeout does not become a busy poll.
            Some(t) => {
                libc::c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
            }
        };
        // SAFETY: `events` is a live buffer of events.len() entries.
        let rc = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                libc::c_int::try_from(self.events.len()).unwrap_or(libc::c_int::MAX),
                ms,
            )
        };
        self.ready = if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
            0
        } else {
            rc as usize
        };
        Ok(self.events[..self.ready].iter().map(|e| e.u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn loopback_batch_and_poller() {
        crate::netns::isolate_thread_network().expect("private network namespace (needs root)");
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        let one: libc::c_int = 1;
        // SAFETY: valid socket and int option value.
        let rc = unsafe {
            libc::setsockopt(
                rx.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&one as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let dest = rx.local_addr().expect("addr");
        let mut rcv = BatchReceiver::with_slot_size(8, 64);
        assert_eq!(rcv.recv(&rx).expect("empty recv"), 0);

        let mut poller = Poller::new(4).expect("epoll");
        poller.add(&rx, 7).expect("add");
        assert_eq!(
            poller
                .wait(Some(Duration::from_millis(1)))
                .expect("wait")
                .count(),
            0
        );

        let t0 = monotonic_now();
        for i in 0..5u8 {
            tx.send_to(&[i; 10], dest).expect("send");
        }
        tx.send_to(&[9u8; 100], dest).expect("send big");
        let tokens: Vec<u64> = poller
            .wait(Some(Duration::from_secs(1)))
            .expect("wait")
            .collect();
        assert_eq!(tokens, vec![7]);
        assert!(wait_readable(rx.as_raw_fd(), Duration::from_secs(1)).expect("poll"));

        assert_eq!(rcv.recv(&rx).expect("recv"), 6);
        let pkts: Vec<Received<'_>> = rcv.packets().collect();
        for (i, p) in pkts.iter().take(5).enumerate() {
            assert_eq!(p.data, &[i as u8; 10]);
            assert_eq!(p.source, tx.local_addr().expect("addr"));
            assert!(p.kernel_timestamp);
            assert!(!p.truncated);
            assert!(p.arrival.as_nanos() >= t0.as_nanos().saturating_sub(1_000_000));
            assert!(p.arrival.as_nanos() <= monotonic_now().as_nanos());
        }
        assert!(pkts[5].truncated);
        assert_eq!(pkts[5].data.len(), 64);
    }
}
