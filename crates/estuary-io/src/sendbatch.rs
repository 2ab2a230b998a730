//! Batched UDP send (`sendmmsg`) with a destination per datagram, so one socket and one
//! system call carry every packet a transmit thread has due at a tick, whatever stream
//! it belongs to.
//!
//! A [`SendBatch`] allocates its slots once; filling and flushing never allocate.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

pub use socket2::SockAddr;

/// What one [`SendBatch::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams it refused (each skipped after its error).
    pub failed: usize,
    /// The last refusal, if any.
    pub last_error: Option<i32>,
    /// System calls made.
    pub calls: usize,
}

/// Reusable buffers for `sendmmsg(2)`: N slots of up to `slot_bytes` each.
pub struct SendBatch {
    slot_bytes: usize,
    buffers: Box<[u8]>,
    lens: Box<[usize]>,
    names: Box<[libc::sockaddr_storage]>,
    name_lens: Box<[libc::socklen_t]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    count: usize,
}

// SAFETY: the raw pointers in `iovecs` and `headers` only point into boxed buffers owned
// by this struct (their heap data does not move with the struct) and are rewritten before
// every use; nothing is shared with another thread.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("slots", &self.headers.len())
            .field("slot_bytes", &self.slot_bytes)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl SendBatch {
    /// `slots` datagrams per flush, at most `slot_bytes` each (both at least 1).
    pub fn new(slots: usize, slot_bytes: usize) -> Self {
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
            lens: vec![0; slots].into_boxed_slice(),
            names: vec![zero_name; slots].into_boxed_slice(),
            name_lens: vec![0; slots].into_boxed_slice(),
            iovecs: vec![zero_iov; slots].into_boxed_slice(),
            headers: vec![zero_hdr; slots].into_boxed_slice(),
            count: 0,
        }
    }

    /// Datagrams waiting for [`flush`](Self::flush).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether every slot is taken (flush before adding more).
    pub fn is_full(&self) -> bool {
        self.count == self.headers.len()
    }

    /// Largest datagram a slot holds.
    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    /// Queues a datagram to `dest`, written by `fill` into a slot of
    /// [`slot_bytes`](Self::slot_bytes) (it returns the length it wrote, `None` to
    /// queue nothing). Returns whether a datagram was queued; false also when full.
    pub fn push_with(
        &mut self,
        dest: &SockAddr,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.count;
        let slot = &mut self.buffers[i * self.slot_bytes..(i + 1) * self.slot_bytes];
        let Some(len) = fill(slot).filter(|&n| n <= self.slot_bytes) else {
            return false;
        };
        self.lens[i] = len;
        let name_len = (dest.len() as usize).min(mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: `dest` points at `dest.len()` valid bytes of a socket address and the
        // target is a sockaddr_storage, large enough for any of them; the regions are
        // distinct allocations.
        unsafe {
            std::ptr::copy_nonoverlapping(
                dest.as_ptr().cast::<u8>(),
                (&mut self.names[i] as *mut libc::sockaddr_storage).cast::<u8>(),
                name_len,
            );
        }
        self.name_lens[i] = name_len as libc::socklen_t;
        self.count += 1;
        true
    }

    /// Queues a copy of `datagram` to `dest`; false when full or it does not fit a slot.
    pub fn push(&mut self, dest: &SockAddr, datagram: &[u8]) -> bool {
        self.push_with(dest, |slot| {
            let n = datagram.len();
            slot.get_mut(..n)?.copy_from_slice(datagram);
            Some(n)
        })
    }

    /// The datagram in slot `i` of the pending batch.
    pub fn datagram(&self, i: usize) -> Option<&[u8]> {
        (i < self.count)
            .then(|| &self.buffers[i * self.slot_bytes..i * self.slot_bytes + self.lens[i]])
    }

    /// Sends every queued datagram on `socket` (with as few `sendmmsg` calls as the
    /// kernel allows) and empties the batch. A datagram the kernel refuses is counted and
    /// skipped, so one unreachable destination does not hold up the others; `refused`
    /// hears of each (its slot index and the error number).
    pub fn flush(&mut self, socket: &impl AsRawFd, mut refused: impl FnMut(usize, i32)) -> Flushed {
        let mut done = Flushed::default();
        let total = self.count;
        for i in 0..total {
            // SAFETY: i * slot_bytes + lens[i] <= buffers.len() by construction.
            let base = unsafe { self.buffers.as_mut_ptr().add(i * self.slot_bytes) };
            self.iovecs[i] = libc::iovec {
                iov_base: base.cast(),
                iov_len: self.lens[i],
            };
            let hdr = &mut self.headers[i];
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = self.name_lens[i];
            hdr.msg_hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
        }
        let mut next = 0;
        while next < total {
            done.calls += 1;
            // SAFETY: headers[next..total] are initialized mmsghdrs whose name and iovec
            // pointers refer to live buffers of the stated sizes owned by self.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.headers.as_mut_ptr().add(next),
                    (total - next) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                done.sent += n as usize;
                next += n as usize;
                continue;
            }
            let err = io::Error::last_os_error().raw_os_error();
            if err == Some(libc::EINTR) {
                continue;
            }
            // The first datagram of the rest failed: count it and go on with the others.
            done.failed += 1;
            done.last_error = err;
            refused(next, err.unwrap_or(0));
            next += 1;
        }
        self.count = 0;
        done
    }
}

/// `addr` as a socket address for [`SendBatch::push`].
pub fn sock_addr(addr: SocketAddr) -> SockAddr {
    SockAddr::from(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn one_flush_reaches_every_destination_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
        }
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut batch = SendBatch::new(4, 64);
        let (to_a, to_b) = (
            sock_addr(a.local_addr().expect("addr")),
            sock_addr(b.local_addr().expect("addr")),
        );
        assert!(batch.push(&to_a, b"one"));
        assert!(batch.push(&to_b, b"two"));
        assert!(batch.push(&to_a, b"three"));
        assert!(!batch.push(&to_a, &[0u8; 65]), "larger than a slot");
        assert_eq!(batch.datagram(1), Some(&b"two"[..]));
        let done = batch.flush(&tx, |_, _| panic!("nothing is refused"));
        assert_eq!((done.sent, done.failed, done.calls), (3, 0, 1));
        assert!(batch.is_empty());
        let mut buf = [0u8; 64];
        let n = a.recv(&mut buf).expect("a1");
        assert_eq!(&buf[..n], b"one");
        let n = a.recv(&mut buf).expect("a2");
        assert_eq!(&buf[..n], b"three");
        let n = b.recv(&mut buf).expect("b");
        assert_eq!(&buf[..n], b"two");
    }

    #[test]
    fn a_refused_datagram_is_counted_and_the_rest_still_go() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut batch = SendBatch::new(3, 64);
        // An IPv6 destination on an IPv4 socket is refused (EAFNOSUPPORT or EINVAL).
        assert!(batch.push(&sock_addr("[::1]:9".parse().expect("v6")), b"x"));
        assert!(batch.push(&sock_addr(rx.local_addr().expect("addr")), b"ok"));
        assert!(batch.is_full() || batch.len() == 2);
        let mut refused = Vec::new();
        let done = batch.flush(&tx, |slot, _| refused.push(slot));
        assert_eq!((done.sent, done.failed), (1, 1));
        assert_eq!(refused, [0]);
        assert!(done.last_error.is_some());
        let mut buf = [0u8; 8];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"ok");
    }
}
