//! MPEG-2 transport stream (ISO/IEC 13818-1) for one audio program: a muxer and a demuxer.
//!
//! - [`TsMuxer`] turns access units (Opus packets or SMPTE 302M units) into 188-byte packets:
//!   PAT and PMT at start and every `psi_interval_90k`, one PES per access unit
//!   (`private_stream_1`, PTS, `data_alignment_indicator`), PCR on the first packet of every
//!   PES, continuity counters, and adaptation-field stuffing in the last packet.
//! - [`TsDemuxer`] is fed arbitrary byte chunks, resynchronises on `0x47`, follows PAT → PMT
//!   and returns the access units of every elementary stream of the program.
//! - [`drain_messages`] cuts the packet stream into 1316-byte SRT live payloads.
//!
//! Opus follows the Opus-in-TS mapping (ETSI TS 102 366 annex draft as implemented by FFmpeg):
//! `stream_type` 0x06, registration descriptor `"Opus"`, DVB extension descriptor (tag 0x7F)
//! with extension tag 0x80 and `channel_config_code`, and an `opus_control_header`
//! (`0x7FE0` prefix + `au_size` bytes) before each Opus packet in the PES payload.
//! SMPTE 302M uses `stream_type` 0x06 with registration descriptor `"BSSD"` (ST 302M §6).
//!
//! Untrusted bytes are only read through `get(..)` and checked lengths; nothing here panics
//! on any input.

mod demux;
mod mux;

pub use demux::{AccessUnit, TsDemuxStats, TsDemuxer};
pub use mux::{TsConfig, TsMuxer};

use thiserror::Error;

use crate::s302m::S302mFormat;

/// Length of a transport stream packet.
pub const TS_PACKET_LEN: usize = 188;
/// First byte of every transport stream packet.
pub const SYNC_BYTE: u8 = 0x47;
/// TS packets in one SRT live payload (SRT's default live payload is 7 × 188 bytes).
pub const PACKETS_PER_SRT_MESSAGE: usize = 7;
/// Bytes in one SRT live payload.
pub const SRT_MESSAGE_LEN: usize = PACKETS_PER_SRT_MESSAGE * TS_PACKET_LEN;
/// The PTS/PCR clock rate.
pub const CLOCK_90K: u64 = 90_000;
/// PTS and PCR base are 33-bit counters (ISO 13818-1 §2.4.3.7).
pub const PTS_MODULO: u64 = 1 << 33;

/// The highest PID (0x1FFF is the null packet PID).
pub(crate) const NULL_PID: u16 = 0x1fff;
pub(crate) const PAT_PID: u16 = 0x0000;
pub(crate) const STREAM_TYPE_PRIVATE_PES: u8 = 0x06;
pub(crate) const STREAM_ID_PRIVATE_1: u8 = 0xbd;
pub(crate) const TAG_REGISTRATION: u8 = 0x05;
pub(crate) const TAG_DVB_EXTENSION: u8 = 0x7f;
pub(crate) const EXT_TAG_OPUS: u8 = 0x80;
pub(crate) const REG_OPUS: [u8; 4] = *b"Opus";
pub(crate) const REG_302M: [u8; 4] = *b"BSSD";

/// The audio stream a [`TsMuxer`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsAudio {
    /// Opus packets (RFC 6716), 1..=8 channels (Vorbis channel order above 2).
    Opus { channels: u8 },
    /// SMPTE 302M access units built by [`crate::s302m::pack_into`].
    S302m { format: S302mFormat },
}

/// What a demuxed elementary stream carries, from its PMT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsAudioKind {
    /// Opus; `channels` from `channel_config_code` (0 when the PMT does not say).
    Opus { channels: u8 },
    /// SMPTE 302M (registration `"BSSD"`).
    S302m,
    /// AAC (ADTS 0x0F or LATM 0x11).
    Aac,
    /// MPEG-1/2 audio layer I/II (0x03 / 0x04).
    Mp2,
    /// Anything else, with its `stream_type`.
    Unknown(u8),
}

/// Errors from building a muxer or muxing an access unit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TsError {
    /// A configuration field is out of range.
    #[error("invalid TS config field `{field}`: {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// The PES would exceed the 16-bit `PES_packet_length`.
    #[error("access unit of {len} bytes exceeds the {max}-byte PES limit")]
    AccessUnitTooLarge { len: usize, max: usize },
}

/// Calls `f` with every whole 1316-byte SRT payload at the front of `buf`, then removes them,
/// keeping the remainder (fewer than 7 packets) for the next call. Returns the payloads emitted.
pub fn drain_messages(buf: &mut Vec<u8>, mut f: impl FnMut(&[u8])) -> usize {
    let mut count = 0;
    for chunk in buf.chunks_exact(SRT_MESSAGE_LEN) {
        f(chunk);
        count += 1;
    }
    buf.drain(..count * SRT_MESSAGE_LEN);
    count
}

/// CRC-32/MPEG-2 (poly 0x04C11DB7, init 0xFFFFFFFF, no reflection, no final xor), ISO 13818-1
/// Annex A. Over a whole section including its `CRC_32` field the result is 0.
pub fn crc32_mpeg2(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0xffff_ffff, |crc, &b| {
        let idx = ((crc >> 24) as u8 ^ b) as usize;
        (crc << 8) ^ CRC_TABLE.get(idx).copied().unwrap_or(0)
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04c1_1db7
            } else {
                c << 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Duration of an Opus packet in 48 kHz samples from its TOC (RFC 6716 §3.1), if well-formed.
pub fn opus_packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let per_frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config & 3)],
        12..=15 => [480, 960][usize::from(config & 1)],
        _ => [120, 240, 480, 960][usize::from(config & 3)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    Some(per_frame * frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        // The CRC-32/MPEG-2 catalogue check value.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn drain_keeps_remainder() {
        let mut buf = vec![0u8; SRT_MESSAGE_LEN * 2 + 188];
        let mut seen = Vec::new();
        let n = drain_messages(&mut buf, |m| seen.push(m.len()));
        assert_eq!(n, 2);
        assert_eq!(seen, vec![1316, 1316]);
        assert_eq!(buf.len(), 188);
    }

    #[test]
    fn opus_toc_durations() {
        assert_eq!(opus_packet_samples(&[0xfc]), Some(960)); // CELT FB 20 ms, 1 frame
        assert_eq!(opus_packet_samples(&[0x78]), Some(960)); // hybrid FB 20 ms
        assert_eq!(opus_packet_samples(&[0x83, 0x03]), Some(360)); // CELT 2.5 ms × 3
        assert_eq!(opus_packet_samples(&[0x03]), None);
        assert_eq!(opus_packet_samples(&[]), None);
    }
}
