//! The only crate with sockets, threads and native libraries.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment.

pub mod batch;
pub mod clock;
pub mod dante;
pub mod decode;
pub mod disk_writer;
pub mod encode;
pub mod http_listen;
pub mod icecast;
pub mod linuxptp;
pub mod mcast;
pub mod memory;
pub mod netns;
pub mod opus;
pub mod ptp;
pub mod ptp4l;
pub mod ravenna;
pub mod rtmp;
pub mod sap;
pub mod sched;
pub mod sd_notify;
pub mod sendbatch;
pub mod srt;
pub mod tls;
pub mod tx;
