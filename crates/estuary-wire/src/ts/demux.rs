//! A sans-IO transport stream demuxer: bytes in, access units out.

use super::{
    CLOCK_90K, EXT_TAG_OPUS, NULL_PID, PAT_PID, PTS_MODULO, REG_302M, REG_OPUS,
    STREAM_TYPE_PRIVATE_PES, SYNC_BYTE, TAG_DVB_EXTENSION, TAG_REGISTRATION, TS_PACKET_LEN,
    TsAudioKind, crc32_mpeg2, opus_packet_samples,
};

/// PSI sections are at most 1024 bytes (§2.4.4.11); keep a little slack.
const MAX_SECTION_BUF: usize = 4096;
/// A PES longer than this (possible only with `PES_packet_length` 0) is dropped as malformed.
const MAX_PES_BUF: usize = 1 << 20;

/// One access unit from an elementary stream of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// The elementary stream's PID.
    pub pid: u16,
    /// PTS (90 kHz, 33 bits). For Opus units after the first in a PES, the PES PTS plus the
    /// duration of the preceding packets.
    pub pts: Option<u64>,
    /// What the PMT says the stream carries.
    pub stream: TsAudioKind,
    /// The unit: for Opus one packet without its control header; otherwise the PES payload.
    pub data: Vec<u8>,
}

/// Counters kept by the demuxer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsDemuxStats {
    /// Whole 188-byte packets processed.
    pub packets: u64,
    /// Bytes skipped while looking for a sync byte.
    pub skipped_bytes: u64,
    /// Continuity counter jumps on PIDs of the program.
    pub continuity_errors: u64,
    /// Packets, sections or PES that could not be parsed (TEI set, bad lengths, bad CRC,
    /// truncated PES, bad Opus control header).
    pub malformed: u64,
    /// Access units returned.
    pub access_units: u64,
}

#[derive(Debug, Clone, Default)]
struct SectionBuf {
    buf: Vec<u8>,
    active: bool,
}

#[derive(Debug, Clone)]
struct EsState {
    pid: u16,
    kind: TsAudioKind,
    buf: Vec<u8>,
    active: bool,
}

/// Demuxes a transport stream fed in arbitrary chunks.
///
/// Follows the first program of the PAT (or the one chosen with
/// [`TsDemuxer::with_program`]) and returns access units of every stream its PMT lists.
#[derive(Debug, Clone)]
pub struct TsDemuxer {
    partial: [u8; TS_PACKET_LEN],
    partial_len: usize,
    program: Option<u16>,
    pmt_pid: Option<u16>,
    pat: SectionBuf,
    pmt: SectionBuf,
    streams: Vec<EsState>,
    /// Last continuity counter per PID, 0xFF = none yet.
    last_cc: Vec<u8>,
    stats: TsDemuxStats,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    /// A demuxer following the first program in the PAT.
    pub fn new() -> Self {
        Self {
            partial: [0; TS_PACKET_LEN],
            partial_len: 0,
            program: None,
            pmt_pid: None,
            pat: SectionBuf::default(),
            pmt: SectionBuf::default(),
            streams: Vec::new(),
            last_cc: vec![0xff; usize::from(NULL_PID) + 1],
            stats: TsDemuxStats::default(),
        }
    }

    /// A demuxer following `program_number`.
    pub fn with_program(program_number: u16) -> Self {
        Self {
            program: Some(program_number),
            ..Self::new()
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> TsDemuxStats {
        self.stats
    }

    /// The elementary streams of the current PMT, as (PID, kind).
    pub fn streams(&self) -> impl Iterator<Item = (u16, TsAudioKind)> + '_ {
        self.streams.iter().map(|s| (s.pid, s.kind))
    }

    /// Feeds bytes; returns the access units they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<AccessUnit> {
        let mut units = Vec::new();
        self.push_with(bytes, |au| units.push(au));
        units
    }

    /// Feeds bytes; calls `emit` for every access unit they complete.
    pub fn push_with(&mut self, mut bytes: &[u8], mut emit: impl FnMut(AccessUnit)) {
        while !bytes.is_empty() {
            if self.partial_len == 0 {
                match bytes.iter().position(|&b| b == SYNC_BYTE) {
                    Some(skip) => {
                        self.stats.skipped_bytes += skip as u64;
                        bytes = bytes.get(skip..).unwrap_or_default();
                    }
                    None => {
                        self.stats.skipped_bytes += bytes.len() as u64;
                        return;
                    }
                }
            }
            let want = TS_PACKET_LEN - self.partial_len;
            let take = want.min(bytes.len());
            let (now, rest) = bytes.split_at(take);
            if let Some(dst) = self
                .partial
                .get_mut(self.partial_len..self.partial_len + take)
            {
                dst.copy_from_slice(now);
            }
            self.partial_len += take;
            bytes = rest;
            if self.partial_len == TS_PACKET_LEN {
                self.partial_len = 0;
                let packet = self.partial;
                self.packet(&packet, &mut emit);
            }
        }
    }

    /// Ends the stream: returns a PES still open with unbounded length; drops partial data.
    pub fn flush(&mut self) -> Vec<AccessUnit> {
        let mut units = Vec::new();
        self.partial_len = 0;
        for i in 0..self.streams.len() {
            self.finish_pes(i, true, &mut |au| units.push(au));
        }
        units
    }

    fn packet(&mut self, p: &[u8; TS_PACKET_LEN], emit: &mut impl FnMut(AccessUnit)) {
        self.stats.packets += 1;
        let [_, b1, b2, b3] = [p[0], p[1], p[2], p[3]];
        if b1 & 0x80 != 0 {
            // transport_error_indicator
            self.stats.malformed += 1;
            return;
        }
        let pusi = b1 & 0x40 != 0;
        let pid = (u16::from(b1 & 0x1f) << 8) | u16::from(b2);
        let afc = (b3 >> 4) & 0x3;
        let cc = b3 & 0x0f;
        if pid == NULL_PID {
            return;
        }
        if afc == 0 {
            self.stats.malformed += 1;
            return;
        }
        let mut payload_start = 4;
        let mut discontinuity = false;
        if afc & 0x2 != 0 {
            let af_len = usize::from(p[4]);
            let limit = if afc == 0x2 { 183 } else { 182 };
            if af_len > limit {
                self.stats.malformed += 1;
                return;
            }
            if af_len > 0 {
                discontinuity = p[5] & 0x80 != 0;
            }
            payload_start = 5 + af_len;
        }
        if afc & 0x1 == 0 {
            return;
        }
        let payload = p.get(payload_start..).unwrap_or_default();

        let es_index = self.streams.iter().position(|s| s.pid == pid);
        let tracked = pid == PAT_PID || Some(pid) == self.pmt_pid || es_index.is_some();
        if !tracked {
            return;
        }
        // Continuity (§2.4.3.3): +1 per payload packet; one duplicate allowed.
        let mut cc_broken = false;
        if let Some(last) = self.last_cc.get_mut(usize::from(pid)) {
            if *last != 0xff && !discontinuity {
                if cc == *last {
                    return; // duplicate packet
                }
                if cc != (*last + 1) & 0x0f {
                    self.stats.continuity_errors += 1;
                    cc_broken = true;
                }
            }
            *last = cc;
        }

        if pid == PAT_PID {
            let mut sec = std::mem::take(&mut self.pat);
            self.section_payload(&mut sec, pusi, cc_broken, payload, emit);
            self.pat = sec;
        } else if Some(pid) == self.pmt_pid {
            let mut sec = std::mem::take(&mut self.pmt);
            self.section_payload(&mut sec, pusi, cc_broken, payload, emit);
            self.pmt = sec;
        } else if let Some(i) = es_index {
            self.pes_payload(i, pusi, cc_broken, payload, emit);
        }
    }

    fn section_payload(
        &mut self,
        sec: &mut SectionBuf,
        pusi: bool,
        cc_broken: bool,
        payload: &[u8],
        emit: &mut impl FnMut(AccessUnit),
    ) {
        if cc_broken {
            sec.active = false;
            sec.buf.clear();
        }
        let mut data = payload;
        if pusi {
            let Some((&pointer, rest)) = payload.split_first() else {
                self.stats.malformed += 1;
                return;
            };
            let Some((tail, new)) = rest.split_at_checked(usize::from(pointer)) else {
                self.stats.malformed += 1;
                return;
            };
            if sec.active {
                sec.buf.extend_from_slice(tail);
                self.drain_sections(sec, emit);
            }
            sec.buf.clear();
            sec.active = true;
            data = new;
        } else if !sec.active {
            return;
        }
        if sec.buf.len() + data.len() > MAX_SECTION_BUF {
            self.stats.malformed += 1;
            sec.buf.clear();
            sec.active = false;
            return;
        }
        sec.buf.extend_from_slice(data);
        self.drain_sections(sec, emit);
    }

    /// Parses every complete section at the front of `sec.buf`.
    fn drain_sections(&mut self, sec: &mut SectionBuf, emit: &mut impl FnMut(AccessUnit)) {
        loop {
            match sec.buf.first() {
                None => return,
                Some(0xff) => {
                    // Stuffing: the rest of the packet is padding.
                    sec.buf.clear();
                    sec.active = false;
                    return;
                }
                Some(_) => {}
            }
            let Some(&[_, l0, l1]) = sec.buf.get(..3) else {
                return;
            };
            let total = 3 + ((usize::from(l0 & 0x0f) << 8) | usize::from(l1));
            let Some(section) = sec.buf.get(..total) else {
                return;
            };
            let section = section.to_vec();
            sec.buf.drain(..total);
            self.section(&section, emit);
        }
    }

    fn section(&mut self, s: &[u8], emit: &mut impl FnMut(AccessUnit)) {
        // table_id .. last_section_number (8) + CRC (4).
        if s.len() < 12 || crc32_mpeg2(s) != 0 {
            self.stats.malformed += 1;
            return;
        }
        let table_id = s[0];
        let current = s[5] & 0x01 != 0;
        if !current {
            return;
        }
        let body = s.get(8..s.len() - 4).unwrap_or_default();
        match table_id {
            0x00 => self.pat_section(body, emit),
            0x02 => self.pmt_section(s, body, emit),
            _ => {}
        }
    }

    fn pat_section(&mut self, body: &[u8], emit: &mut impl FnMut(AccessUnit)) {
        let chosen = body.chunks_exact(4).find_map(|e| {
            let program = u16::from_be_bytes([e[0], e[1]]);
            let pid = (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]);
            let wanted = match self.program {
                Some(p) => program == p,
                None => program != 0,
            };
            wanted.then_some(pid)
        });
        if let Some(pid) = chosen.filter(|&pid| self.pmt_pid != Some(pid)) {
            self.pmt_pid = Some(pid);
            self.pmt = SectionBuf::default();
            self.set_streams(Vec::new(), emit);
        }
    }

    fn pmt_section(&mut self, s: &[u8], body: &[u8], emit: &mut impl FnMut(AccessUnit)) {
        let program = u16::from_be_bytes([s[3], s[4]]);
        if self.program.is_some_and(|p| p != program) {
            return;
        }
        let Some(&[_, _, pi0, pi1]) = body.get(..4) else {
            self.stats.malformed += 1;
            return;
        };
        let program_info_length = (usize::from(pi0 & 0x0f) << 8) | usize::from(pi1);
        let Some(mut es) = body.get(4 + program_info_length..) else {
            self.stats.malformed += 1;
            return;
        };
        let mut found = Vec::new();
        while let Some(&[stream_type, p0, p1, l0, l1]) = es.get(..5) {
            let pid = (u16::from(p0 & 0x1f) << 8) | u16::from(p1);
            let len = (usize::from(l0 & 0x0f) << 8) | usize::from(l1);
            let Some(descriptors) = es.get(5..5 + len) else {
                self.stats.malformed += 1;
                break;
            };
            found.push((pid, classify(stream_type, descriptors)));
            es = es.get(5 + len..).unwrap_or_default();
        }
        self.set_streams(found, emit);
    }

    /// Replaces the stream list, keeping the PES state of streams that did not change.
    fn set_streams(&mut self, found: Vec<(u16, TsAudioKind)>, emit: &mut impl FnMut(AccessUnit)) {
        let same = found.len() == self.streams.len()
            && found
                .iter()
                .zip(&self.streams)
                .all(|(&(pid, kind), s)| s.pid == pid && s.kind == kind);
        if same {
            return;
        }
        for i in 0..self.streams.len() {
            self.finish_pes(i, true, emit);
        }
        for s in &self.streams {
            if let Some(cc) = self.last_cc.get_mut(usize::from(s.pid)) {
                *cc = 0xff;
            }
        }
        self.streams = found
            .into_iter()
            .filter(|&(pid, _)| pid != PAT_PID && pid != NULL_PID && Some(pid) != self.pmt_pid)
            .map(|(pid, kind)| EsState {
                pid,
                kind,
                buf: Vec::new(),
                active: false,
            })
            .collect();
    }

    fn pes_payload(
        &mut self,
        i: usize,
        pusi: bool,
        cc_broken: bool,
        payload: &[u8],
        emit: &mut impl FnMut(AccessUnit),
    ) {
        if let Some(s) = self.streams.get_mut(i).filter(|_| cc_broken) {
            if s.active {
                self.stats.malformed += 1;
            }
            s.active = false;
            s.buf.clear();
        }
        if pusi {
            self.finish_pes(i, true, emit);
            if let Some(s) = self.streams.get_mut(i) {
                s.buf.clear();
                s.active = true;
            }
        }
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        if !s.active {
            return;
        }
        if s.buf.len() + payload.len() > MAX_PES_BUF {
            s.buf.clear();
            s.active = false;
            self.stats.malformed += 1;
            return;
        }
        s.buf.extend_from_slice(payload);
        self.finish_pes(i, false, emit);
    }

    /// Emits the PES of stream `i` if complete. With `ending`, an open PES is complete if
    /// its length is unbounded, and is dropped as truncated otherwise.
    fn finish_pes(&mut self, i: usize, ending: bool, emit: &mut impl FnMut(AccessUnit)) {
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        if !s.active {
            return;
        }
        let declared = s
            .buf
            .get(4..6)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
        let end = match declared {
            Some(0) if ending => s.buf.len(),
            Some(0) | None if !ending => return,
            Some(len) if s.buf.len() >= 6 + len => 6 + len,
            _ if !ending => return,
            _ => {
                s.active = false;
                s.buf.clear();
                self.stats.malformed += 1;
                return;
            }
        };
        s.active = false;
        let pid = s.pid;
        let kind = s.kind;
        let buf = std::mem::take(&mut s.buf);
        let Some(pes) = buf.get(..end) else {
            return;
        };
        let Some((pts, data)) = parse_pes(pes) else {
            self.stats.malformed += 1;
            return;
        };
        if let TsAudioKind::Opus { .. } = kind {
            let mut rest = data;
            let mut pts = pts;
            while !rest.is_empty() {
                let Some((packet, next)) = split_opus_control(rest) else {
                    self.stats.malformed += 1;
                    return;
                };
                self.stats.access_units += 1;
                emit(AccessUnit {
                    pid,
                    pts,
                    stream: kind,
                    data: packet.to_vec(),
                });
                pts = pts.and_then(|p| {
                    let samples = u64::from(opus_packet_samples(packet)?);
                    Some((p + samples * CLOCK_90K / 48_000) % PTS_MODULO)
                });
                rest = next;
            }
        } else {
            self.stats.access_units += 1;
            emit(AccessUnit {
                pid,
                pts,
                stream: kind,
                data: data.to_vec(),
            });
        }
    }
}

/// Classifies an elementary stream by `stream_type` and its descriptors.
fn classify(stream_type: u8, mut descriptors: &[u8]) -> TsAudioKind {
    let mut registration = None;
    let mut opus_channels = None;
    while let Some(&[tag, len]) = descriptors.get(..2) {
        let Some(body) = descriptors.get(2..2 + usize::from(len)) else {
            break;
        };
        match (tag, body) {
            (TAG_REGISTRATION, [a, b, c, d, ..]) => registration = Some([*a, *b, *c, *d]),
            (TAG_DVB_EXTENSION, [EXT_TAG_OPUS, code, ..]) => {
                // channel_config_code: 0 = dual mono (2 channels), 1..=8 = channel count.
                opus_channels = Some(match *code {
                    0 => 2,
                    c @ 1..=8 => c,
                    _ => 0,
                });
            }
            _ => {}
        }
        descriptors = descriptors.get(2 + usize::from(len)..).unwrap_or_default();
    }
    match (stream_type, registration) {
        (STREAM_TYPE_PRIVATE_PES, Some(REG_OPUS)) => TsAudioKind::Opus {
            channels: opus_channels.unwrap_or(0),
        },
        (STREAM_TYPE_PRIVATE_PES, Some(REG_302M)) => TsAudioKind::S302m,
        (0x03 | 0x04, _) => TsAudioKind::Mp2,
        (0x0f | 0x11, _) => TsAudioKind::Aac,
        (st, _) => TsAudioKind::Unknown(st),
    }
}

/// Splits a PES into its PTS and payload (§2.4.3.6).
fn parse_pes(pes: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let &[0x00, 0x00, 0x01, stream_id, _, _] = pes.get(..6)? else {
        return None;
    };
    // Streams without the optional PES header.
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return Some((None, pes.get(6..)?));
    }
    let &[flags0, flags1, header_len] = pes.get(6..9)? else {
        return None;
    };
    if flags0 & 0xc0 != 0x80 {
        return None;
    }
    let header = pes.get(9..9 + usize::from(header_len))?;
    let pts = if flags1 & 0x80 != 0 {
        let p = header.get(..5)?;
        Some(
            (u64::from((p[0] >> 1) & 0x07) << 30)
                | (u64::from(p[1]) << 22)
                | (u64::from(p[2] >> 1) << 15)
                | (u64::from(p[3]) << 7)
                | u64::from(p[4] >> 1),
        )
    } else {
        None
    };
    Some((pts, pes.get(9 + usize::from(header_len)..)?))
}

/// Splits one `opus_control_header` + Opus packet off the front of `data`.
fn split_opus_control(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let &[b0, b1] = data.get(..2)? else {
        return None;
    };
    // 11-bit control_header_prefix 0x3FF.
    if b0 != 0x7f || b1 & 0xe0 != 0xe0 {
        return None;
    }
    let start_trim = b1 & 0x10 != 0;
    let end_trim = b1 & 0x08 != 0;
    let control_extension = b1 & 0x04 != 0;
    let mut i = 2;
    let mut au_size = 0usize;
    loop {
        let b = *data.get(i)?;
        i += 1;
        au_size += usize::from(b);
        if b != 0xff {
            break;
        }
    }
    if start_trim {
        i += 2;
    }
    if end_trim {
        i += 2;
    }
    if control_extension {
        i += 1 + usize::from(*data.get(i)?);
    }
    let packet = data.get(i..i + au_size)?;
    Some((packet, data.get(i + au_size..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_control_header_variants() {
        let mut d = vec![0x7f, 0xe0, 0xff, 0x01];
        d.extend(std::iter::repeat_n(0xaa, 256));
        d.extend([0x7f, 0xf8, 0x02, 0, 1, 0, 2, 0xbb, 0xcc]);
        let (a, rest) = split_opus_control(&d).expect("first");
        assert_eq!(a.len(), 256);
        let (b, rest) = split_opus_control(rest).expect("second");
        assert_eq!(b, &[0xbb, 0xcc]);
        assert!(rest.is_empty());
        assert!(split_opus_control(&[0x7f, 0xe0, 0x05, 1]).is_none());
        assert!(split_opus_control(&[0x47, 0xe0, 0x00]).is_none());
    }

    #[test]
    fn pes_pts_round_trip() {
        let pts: u64 = 0x1_2345_6789;
        let pes = [
            0,
            0,
            1,
            0xbd,
            0,
            9,
            0x84,
            0x80,
            5,
            0x20 | ((pts >> 29) as u8 & 0x0e) | 1,
            (pts >> 22) as u8,
            ((pts >> 14) as u8 & 0xfe) | 1,
            (pts >> 7) as u8,
            ((pts << 1) as u8 & 0xfe) | 1,
            0xaa,
        ];
        assert_eq!(parse_pes(&pes), Some((Some(pts), &[0xaa][..])));
        assert_eq!(parse_pes(&pes[..12]), None);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut d = TsDemuxer::new();
        assert!(d.push(&[0u8; 1000]).is_empty());
        assert_eq!(d.stats().skipped_bytes, 1000);
        let mut p = [0xffu8; 188];
        p[0] = SYNC_BYTE;
        p[1] = 0x80;
        assert!(d.push(&p).is_empty());
        assert_eq!(d.stats().malformed, 1);
    }
}
