//! WAV / Broadcast WAVE (EBU Tech 3285) / RF64 (EBU Tech 3306) headers, sans-IO.
//!
//! A recorder writes [`Header::encode`] at offset 0, then samples ([`pack`]), and rewrites the
//! header in place as the data grows: the header's length never depends on the data size,
//! because a `JUNK` chunk the size of a `ds64` chunk is reserved up front. When the data
//! passes what 32-bit sizes can say, the same header is written as RF64 (`JUNK` becomes
//! `ds64`) without moving a byte of audio.
//!
//! [`parse`] reads the chunks of a file's beginning (for `estuary repair` and for tests) and
//! [`repair`] says which bytes to rewrite so that a file cut short (kill -9, power loss) has
//! sizes that match its length.

use std::fmt;

/// `ds64` body: RIFF size, data size, sample count (u64 each), table length (u32).
const DS64_BODY: usize = 28;
/// `bext` body up to and excluding the coding history (EBU Tech 3285 v2).
const BEXT_BODY: usize = 602;
/// `WAVE_FORMAT_EXTENSIBLE` `fmt ` body.
const FMT_EXT_BODY: usize = 40;
const FORMAT_PCM: u16 = 1;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// KSDATAFORMAT_SUBTYPE_PCM after its first two bytes (which hold the format tag).
const PCM_GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];
/// What a 32-bit size field says when the real size is in `ds64`.
const RF64_SIZE: u32 = 0xFFFF_FFFF;

/// Sample layout of the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub channels: u16,
    pub sample_rate: u32,
    /// 16, 24 or 32.
    pub bits: u8,
}

impl Spec {
    pub fn bytes_per_frame(&self) -> u64 {
        u64::from(self.channels) * u64::from(self.bits / 8)
    }
}

/// The `bext` fields a recorder fills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bext {
    pub description: String,
    pub originator: String,
    pub originator_reference: String,
    /// `yyyy-mm-dd`.
    pub origination_date: String,
    /// `hh:mm:ss`.
    pub origination_time: String,
    /// Samples since midnight in BWF; here the media-clock position of the first sample.
    pub time_reference: u64,
}

/// Everything in a header but the sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub spec: Spec,
    pub bext: Option<Bext>,
    /// An iXML document (EBU/iXML track names); padded to an even length.
    pub ixml: Option<String>,
    /// Room reserved for this many [`Cue`]s (`cue ` + `LIST`/`adtl`, the rest `JUNK`), so
    /// markers can be added by rewriting the header in place.
    pub cue_slots: usize,
}

/// A marked region of the file, as DAWs show them: a `cue ` point at `offset` (frames
/// from the start), and in `LIST`/`adtl` an `ltxt` giving its length and a `labl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    pub offset: u32,
    pub frames: u32,
    /// At most 15 bytes are kept.
    pub label: String,
}

/// `cue ` point: id, position, "data", chunk start, block start, sample offset.
const CUE_POINT: usize = 24;
/// `ltxt` chunk: header, id, length, purpose, country, language, dialect, code page.
const LTXT_CHUNK: usize = 8 + 20;
/// `labl` text, NUL padded.
const LABEL: usize = 16;
const LABL_CHUNK: usize = 8 + 4 + LABEL;

/// Bytes reserved for `slots` cues: the `cue ` and `LIST` chunks when full, and a `JUNK`
/// header for whatever they leave.
fn cue_region(slots: usize) -> usize {
    if slots == 0 {
        return 0;
    }
    (8 + 4 + CUE_POINT * slots) + (8 + 4 + (LTXT_CHUNK + LABL_CHUNK) * slots) + 8
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WavError {
    Truncated,
    NotWave,
    NoFormat,
    NoData,
    Unsupported(String),
    /// A chunk that claims more bytes than a 64-bit file can hold.
    BadSize,
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WavError::Truncated => write!(f, "the header is cut short"),
            WavError::NotWave => write!(f, "not a RIFF/RF64 WAVE file"),
            WavError::NoFormat => write!(f, "no fmt chunk before the data"),
            WavError::NoData => write!(f, "no data chunk"),
            WavError::Unsupported(what) => write!(f, "unsupported: {what}"),
            WavError::BadSize => write!(f, "a chunk size overflows"),
        }
    }
}

impl std::error::Error for WavError {}

/// Builds iXML naming each track (BWF-J/iXML `TRACK_LIST`).
pub fn ixml_tracks(project: &str, names: &[String]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<BWFXML>\n");
    xml.push_str("<IXML_VERSION>1.61</IXML_VERSION>\n");
    xml.push_str(&format!("<PROJECT>{}</PROJECT>\n", escape(project)));
    xml.push_str(&format!(
        "<TRACK_LIST>\n<TRACK_COUNT>{}</TRACK_COUNT>\n",
        names.len()
    ));
    for (i, name) in names.iter().enumerate() {
        xml.push_str(&format!(
            "<TRACK><CHANNEL_INDEX>{n}</CHANNEL_INDEX><INTERLEAVE_INDEX>{n}</INTERLEAVE_INDEX><NAME>{}</NAME></TRACK>\n",
            escape(name),
            n = i + 1
        ));
    }
    xml.push_str("</TRACK_LIST>\n</BWFXML>\n");
    xml
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Header {
    /// Whether `data_bytes` of audio need the RF64 form.
    pub fn needs_rf64(&self, data_bytes: u64) -> bool {
        self.riff_size(data_bytes) > u64::from(u32::MAX - 1)
    }

    fn riff_size(&self, data_bytes: u64) -> u64 {
        (self.len() as u64 - 8)
            .saturating_add(data_bytes)
            .saturating_add(data_bytes & 1)
    }

    /// The header's length: audio starts here, whatever the data size.
    pub fn len(&self) -> usize {
        let mut n = 12 + 8 + DS64_BODY + 8 + FMT_EXT_BODY;
        if self.bext.is_some() {
            n += 8 + BEXT_BODY;
        }
        if let Some(ixml) = &self.ixml {
            n += 8 + padded(ixml.len());
        }
        n + cue_region(self.cue_slots) + 8
    }

    /// Never empty; for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The header for `data_bytes` of audio: RIFF while sizes fit in 32 bits (with a `JUNK`
    /// chunk where `ds64` would go), RF64 beyond.
    pub fn encode(&self, data_bytes: u64) -> Vec<u8> {
        self.encode_with_cues(data_bytes, &[])
    }

    /// [`encode`](Self::encode) with `cues` (the first `cue_slots` of them) marked.
    pub fn encode_with_cues(&self, data_bytes: u64, cues: &[Cue]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        let rf64 = self.needs_rf64(data_bytes);
        let riff_size = self.riff_size(data_bytes);
        if rf64 {
            out.extend_from_slice(b"RF64");
            put_u32(&mut out, RF64_SIZE);
            out.extend_from_slice(b"WAVE");
            out.extend_from_slice(b"ds64");
            put_u32(&mut out, DS64_BODY as u32);
            out.extend_from_slice(&riff_size.to_le_bytes());
            out.extend_from_slice(&data_bytes.to_le_bytes());
            let frames = data_bytes / self.spec.bytes_per_frame().max(1);
            out.extend_from_slice(&frames.to_le_bytes());
            put_u32(&mut out, 0);
        } else {
            out.extend_from_slice(b"RIFF");
            put_u32(&mut out, riff_size as u32);
            out.extend_from_slice(b"WAVE");
            out.extend_from_slice(b"JUNK");
            put_u32(&mut out, DS64_BODY as u32);
            out.extend_from_slice(&[0; DS64_BODY]);
        }
        self.encode_fmt(&mut out);
        if let Some(bext) = &self.bext {
            out.extend_from_slice(b"bext");
            put_u32(&mut out, BEXT_BODY as u32);
            put_text(&mut out, &bext.description, 256);
            put_text(&mut out, &bext.originator, 32);
            put_text(&mut out, &bext.originator_reference, 32);
            put_text(&mut out, &bext.origination_date, 10);
            put_text(&mut out, &bext.origination_time, 8);
            out.extend_from_slice(&bext.time_reference.to_le_bytes());
            out.extend_from_slice(&2u16.to_le_bytes()); // version
            out.extend_from_slice(&[0; 64]); // UMID
            out.extend_from_slice(&[0; 10]); // loudness fields (v2), not measured here
            out.extend_from_slice(&[0; 180]); // reserved
        }
        if let Some(ixml) = &self.ixml {
            out.extend_from_slice(b"iXML");
            put_u32(&mut out, padded(ixml.len()) as u32);
            out.extend_from_slice(ixml.as_bytes());
            if ixml.len() % 2 == 1 {
                out.push(b' ');
            }
        }
        self.encode_cues(&mut out, cues);
        out.extend_from_slice(b"data");
        put_u32(&mut out, if rf64 { RF64_SIZE } else { data_bytes as u32 });
        debug_assert_eq!(out.len(), self.len());
        out
    }

    fn encode_cues(&self, out: &mut Vec<u8>, cues: &[Cue]) {
        if self.cue_slots == 0 {
            return;
        }
        let start = out.len();
        let cues = &cues[..cues.len().min(self.cue_slots)];
        if !cues.is_empty() {
            out.extend_from_slice(b"cue ");
            put_u32(out, (4 + CUE_POINT * cues.len()) as u32);
            put_u32(out, cues.len() as u32);
            for (id, cue) in (1u32..).zip(cues) {
                put_u32(out, id);
                put_u32(out, cue.offset); // play order position
                out.extend_from_slice(b"data");
                put_u32(out, 0);
                put_u32(out, 0);
                put_u32(out, cue.offset);
            }
            out.extend_from_slice(b"LIST");
            put_u32(out, (4 + (LTXT_CHUNK + LABL_CHUNK) * cues.len()) as u32);
            out.extend_from_slice(b"adtl");
            for (id, cue) in (1u32..).zip(cues) {
                out.extend_from_slice(b"ltxt");
                put_u32(out, 20);
                put_u32(out, id);
                put_u32(out, cue.frames);
                out.extend_from_slice(b"rgn ");
                out.extend_from_slice(&[0; 8]); // country, language, dialect, code page
                out.extend_from_slice(b"labl");
                put_u32(out, (4 + LABEL) as u32);
                put_u32(out, id);
                put_text(out, &cue.label, LABEL - 1);
                out.push(0);
            }
        }
        let left = cue_region(self.cue_slots) - (out.len() - start);
        out.extend_from_slice(b"JUNK");
        put_u32(out, (left - 8) as u32);
        out.resize(out.len() + left - 8, 0);
    }

    fn encode_fmt(&self, out: &mut Vec<u8>) {
        let s = self.spec;
        let block = s.channels * u16::from(s.bits / 8);
        out.extend_from_slice(b"fmt ");
        put_u32(out, FMT_EXT_BODY as u32);
        out.extend_from_slice(&FORMAT_EXTENSIBLE.to_le_bytes());
        out.extend_from_slice(&s.channels.to_le_bytes());
        put_u32(out, s.sample_rate);
        put_u32(out, s.sample_rate * u32::from(block));
        out.extend_from_slice(&block.to_le_bytes());
        out.extend_from_slice(&u16::from(s.bits).to_le_bytes());
        out.extend_from_slice(&22u16.to_le_bytes());
        out.extend_from_slice(&u16::from(s.bits).to_le_bytes()); // valid bits
        put_u32(out, 0); // no speaker positions: these are tracks, not a surround layout
        out.extend_from_slice(&FORMAT_PCM.to_le_bytes());
        out.extend_from_slice(&PCM_GUID_TAIL);
    }
}

fn padded(n: usize) -> usize {
    n + (n & 1)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// ASCII field of fixed width, NUL padded, cut at a character boundary.
fn put_text(out: &mut Vec<u8>, text: &str, width: usize) {
    let mut n = text.len().min(width);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    out.extend_from_slice(&text.as_bytes()[..n]);
    out.resize(out.len() + width - n, 0);
}

/// Appends left-justified 32-bit samples as little-endian PCM of `bits` (16, 24 or 32).
pub fn pack(samples: &[i32], bits: u8, out: &mut Vec<u8>) {
    match bits {
        16 => pack_as::<2>(samples, 1, &[0], out),
        24 => pack_as::<3>(samples, 1, &[0], out),
        _ => pack_as::<4>(samples, 1, &[0], out),
    }
}

/// [`pack`] for `channels` (indices into frames of `stride` samples) of each frame of
/// interleaved `data`: one file's share of an input.
pub fn pack_channels(data: &[i32], stride: usize, channels: &[usize], bits: u8, out: &mut Vec<u8>) {
    match bits {
        16 => pack_as::<2>(data, stride, channels, out),
        24 => pack_as::<3>(data, stride, channels, out),
        _ => pack_as::<4>(data, stride, channels, out),
    }
}

/// The top `W` bytes of each chosen sample, little-endian. `W` is a constant so each copy is
/// a few moves, not a call to `memcpy` per sample; the output is sized once and filled in
/// place.
fn pack_as<const W: usize>(data: &[i32], stride: usize, channels: &[usize], out: &mut Vec<u8>) {
    let stride = stride.max(1);
    let frames = data.len() / stride;
    let frame_bytes = channels.len() * W;
    let start = out.len();
    out.resize(start + frames * frame_bytes, 0);
    if frame_bytes == 0 {
        return;
    }
    for (o, frame) in out[start..]
        .chunks_exact_mut(frame_bytes)
        .zip(data.chunks_exact(stride))
    {
        for (o, &c) in o.chunks_exact_mut(W).zip(channels) {
            let bytes = frame.get(c).copied().unwrap_or(0).to_le_bytes();
            let mut top = [0u8; W];
            top.copy_from_slice(&bytes[4 - W..]);
            o.copy_from_slice(&top);
        }
    }
}

/// [`pack_channels`] for several files at once: each `(channels, out)` gets its channels of
/// every frame of `data` (a block small enough to stay in cache), appended.
pub fn pack_tracks(data: &[i32], stride: usize, outs: &mut [(&[usize], &mut Vec<u8>)], bits: u8) {
    match bits {
        16 => pack_tracks_as::<2>(data, stride, outs),
        24 => pack_tracks_as::<3>(data, stride, outs),
        _ => pack_tracks_as::<4>(data, stride, outs),
    }
}

fn pack_tracks_as<const W: usize>(
    data: &[i32],
    stride: usize,
    outs: &mut [(&[usize], &mut Vec<u8>)],
) {
    let stride = stride.max(1);
    let frames = data.len() / stride;
    // One output at a time: the block (100 ms) stays in cache, and each output is sized
    // once and filled in place, not grown a sample at a time.
    for (channels, out) in outs.iter_mut() {
        match **channels {
            // A mono file's channel: a strided walk, no per-sample bounds check.
            [c] if c < stride && frames > 0 => {
                let start = out.len();
                out.resize(start + frames * W, 0);
                for (o, &s) in out[start..]
                    .chunks_exact_mut(W)
                    .zip(data[c..].iter().step_by(stride))
                {
                    o.copy_from_slice(&s.to_le_bytes()[4 - W..]);
                }
            }
            _ => pack_as::<W>(data, stride, channels, out),
        }
    }
}

/// Reads little-endian PCM of `bits` back into left-justified 32-bit samples.
pub fn unpack(bytes: &[u8], bits: u8) -> Vec<i32> {
    match bits {
        16 => bytes
            .chunks_exact(2)
            .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])) << 16)
            .collect(),
        24 => bytes
            .chunks_exact(3)
            .map(|b| i32::from_le_bytes([0, b[0], b[1], b[2]]))
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

/// What [`parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub spec: Spec,
    pub rf64: bool,
    pub bext: Option<Bext>,
    pub ixml: Option<String>,
    /// Offset of the first audio byte.
    pub data_offset: u64,
    /// The data size the header states (from `ds64` in RF64).
    pub data_size: u64,
    /// The RIFF size the header states.
    pub riff_size: u64,
    /// Offset of the `ds64` or `JUNK` chunk reserved for it, when present.
    pub ds64_offset: Option<u64>,
    /// Cue points, with the length and label `LIST`/`adtl` gives them.
    pub cues: Vec<Cue>,
}

/// Reads the chunks before the audio. `bytes` is the file's beginning (the whole header);
/// the data chunk's contents need not be there.
pub fn parse(bytes: &[u8]) -> Result<Info, WavError> {
    let magic = bytes.get(0..4).ok_or(WavError::Truncated)?;
    let rf64 = match magic {
        b"RIFF" => false,
        b"RF64" | b"BW64" => true,
        _ => return Err(WavError::NotWave),
    };
    if bytes.get(8..12).ok_or(WavError::Truncated)? != b"WAVE" {
        return Err(WavError::NotWave);
    }
    let mut riff_size = u64::from(le32(bytes, 4)?);
    let mut spec = None;
    let mut bext = None;
    let mut ixml = None;
    let mut ds64_offset = None;
    let mut ds64_data = None;
    let mut cue_points: Vec<(u32, u32)> = Vec::new();
    let mut regions: Vec<(u32, u32)> = Vec::new();
    let mut labels: Vec<(u32, String)> = Vec::new();
    let mut at: usize = 12;
    loop {
        let id = bytes.get(at..at + 4).ok_or(WavError::Truncated)?;
        let size = le32(bytes, at + 4)? as usize;
        let body_at = at + 8;
        if id == b"data" {
            let spec = spec.ok_or(WavError::NoFormat)?;
            let data_size = match (rf64, ds64_data) {
                (true, Some(d)) => d,
                (true, None) => return Err(WavError::Unsupported("RF64 without ds64".into())),
                (false, _) => size as u64,
            };
            return Ok(Info {
                spec,
                rf64,
                bext,
                ixml,
                data_offset: body_at as u64,
                data_size,
                riff_size,
                ds64_offset: ds64_offset.map(|o: usize| o as u64),
                cues: cue_points
                    .iter()
                    .map(|&(id, offset)| Cue {
                        offset,
                        frames: regions.iter().find(|r| r.0 == id).map_or(0, |r| r.1),
                        label: labels
                            .iter()
                            .find(|l| l.0 == id)
                            .map(|l| l.1.clone())
                            .unwrap_or_default(),
                    })
                    .collect(),
            });
        }
        let body = bytes
            .get(body_at..body_at.checked_add(size).ok_or(WavError::BadSize)?)
            .ok_or(WavError::Truncated)?;
        match id {
            b"ds64" => {
                ds64_offset = Some(at);
                if body.len() < 24 {
                    return Err(WavError::Truncated);
                }
                if rf64 {
                    riff_size = le64(body, 0)?;
                    ds64_data = Some(le64(body, 8)?);
                }
            }
            b"JUNK" if size == DS64_BODY && ds64_offset.is_none() => ds64_offset = Some(at),
            b"fmt " => spec = Some(parse_fmt(body)?),
            b"bext" => bext = Some(parse_bext(body)?),
            b"iXML" => ixml = Some(String::from_utf8_lossy(body).trim_end().to_string()),
            b"cue " => {
                cue_points = body
                    .get(4..)
                    .unwrap_or_default()
                    .chunks_exact(CUE_POINT)
                    .take(MAX_CUES_READ)
                    .map(|p| Ok((le32(p, 0)?, le32(p, 20)?)))
                    .collect::<Result<_, WavError>>()?;
            }
            b"LIST" if body.get(..4) == Some(b"adtl") => {
                parse_adtl(&body[4..], &mut regions, &mut labels)
            }
            _ => {}
        }
        at = body_at.checked_add(padded(size)).ok_or(WavError::BadSize)?;
    }
}

/// Cues read from a file; more are ignored (matching them up is quadratic).
const MAX_CUES_READ: usize = 1024;

/// `ltxt` lengths and `labl` texts by cue id; stops at the first malformed sub-chunk.
fn parse_adtl(mut b: &[u8], regions: &mut Vec<(u32, u32)>, labels: &mut Vec<(u32, String)>) {
    while let (Some(id), Ok(size)) = (b.get(..4), le32(b, 4)) {
        if regions.len() + labels.len() >= 2 * MAX_CUES_READ {
            return;
        }
        let Some(body) = b.get(8..8usize.saturating_add(size as usize)) else {
            return;
        };
        match (id, le32(body, 0)) {
            (b"ltxt", Ok(cue)) => {
                if let Ok(frames) = le32(body, 4) {
                    regions.push((cue, frames));
                }
            }
            (b"labl", Ok(cue)) => {
                let text = &body[4..];
                let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
                labels.push((cue, String::from_utf8_lossy(&text[..end]).into_owned()));
            }
            _ => {}
        }
        b = b.get(8 + padded(size as usize)..).unwrap_or_default();
    }
}

fn parse_fmt(body: &[u8]) -> Result<Spec, WavError> {
    let tag = le16(body, 0)?;
    let channels = le16(body, 2)?;
    let sample_rate = le32(body, 4)?;
    let bits = le16(body, 14)?;
    let pcm = match tag {
        FORMAT_PCM => true,
        FORMAT_EXTENSIBLE => le16(body, 24)? == FORMAT_PCM,
        _ => false,
    };
    if !pcm {
        return Err(WavError::Unsupported(format!("format tag {tag:#x}")));
    }
    if !matches!(bits, 16 | 24 | 32) || channels == 0 || sample_rate == 0 {
        return Err(WavError::Unsupported(format!(
            "{channels} channels of {bits} bits at {sample_rate} Hz"
        )));
    }
    Ok(Spec {
        channels,
        sample_rate,
        bits: bits as u8,
    })
}

fn parse_bext(body: &[u8]) -> Result<Bext, WavError> {
    let text = |from: usize, width: usize| -> Result<String, WavError> {
        let raw = body.get(from..from + width).ok_or(WavError::Truncated)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(String::from_utf8_lossy(&raw[..end]).into_owned())
    };
    Ok(Bext {
        description: text(0, 256)?,
        originator: text(256, 32)?,
        originator_reference: text(288, 32)?,
        origination_date: text(320, 10)?,
        origination_time: text(330, 8)?,
        time_reference: le64(body, 338)?,
    })
}

fn le16(b: &[u8], at: usize) -> Result<u16, WavError> {
    let s = b.get(at..at + 2).ok_or(WavError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], at: usize) -> Result<u32, WavError> {
    let s = b.get(at..at + 4).ok_or(WavError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], at: usize) -> Result<u64, WavError> {
    let s = b.get(at..at + 8).ok_or(WavError::Truncated)?;
    let mut a = [0; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// How to make a file of `file_len` bytes whose header is `info` consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Whole frames of audio the file holds.
    pub data_size: u64,
    /// Cut the file to this length (drops a partial last frame).
    pub truncate_to: u64,
    /// Bytes to write at offsets.
    pub patches: Vec<(u64, Vec<u8>)>,
}

impl Repair {
    pub fn is_noop(&self, file_len: u64) -> bool {
        self.patches.is_empty() && self.truncate_to == file_len
    }
}

/// Sizes that match a file of `file_len` bytes (a header written by any tool, as long as it
/// has a `ds64` or a 28-byte `JUNK` for files past 4 GiB). `header` is the file's first bytes.
pub fn repair(header: &[u8], file_len: u64) -> Result<Repair, WavError> {
    let info = parse(header)?;
    let frame = info.spec.bytes_per_frame();
    let available = file_len.saturating_sub(info.data_offset);
    let data_size = available - available % frame;
    let truncate_to = info.data_offset + data_size;
    let riff_size = truncate_to - 8;
    let mut patches = Vec::new();
    let data_size_at = info.data_offset - 4;
    let fits = riff_size <= u64::from(u32::MAX - 1);
    if fits && !info.rf64 {
        if info.riff_size != riff_size {
            patches.push((4, (riff_size as u32).to_le_bytes().to_vec()));
        }
        if info.data_size != data_size {
            patches.push((data_size_at, (data_size as u32).to_le_bytes().to_vec()));
        }
    } else {
        let ds64 = info.ds64_offset.ok_or_else(|| {
            WavError::Unsupported("past 4 GiB without room for a ds64 chunk".into())
        })?;
        if !info.rf64 || info.riff_size != riff_size || info.data_size != data_size {
            let mut head = b"RF64".to_vec();
            head.extend_from_slice(&RF64_SIZE.to_le_bytes());
            patches.push((0, head));
            let mut chunk = b"ds64".to_vec();
            chunk.extend_from_slice(&(DS64_BODY as u32).to_le_bytes());
            chunk.extend_from_slice(&riff_size.to_le_bytes());
            chunk.extend_from_slice(&data_size.to_le_bytes());
            chunk.extend_from_slice(&(data_size / frame).to_le_bytes());
            patches.push((ds64, chunk));
            patches.push((data_size_at, RF64_SIZE.to_le_bytes().to_vec()));
        }
    }
    Ok(Repair {
        data_size,
        truncate_to,
        patches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(bits: u8, channels: u16) -> Header {
        Header {
            spec: Spec {
                channels,
                sample_rate: 48_000,
                bits,
            },
            bext: Some(Bext {
                description: "test".into(),
                originator: "Estuary".into(),
                origination_date: "2026-11-21".into(),
                origination_time: "01:02:03".into(),
                time_reference: 123_456_789_012,
                ..Bext::default()
            }),
            ixml: Some(ixml_tracks("p", &["Kick".into(), "Snare & <1>".into()])),
            cue_slots: 0,
        }
    }

    #[test]
    fn header_round_trips_and_keeps_its_length() {
        let h = header(24, 2);
        let small = h.encode(6_000);
        let big = h.encode(5 << 30);
        assert_eq!(small.len(), big.len());
        let a = parse(&small).expect("test");
        assert!(!a.rf64);
        assert_eq!(a.data_size, 6_000);
        assert_eq!(a.data_offset, small.len() as u64);
        assert_eq!(a.bext, h.bext);
        assert!(
            a.ixml
                .expect("test")
                .contains("<NAME>Snare &amp; &lt;1&gt;</NAME>")
        );
        let b = parse(&big).expect("test");
        assert!(b.rf64);
        assert_eq!(b.data_size, 5 << 30);
        assert_eq!(b.ds64_offset, Some(12));
    }

    #[test]
    fn cues_fit_the_reserved_room_and_round_trip() {
        let h = Header {
            cue_slots: 2,
            ..header(24, 2)
        };
        let cue = |offset, frames, label: &str| Cue {
            offset,
            frames,
            label: label.into(),
        };
        let cues = [
            cue(48_000, 96, "gap: lost"),
            cue(96_000, 4_800, "gap: dropped!!!!!"),
            cue(1, 1, "not kept"),
        ];
        let none = h.encode_with_cues(6_000, &[]);
        let one = h.encode_with_cues(6_000, &cues[..1]);
        let all = h.encode_with_cues(5 << 30, &cues);
        assert_eq!(none.len(), h.len());
        assert_eq!(one.len(), h.len());
        assert_eq!(all.len(), h.len());
        assert_eq!(parse(&none).expect("none").cues, []);
        assert_eq!(parse(&one).expect("one").cues, cues[..1]);
        let parsed = parse(&all).expect("all");
        assert_eq!(parsed.data_size, 5 << 30);
        assert_eq!(
            parsed.cues,
            [cues[0].clone(), cue(96_000, 4_800, "gap: dropped!!!")]
        );
        assert_eq!(parsed.bext, h.bext);
    }

    #[test]
    fn pack_unpack_each_width() {
        let samples = [i32::MIN, -256, 0, 256, 0x7FFF_FF00];
        for bits in [16, 24, 32] {
            let mut out = Vec::new();
            pack(&samples, bits, &mut out);
            assert_eq!(out.len(), samples.len() * usize::from(bits / 8));
            let back = unpack(&out, bits);
            let keep = |s: i32| s & (-1i32 << (32 - u32::from(bits)));
            let want: Vec<i32> = samples.iter().map(|&s| keep(s)).collect();
            assert_eq!(back, want);
        }
    }

    #[test]
    fn repair_fixes_a_cut_file() {
        let h = header(24, 2);
        let mut file = h.encode(0);
        let start = file.len() as u64;
        file.extend(std::iter::repeat_n(7u8, 6 * 1000 + 4)); // a partial frame at the end
        let r = repair(&file, file.len() as u64).expect("test");
        assert_eq!(r.data_size, 6000);
        assert_eq!(r.truncate_to, start + 6000);
        for (at, bytes) in &r.patches {
            file[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
        }
        file.truncate(r.truncate_to as usize);
        let info = parse(&file).expect("test");
        assert_eq!(info.data_size, 6000);
        assert_eq!(info.riff_size, file.len() as u64 - 8);
        assert!(
            repair(&file, file.len() as u64)
                .expect("test")
                .is_noop(file.len() as u64)
        );
    }

    #[test]
    fn repair_upgrades_to_rf64_past_4_gib() {
        let h = header(16, 1);
        let mut file = h.encode(0);
        let len = (5u64 << 30) + file.len() as u64;
        let r = repair(&file, len).expect("test");
        for (at, bytes) in &r.patches {
            file[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
        }
        let info = parse(&file).expect("test");
        assert!(info.rf64);
        assert_eq!(info.data_size, 5 << 30);
        assert_eq!(file, h.encode(5 << 30));
    }

    #[test]
    fn rejects_what_is_not_pcm_wave() {
        assert_eq!(parse(b"RIFX"), Err(WavError::NotWave));
        assert_eq!(
            parse(b"RIFF\0\0\0\0WAVEdata\0\0\0\0"),
            Err(WavError::NoFormat)
        );
        assert_eq!(
            parse(b"RIFF\0\0\0\0WAVEfmt \xff\xff\xff\xff"),
            Err(WavError::Truncated)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn parse_and_repair_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..900), len in any::<u64>()) {
            let _ = parse(&bytes);
            let _ = repair(&bytes, len);
        }

        #[test]
        fn mutated_headers_never_panic(at in 0usize..800, byte in any::<u8>(), data in 0u64..(1 << 34)) {
            let mut bytes = header(24, 8).encode(data);
            let i = at % bytes.len();
            bytes[i] = byte;
            let _ = parse(&bytes);
            let _ = repair(&bytes, data);
        }

        #[test]
        fn packing_all_tracks_in_one_pass_equals_one_pass_each(
            data in proptest::collection::vec(any::<i32>(), 0..200),
            stride in 1usize..9,
            bits in prop_oneof![Just(16u8), Just(24), Just(32)],
        ) {
            let tracks: Vec<Vec<usize>> = vec![(0..stride).collect(), vec![stride - 1], vec![0, stride / 2]];
            let mut one_pass: Vec<Vec<u8>> = vec![vec![9]; tracks.len()];
            let mut outs: Vec<(&[usize], &mut Vec<u8>)> =
                tracks.iter().map(Vec::as_slice).zip(one_pass.iter_mut()).collect();
            pack_tracks(&data, stride, &mut outs, bits);
            for (track, got) in tracks.iter().zip(&one_pass) {
                let mut want = vec![9];
                pack_channels(&data, stride, track, bits, &mut want);
                prop_assert_eq!(got, &want);
            }
        }
    }
}
