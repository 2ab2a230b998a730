//! Sans-IO wire formats for Estuary.
//!
//! Nothing here opens a socket, reads a clock or spawns a thread. Every parser takes bytes
//! from the network, returns a `Result`, and never panics on any input: lengths are checked
//! with `get(..)`/`checked_sub` before use, so no accessor indexes out of bounds.
#![forbid(unsafe_code)]

pub mod audio_frames;
pub mod dante;
pub mod flac;
pub mod flv;
pub mod http;
pub mod payload;
pub mod ptp_mgmt;
pub mod rtp;
pub mod rtsp;
pub mod s302m;
pub mod sap;
pub mod sdp;
pub mod ts;
pub mod units;
pub mod wav;
