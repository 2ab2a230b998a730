//! Hand-written bindings to the parts of the system libsrt (1.5, gnutls build) that Estuary uses.
//!
//! Layouts and constants follow `/usr/include/srt/srt.h` and `logging_api.h` of libsrt 1.5.1.
//! Only what the sender and receiver need is declared; every function is thread-safe in libsrt (sockets are
//! integer ids looked up in a global table, so a stale id yields an error, never a dangling
//! pointer).

use std::ffi::{c_char, c_int, c_void};

/// `SRTSOCKET`: an id into libsrt's socket table, not a file descriptor.
pub(crate) type SrtSocket = i32;

pub(crate) const SRT_INVALID_SOCK: SrtSocket = -1;
pub(crate) const SRT_ERROR: c_int = -1;

// `SRT_SOCKSTATUS`.
pub(crate) const SRTS_CONNECTING: c_int = 4;
pub(crate) const SRTS_CONNECTED: c_int = 5;
pub(crate) const SRTS_BROKEN: c_int = 6;
pub(crate) const SRTS_CLOSING: c_int = 7;
pub(crate) const SRTS_CLOSED: c_int = 8;
pub(crate) const SRTS_NONEXIST: c_int = 9;

// `SRT_SOCKOPT`.
pub(crate) const SRTO_SNDSYN: c_int = 1;
pub(crate) const SRTO_RCVSYN: c_int = 2;
pub(crate) const SRTO_LATENCY: c_int = 23;
pub(crate) const SRTO_PASSPHRASE: c_int = 26;
pub(crate) const SRTO_PBKEYLEN: c_int = 27;
pub(crate) const SRTO_CONNTIMEO: c_int = 36;
pub(crate) const SRTO_STREAMID: c_int = 46;
pub(crate) const SRTO_TRANSTYPE: c_int = 50;

// `SRT_TRANSTYPE`.
pub(crate) const SRTT_LIVE: c_int = 0;

// `SRT_REJECT_REASON` values the sender reports specially.
pub(crate) const SRT_REJ_BADSECRET: c_int = 10;
pub(crate) const SRT_REJ_UNSECURE: c_int = 11;
pub(crate) const SRT_REJ_TIMEOUT: c_int = 16;

/// `SRT_EASYNCRCV` (`MJ_AGAIN`, `MN_RDAVAIL`): nothing to accept or read yet.
pub(crate) const SRT_EASYNCRCV: c_int = 6002;

/// Syslog `LOG_WARNING`, the libsrt log level Estuary forwards by default.
pub(crate) const LOG_WARNING: c_int = 4;

/// `struct CBytePerfMon` (`SRT_TRACEBSTATS`), field for field as in libsrt 1.5.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(non_snake_case, dead_code)]
pub(crate) struct SrtTraceBStats {
    // global measurements
    pub msTimeStamp: i64,
    pub pktSentTotal: i64,
    pub pktRecvTotal: i64,
    pub pktSndLossTotal: c_int,
    pub pktRcvLossTotal: c_int,
    pub pktRetransTotal: c_int,
    pub pktSentACKTotal: c_int,
    pub pktRecvACKTotal: c_int,
    pub pktSentNAKTotal: c_int,
    pub pktRecvNAKTotal: c_int,
    pub usSndDurationTotal: i64,
    pub pktSndDropTotal: c_int,
    pub pktRcvDropTotal: c_int,
    pub pktRcvUndecryptTotal: c_int,
    pub byteSentTotal: u64,
    pub byteRecvTotal: u64,
    pub byteRcvLossTotal: u64,
    pub byteRetransTotal: u64,
    pub byteSndDropTotal: u64,
    pub byteRcvDropTotal: u64,
    pub byteRcvUndecryptTotal: u64,
    // local measurements
    pub pktSent: i64,
    pub pktRecv: i64,
    pub pktSndLoss: c_int,
    pub pktRcvLoss: c_int,
    pub pktRetrans: c_int,
    pub pktRcvRetrans: c_int,
    pub pktSentACK: c_int,
    pub pktRecvACK: c_int,
    pub pktSentNAK: c_int,
    pub pktRecvNAK: c_int,
    pub mbpsSendRate: f64,
    pub mbpsRecvRate: f64,
    pub usSndDuration: i64,
    pub pktReorderDistance: c_int,
    pub pktRcvAvgBelatedTime: f64,
    pub pktRcvBelated: i64,
    pub pktSndDrop: c_int,
    pub pktRcvDrop: c_int,
    pub pktRcvUndecrypt: c_int,
    pub byteSent: u64,
    pub byteRecv: u64,
    pub byteRcvLoss: u64,
    pub byteRetrans: u64,
    pub byteSndDrop: u64,
    pub byteRcvDrop: u64,
    pub byteRcvUndecrypt: u64,
    // instant measurements
    pub usPktSndPeriod: f64,
    pub pktFlowWindow: c_int,
    pub pktCongestionWindow: c_int,
    pub pktFlightSize: c_int,
    pub msRTT: f64,
    pub mbpsBandwidth: f64,
    pub byteAvailSndBuf: c_int,
    pub byteAvailRcvBuf: c_int,
    pub mbpsMaxBW: f64,
    pub byteMSS: c_int,
    pub pktSndBuf: c_int,
    pub byteSndBuf: c_int,
    pub msSndBuf: c_int,
    pub msSndTsbPdDelay: c_int,
    pub pktRcvBuf: c_int,
    pub byteRcvBuf: c_int,
    pub msRcvBuf: c_int,
    pub msRcvTsbPdDelay: c_int,
    pub pktSndFilterExtraTotal: c_int,
    pub pktRcvFilterExtraTotal: c_int,
    pub pktRcvFilterSupplyTotal: c_int,
    pub pktRcvFilterLossTotal: c_int,
    pub pktSndFilterExtra: c_int,
    pub pktRcvFilterExtra: c_int,
    pub pktRcvFilterSupply: c_int,
    pub pktRcvFilterLoss: c_int,
    pub pktReorderTolerance: c_int,
    // added in 1.5.0
    pub pktSentUniqueTotal: i64,
    pub pktRecvUniqueTotal: i64,
    pub byteSentUniqueTotal: u64,
    pub byteRecvUniqueTotal: u64,
    pub pktSentUnique: i64,
    pub pktRecvUnique: i64,
    pub byteSentUnique: u64,
    pub byteRecvUnique: u64,
}

/// `SRT_LOG_HANDLER_FN`.
pub(crate) type SrtLogHandlerFn = unsafe extern "C" fn(
    opaque: *mut c_void,
    level: c_int,
    file: *const c_char,
    line: c_int,
    area: *const c_char,
    message: *const c_char,
);

// The library itself is linked by build.rs (pkg-config `srt`, i.e. `-lsrt-gnutls`).
unsafe extern "C" {
    pub(crate) fn srt_startup() -> c_int;
    pub(crate) fn srt_cleanup() -> c_int;
    pub(crate) fn srt_create_socket() -> SrtSocket;
    pub(crate) fn srt_bind(u: SrtSocket, name: *const libc::sockaddr, namelen: c_int) -> c_int;
    pub(crate) fn srt_listen(u: SrtSocket, backlog: c_int) -> c_int;
    pub(crate) fn srt_accept(
        u: SrtSocket,
        addr: *mut libc::sockaddr,
        addrlen: *mut c_int,
    ) -> SrtSocket;
    pub(crate) fn srt_connect(u: SrtSocket, name: *const libc::sockaddr, namelen: c_int) -> c_int;
    pub(crate) fn srt_close(u: SrtSocket) -> c_int;
    pub(crate) fn srt_setsockflag(
        u: SrtSocket,
        opt: c_int,
        optval: *const c_void,
        optlen: c_int,
    ) -> c_int;
    pub(crate) fn srt_sendmsg2(
        u: SrtSocket,
        buf: *const c_char,
        len: c_int,
        mctrl: *mut c_void,
    ) -> c_int;
    pub(crate) fn srt_recvmsg2(
        u: SrtSocket,
        buf: *mut c_char,
        len: c_int,
        mctrl: *mut c_void,
    ) -> c_int;
    pub(crate) fn srt_bstats(u: SrtSocket, perf: *mut SrtTraceBStats, clear: c_int) -> c_int;
    pub(crate) fn srt_getsockstate(u: SrtSocket) -> c_int;
    pub(crate) fn srt_getlasterror_str() -> *const c_char;
    pub(crate) fn srt_getlasterror(errno_loc: *mut c_int) -> c_int;
    pub(crate) fn srt_getrejectreason(u: SrtSocket) -> c_int;
    pub(crate) fn srt_rejectreason_str(id: c_int) -> *const c_char;
    pub(crate) fn srt_setloglevel(ll: c_int);
    pub(crate) fn srt_setloghandler(opaque: *mut c_void, handler: Option<SrtLogHandlerFn>);
}
