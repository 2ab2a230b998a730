//! SRT input: the same connection thread as the output (connect or listen, re-accept,
//! reconnect with backoff, statistics), with a non-blocking [`SrtReceiver::recv`] in place of
//! `send`. The receiving thread polls it on its own tick, so it never waits on libsrt.

use std::ffi::{c_char, c_int};
use std::sync::atomic::Ordering;

use super::{SrtConfig, SrtError, SrtSender, SrtStatus, ffi};

/// What [`SrtReceiver::recv`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtReceived {
    /// One message of this many bytes is in the buffer.
    Message(usize),
    /// The peer is connected but nothing is ready.
    Empty,
    /// No peer.
    NotConnected,
}

/// One SRT input connection.
#[derive(Debug)]
pub struct SrtReceiver {
    link: SrtSender,
    /// The socket the last message came from: a change means a new connection.
    last_socket: ffi::SrtSocket,
    connections: u64,
}

impl SrtReceiver {
    /// Validates `config`, initialises libsrt and spawns the connection thread. Returns at once.
    pub fn start(config: SrtConfig) -> Result<Self, SrtError> {
        Ok(Self {
            link: SrtSender::start_named(config, "srt-in")?,
            last_socket: ffi::SRT_INVALID_SOCK,
            connections: 0,
        })
    }

    /// Reads one message (give it at least 1500 bytes) without blocking.
    pub fn recv(&mut self, buf: &mut [u8]) -> SrtReceived {
        let socket = self.link.shared.socket.load(Ordering::Acquire);
        if socket == ffi::SRT_INVALID_SOCK {
            return SrtReceived::NotConnected;
        }
        if socket != self.last_socket {
            self.last_socket = socket;
            self.connections += 1;
        }
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: `buf` is writable for `len` bytes for the duration of the call; a NULL
        // `mctrl` selects the defaults. The socket is non-blocking (SRTO_RCVSYN false, inherited
        // from the listener or set on the caller), so this returns at once; a socket closed
        // meanwhile yields SRT_ERROR, since libsrt looks ids up rather than dereferencing them.
        let n = unsafe {
            ffi::srt_recvmsg2(
                socket,
                buf.as_mut_ptr().cast::<c_char>(),
                len,
                std::ptr::null_mut(),
            )
        };
        match usize::try_from(n) {
            Ok(n) if n > 0 => SrtReceived::Message(n),
            // Nothing ready (SRT_EASYNCRCV), or the connection just broke: the connection
            // thread notices the latter on its next look.
            _ => SrtReceived::Empty,
        }
    }

    /// Connections whose data has been read so far; a change means the stream restarted.
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// State and counters (the receive side's are the `receive*` fields).
    pub fn status(&self) -> SrtStatus {
        self.link.status()
    }

    /// Stops the connection thread. Idempotent; also done on drop.
    pub fn stop(&mut self) {
        self.link.stop();
    }
}
