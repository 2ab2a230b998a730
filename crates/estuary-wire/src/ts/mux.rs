//! The transport stream muxer for one audio program.

use super::{
    EXT_TAG_OPUS, NULL_PID, PACKETS_PER_SRT_MESSAGE, PAT_PID, PTS_MODULO, REG_302M, REG_OPUS,
    STREAM_ID_PRIVATE_1, STREAM_TYPE_PRIVATE_PES, SYNC_BYTE, TAG_DVB_EXTENSION, TAG_REGISTRATION,
    TS_PACKET_LEN, TsAudio, TsError, crc32_mpeg2,
};

/// PES header bytes Estuary writes: start code, stream_id, length, flags, PTS (ISO 13818-1
/// §2.4.3.6).
const PES_HEADER_LEN: usize = 14;
/// Largest PES payload the 16-bit `PES_packet_length` allows after our 8 header bytes.
const MAX_PES_PAYLOAD: usize = 0xffff - 8;
/// Opus control header: 2 prefix/flag bytes + at most 257 `au_size` bytes for 65535.
const MAX_OPUS_CONTROL_LEN: usize = 2 + 258;
const TS_PAYLOAD_LEN: usize = TS_PACKET_LEN - 4;

/// Muxer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsConfig {
    /// The audio elementary stream.
    pub stream: TsAudio,
    /// PID of the PMT (0x0010..=0x1FFE).
    pub pmt_pid: u16,
    /// PID of the audio PES, also the PCR PID (0x0010..=0x1FFE).
    pub audio_pid: u16,
    /// `program_number` in PAT and PMT (non-zero).
    pub program_number: u16,
    /// `transport_stream_id` in the PAT.
    pub transport_stream_id: u16,
    /// PAT and PMT are repeated when this much PTS time (90 kHz) has passed; 9000 = 100 ms.
    pub psi_interval_90k: u64,
    /// PCR = PTS − this (90 kHz). The PCR stamps when the first byte of the PES enters the
    /// decoder (T-STD); it must precede the PTS by at least the time needed to deliver the whole
    /// access unit, or a conforming decoder would present data it has not received yet.
    /// Deriving it from the PTS with a fixed lead keeps PCR exactly as regular as the audio
    /// clock, with no wall clock in this sans-IO crate. 9000 (100 ms) covers a 40 ms 302M unit
    /// and typical SRT burstiness.
    pub pcr_offset_90k: u64,
}

impl TsConfig {
    /// Defaults: PMT PID 0x1000, audio PID 0x0100, program 1, PSI every 100 ms, PCR 100 ms
    /// ahead of PTS (the PIDs FFmpeg uses, so captures compare easily).
    pub fn new(stream: TsAudio) -> Self {
        Self {
            stream,
            pmt_pid: 0x1000,
            audio_pid: 0x0100,
            program_number: 1,
            transport_stream_id: 1,
            psi_interval_90k: 9000,
            pcr_offset_90k: 9000,
        }
    }
}

/// Muxes access units of one audio stream into 188-byte TS packets.
///
/// PAT and PMT are built once in [`TsMuxer::new`]; writing an access unit only appends to the
/// caller's buffer, which does not allocate once it has grown to its working size.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    config: TsConfig,
    pat: [u8; TS_PACKET_LEN],
    pmt: [u8; TS_PACKET_LEN],
    cc_pat: u8,
    cc_pmt: u8,
    cc_audio: u8,
    last_psi_pts: Option<u64>,
}

impl TsMuxer {
    /// A muxer for `config`, or the field that is out of range.
    pub fn new(config: TsConfig) -> Result<Self, TsError> {
        let pid_ok = |pid: u16| (0x0010..NULL_PID).contains(&pid);
        if !pid_ok(config.pmt_pid) {
            return Err(TsError::InvalidConfig {
                field: "pmt_pid",
                reason: "must be 0x0010..=0x1FFE",
            });
        }
        if !pid_ok(config.audio_pid) {
            return Err(TsError::InvalidConfig {
                field: "audio_pid",
                reason: "must be 0x0010..=0x1FFE",
            });
        }
        if config.audio_pid == config.pmt_pid {
            return Err(TsError::InvalidConfig {
                field: "audio_pid",
                reason: "must differ from pmt_pid",
            });
        }
        if config.program_number == 0 {
            return Err(TsError::InvalidConfig {
                field: "program_number",
                reason: "0 is reserved for the network PID",
            });
        }
        match config.stream {
            TsAudio::Opus { channels } if !(1..=8).contains(&channels) => {
                return Err(TsError::InvalidConfig {
                    field: "stream",
                    reason: "Opus in TS carries 1..=8 channels",
                });
            }
            TsAudio::S302m { format } if format.validate().is_err() => {
                return Err(TsError::InvalidConfig {
                    field: "stream",
                    reason: "302M carries 2/4/6/8 channels of 16/20/24 bits",
                });
            }
            _ => {}
        }
        Ok(Self {
            pat: build_pat(&config),
            pmt: build_pmt(&config),
            config,
            cc_pat: 0,
            cc_pmt: 0,
            cc_audio: 0,
            last_psi_pts: None,
        })
    }

    /// The configuration this muxer was built with.
    pub fn config(&self) -> &TsConfig {
        &self.config
    }

    /// TS packets per SRT live payload: SRT carries 1316 = 7 × 188 bytes per message, so
    /// emit whole groups of 7 packets (see [`super::drain_messages`]).
    pub const fn packets_per_srt_message() -> usize {
        PACKETS_PER_SRT_MESSAGE
    }

    /// Appends PAT and PMT now (e.g. right after a receiver connects).
    pub fn write_psi(&mut self, out: &mut Vec<u8>) {
        push_with_cc(out, &self.pat, &mut self.cc_pat);
        push_with_cc(out, &self.pmt, &mut self.cc_pmt);
    }

    /// Appends one access unit as a PES, preceded by PAT/PMT when they are due. `pts_90k` is
    /// taken modulo 2^33. Returns the number of 188-byte packets appended.
    pub fn write_access_unit(
        &mut self,
        pts_90k: u64,
        au: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, TsError> {
        let pts = pts_90k % PTS_MODULO;

        // Header: PES header, then for Opus the opus_control_header.
        let mut head = [0u8; PES_HEADER_LEN + MAX_OPUS_CONTROL_LEN];
        let mut head_len = PES_HEADER_LEN;
        if let TsAudio::Opus { .. } = self.config.stream {
            // opus_control_header: 11-bit prefix 0x3FF, no trim or extension flags, then
            // au_size as a run of 0xFF bytes plus a final byte < 0xFF.
            let control = head.get_mut(PES_HEADER_LEN..).unwrap_or_default();
            let ff_run = au.len() / 255;
            if ff_run + 3 > control.len() {
                return Err(TsError::AccessUnitTooLarge {
                    len: au.len(),
                    max: MAX_PES_PAYLOAD - MAX_OPUS_CONTROL_LEN,
                });
            }
            for (i, b) in control.iter_mut().take(ff_run + 3).enumerate() {
                *b = match i {
                    0 => 0x7f,
                    1 => 0xe0,
                    i if i < ff_run + 2 => 0xff,
                    _ => (au.len() % 255) as u8,
                };
            }
            head_len += ff_run + 3;
        }
        let payload_len = head_len - PES_HEADER_LEN + au.len();
        if payload_len > MAX_PES_PAYLOAD {
            return Err(TsError::AccessUnitTooLarge {
                len: au.len(),
                max: MAX_PES_PAYLOAD - (head_len - PES_HEADER_LEN),
            });
        }
        let pes_packet_length = (payload_len + 8) as u16;
        let [l0, l1] = pes_packet_length.to_be_bytes();
        let pes_header: [u8; PES_HEADER_LEN] = [
            0x00,
            0x00,
            0x01,
            STREAM_ID_PRIVATE_1,
            l0,
            l1,
            // '10', not scrambled, no priority, data_alignment_indicator = 1.
            0x84,
            // PTS_DTS_flags = '10' (PTS only).
            0x80,
            // PES_header_data_length.
            0x05,
            // PTS with '0010' prefix and marker bits (§2.4.3.7).
            0x20 | ((pts >> 29) as u8 & 0x0e) | 1,
            (pts >> 22) as u8,
            ((pts >> 14) as u8 & 0xfe) | 1,
            (pts >> 7) as u8,
            ((pts << 1) as u8 & 0xfe) | 1,
        ];
        if let Some(dst) = head.get_mut(..PES_HEADER_LEN) {
            dst.copy_from_slice(&pes_header);
        }

        let mut packets = 0;
        let psi_due = self.last_psi_pts.is_none_or(|last| {
            (pts + PTS_MODULO - last) % PTS_MODULO >= self.config.psi_interval_90k
        });
        if psi_due {
            self.write_psi(out);
            self.last_psi_pts = Some(pts);
            packets += 2;
        }

        let pcr = (pts + PTS_MODULO - self.config.pcr_offset_90k % PTS_MODULO) % PTS_MODULO;
        let mut src = Chain {
            a: head.get(..head_len).unwrap_or_default(),
            b: au,
        };
        let mut first = true;
        while src.remaining() > 0 {
            self.write_audio_packet(out, first, first.then_some(pcr), &mut src);
            first = false;
            packets += 1;
        }
        Ok(packets)
    }

    /// One audio packet: header, adaptation field (PCR and/or stuffing) and payload.
    fn write_audio_packet(
        &mut self,
        out: &mut Vec<u8>,
        pusi: bool,
        pcr: Option<u64>,
        src: &mut Chain<'_>,
    ) {
        // Adaptation field: length byte + flags byte + 6 PCR bytes.
        let min_af = if pcr.is_some() { 8 } else { 0 };
        let payload_len = src.remaining().min(TS_PAYLOAD_LEN - min_af);
        let af_len = TS_PAYLOAD_LEN - payload_len;
        let pid = self.config.audio_pid;
        let afc = if af_len > 0 { 0x30 } else { 0x10 };
        let start = out.len();
        out.extend_from_slice(&[
            SYNC_BYTE,
            (u8::from(pusi) << 6) | ((pid >> 8) as u8 & 0x1f),
            pid as u8,
            afc | self.cc_audio,
        ]);
        self.cc_audio = (self.cc_audio + 1) & 0x0f;
        if af_len > 0 {
            out.push((af_len - 1) as u8);
            if af_len > 1 {
                // random_access_indicator on the PES start (every audio AU is an entry point),
                // PCR_flag when a PCR follows.
                let mut flags = 0;
                if pusi {
                    flags |= 0x40;
                }
                if pcr.is_some() {
                    flags |= 0x10;
                }
                out.push(flags);
                if let Some(pcr) = pcr {
                    // program_clock_reference_base (33), reserved (6), extension (9) = 0.
                    out.extend_from_slice(&[
                        (pcr >> 25) as u8,
                        (pcr >> 17) as u8,
                        (pcr >> 9) as u8,
                        (pcr >> 1) as u8,
                        ((pcr as u8 & 1) << 7) | 0x7e,
                        0x00,
                    ]);
                }
                out.resize(start + 4 + af_len, 0xff);
            }
        }
        src.copy_to(out, payload_len);
    }
}

/// Two slices read as one.
struct Chain<'a> {
    a: &'a [u8],
    b: &'a [u8],
}

impl Chain<'_> {
    fn remaining(&self) -> usize {
        self.a.len() + self.b.len()
    }

    fn copy_to(&mut self, out: &mut Vec<u8>, mut n: usize) {
        let take = n.min(self.a.len());
        let (now, rest) = self.a.split_at(take);
        out.extend_from_slice(now);
        self.a = rest;
        n -= take;
        let take = n.min(self.b.len());
        let (now, rest) = self.b.split_at(take);
        out.extend_from_slice(now);
        self.b = rest;
    }
}

fn push_with_cc(out: &mut Vec<u8>, packet: &[u8; TS_PACKET_LEN], cc: &mut u8) {
    let start = out.len();
    out.extend_from_slice(packet);
    if let Some(b) = out.get_mut(start + 3) {
        *b = (*b & 0xf0) | *cc;
    }
    *cc = (*cc + 1) & 0x0f;
}

/// A PSI packet (PUSI, payload only, pointer_field 0) holding `section` plus CRC, stuffed
/// with 0xFF.
fn psi_packet(pid: u16, section: &[u8]) -> [u8; TS_PACKET_LEN] {
    let mut p = [0xffu8; TS_PACKET_LEN];
    let header = [
        SYNC_BYTE,
        0x40 | ((pid >> 8) as u8 & 0x1f),
        pid as u8,
        0x10,
        0x00,
    ];
    let crc = crc32_mpeg2(section).to_be_bytes();
    for (dst, src) in p
        .iter_mut()
        .zip(header.iter().chain(section).chain(crc.iter()))
    {
        *dst = *src;
    }
    p
}

/// Program association section (§2.4.4.3) with one program.
fn build_pat(config: &TsConfig) -> [u8; TS_PACKET_LEN] {
    let [t0, t1] = config.transport_stream_id.to_be_bytes();
    let [p0, p1] = config.program_number.to_be_bytes();
    let section = [
        0x00, // table_id
        0xb0, // section_syntax_indicator, '0', reserved, section_length high
        13,   // section_length: 5 + 4 (one program) + 4 (CRC)
        t0,
        t1,
        0xc1, // reserved, version 0, current_next_indicator
        0x00, // section_number
        0x00, // last_section_number
        p0,
        p1,
        0xe0 | ((config.pmt_pid >> 8) as u8 & 0x1f),
        config.pmt_pid as u8,
    ];
    psi_packet(PAT_PID, &section)
}

/// Program map section (§2.4.4.8) with one audio stream and its descriptors.
fn build_pmt(config: &TsConfig) -> [u8; TS_PACKET_LEN] {
    let mut es_info = [0u8; 10];
    let es_info_len = match config.stream {
        TsAudio::Opus { channels } => {
            // Registration "Opus", then the DVB extension descriptor with the Opus audio
            // descriptor (extension tag 0x80) holding channel_config_code = channel count.
            es_info = [
                TAG_REGISTRATION,
                4,
                REG_OPUS[0],
                REG_OPUS[1],
                REG_OPUS[2],
                REG_OPUS[3],
                TAG_DVB_EXTENSION,
                2,
                EXT_TAG_OPUS,
                channels,
            ];
            10
        }
        TsAudio::S302m { .. } => {
            if let Some(d) = es_info.get_mut(..6) {
                d.copy_from_slice(&[
                    TAG_REGISTRATION,
                    4,
                    REG_302M[0],
                    REG_302M[1],
                    REG_302M[2],
                    REG_302M[3],
                ]);
            }
            6
        }
    };
    // 9 fixed bytes after section_length, 5 per ES plus its descriptors, 4 CRC.
    let section_length = 9 + 5 + es_info_len + 4;
    let [p0, p1] = config.program_number.to_be_bytes();
    let mut section = [0u8; 12 + 5 + 10];
    let fixed = [
        0x02, // table_id
        0xb0 | (section_length >> 8) as u8,
        section_length as u8,
        p0,
        p1,
        0xc1,
        0x00,
        0x00,
        0xe0 | ((config.audio_pid >> 8) as u8 & 0x1f), // PCR_PID
        config.audio_pid as u8,
        0xf0, // reserved, program_info_length = 0
        0x00,
        STREAM_TYPE_PRIVATE_PES,
        0xe0 | ((config.audio_pid >> 8) as u8 & 0x1f),
        config.audio_pid as u8,
        0xf0 | (es_info_len >> 8) as u8,
        es_info_len as u8,
    ];
    for (dst, src) in section
        .iter_mut()
        .zip(fixed.iter().chain(es_info.iter().take(es_info_len)))
    {
        *dst = *src;
    }
    let used = fixed.len() + es_info_len;
    psi_packet(config.pmt_pid, section.get(..used).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s302m::S302mFormat;

    fn opus_muxer() -> TsMuxer {
        TsMuxer::new(TsConfig::new(TsAudio::Opus { channels: 2 })).expect("config")
    }

    #[test]
    fn psi_crc_verifies() {
        let m = opus_muxer();
        // Section = after pointer_field; CRC over section incl. CRC_32 is 0.
        let pat_len = 3 + 13;
        assert_eq!(crc32_mpeg2(&m.pat[5..5 + pat_len]), 0);
        let pmt_len = 3 + usize::from(m.pmt[6] & 0x0f) * 256 + usize::from(m.pmt[7]);
        assert_eq!(crc32_mpeg2(&m.pmt[5..5 + pmt_len]), 0);
        assert_eq!(&m.pmt[5 + 17..5 + 27], b"\x05\x04Opus\x7f\x02\x80\x02");
    }

    #[test]
    fn packets_are_whole_with_pcr_and_counters() {
        let mut m = opus_muxer();
        let mut out = Vec::new();
        let au = [0xfcu8; 400];
        let n = m.write_access_unit(90_000, &au, &mut out).expect("mux");
        assert_eq!(out.len(), n * TS_PACKET_LEN);
        // PAT, PMT, then 3 audio packets (14 + 4 + 400 = 418 > 176 + 184).
        assert_eq!(n, 5);
        let audio: Vec<&[u8]> = out.chunks(TS_PACKET_LEN).skip(2).collect();
        assert_eq!(audio[0][1] & 0x40, 0x40);
        assert_eq!(audio[0][3] & 0x30, 0x30);
        assert_eq!(audio[0][5] & 0x10, 0x10, "PCR flag");
        let pcr_base = (u64::from(audio[0][6]) << 25)
            | (u64::from(audio[0][7]) << 17)
            | (u64::from(audio[0][8]) << 9)
            | (u64::from(audio[0][9]) << 1)
            | u64::from(audio[0][10] >> 7);
        assert_eq!(pcr_base, 90_000 - 9000);
        for (i, p) in audio.iter().enumerate() {
            assert_eq!(p[0], SYNC_BYTE);
            assert_eq!(usize::from(p[3] & 0x0f), i);
        }
        // Last packet carries stuffing: 418 - 176 - 184 = 58 payload bytes.
        assert_eq!(usize::from(audio[2][4]), 184 - 58 - 1);
        // No PSI again before 100 ms.
        let n = m
            .write_access_unit(90_000 + 1800, &au, &mut out)
            .expect("mux");
        assert_eq!(n, 3);
        let n = m
            .write_access_unit(90_000 + 9000, &au, &mut out)
            .expect("mux");
        assert_eq!(n, 5);
    }

    #[test]
    fn af_of_one_byte() {
        // A payload leaving exactly one spare byte gets a zero-length adaptation field.
        let mut m = TsMuxer::new(TsConfig::new(TsAudio::S302m {
            format: S302mFormat::new(2, 24).expect("format"),
        }))
        .expect("config");
        let mut out = Vec::new();
        let au = vec![0u8; 176 + 183 - 14];
        let n = m.write_access_unit(0, &au, &mut out).expect("mux");
        assert_eq!(n, 4);
        assert_eq!(out.len(), 4 * TS_PACKET_LEN);
        let last = &out[3 * TS_PACKET_LEN..];
        assert_eq!(last[3] & 0x30, 0x30);
        assert_eq!(last[4], 0);
    }

    #[test]
    fn rejects_bad_config_and_huge_units() {
        let mut c = TsConfig::new(TsAudio::Opus { channels: 2 });
        c.audio_pid = c.pmt_pid;
        assert!(matches!(
            TsMuxer::new(c),
            Err(TsError::InvalidConfig {
                field: "audio_pid",
                ..
            })
        ));
        let c = TsConfig::new(TsAudio::Opus { channels: 9 });
        assert!(TsMuxer::new(c).is_err());
        let mut m = opus_muxer();
        let mut out = Vec::new();
        assert!(matches!(
            m.write_access_unit(0, &vec![0; 70_000], &mut out),
            Err(TsError::AccessUnitTooLarge { .. })
        ));
        assert!(out.is_empty());
    }
}
