//! FLV tags (Adobe FLV and F4V File Format Specification 10.1, §E.4), split out of an FLV
//! byte stream so RTMP can carry each tag's body as one message.
//!
//! The RTMP output encodes AAC into FLV (FFmpeg's muxer), then [`FlvReader`] cuts the stream
//! into tags: audio tag bodies (`0xAF 0x00` + AudioSpecificConfig, then `0xAF 0x01` + raw AAC
//! frames) are exactly RTMP audio messages (type 8). Every length is checked before use; no
//! input makes this panic.

use std::fmt;

/// `FLV` + version 1.
const SIGNATURE: &[u8; 4] = b"FLV\x01";
/// Tag header: type (1), DataSize (3), Timestamp (3), TimestampExtended (1), StreamID (3).
const TAG_HEADER: usize = 11;
/// PreviousTagSize after every tag.
const PREVIOUS_SIZE: usize = 4;
/// The largest tag body accepted; DataSize is 24 bits, and audio tags are far smaller.
pub const MAX_TAG: usize = 1 << 20;

pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlvError {
    /// The stream does not start with `FLV\x01`.
    BadSignature,
    /// The header's DataOffset is shorter than the header itself.
    BadHeaderSize { size: u32 },
    /// A tag larger than [`MAX_TAG`].
    TagTooLarge { size: usize },
}

impl fmt::Display for FlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlvError::BadSignature => write!(f, "not an FLV stream"),
            FlvError::BadHeaderSize { size } => write!(f, "FLV header size {size} is below 9"),
            FlvError::TagTooLarge { size } => write!(f, "FLV tag of {size} bytes"),
        }
    }
}

impl std::error::Error for FlvError {}

/// One tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// [`TAG_AUDIO`], [`TAG_VIDEO`] or [`TAG_SCRIPT`] (the filter bit masked off).
    pub kind: u8,
    /// Milliseconds (Timestamp with TimestampExtended as its high byte).
    pub timestamp: u32,
    pub data: Vec<u8>,
}

/// Parses one tag at the start of `bytes`: the tag and the bytes it used (with its
/// PreviousTagSize), or `None` when more bytes are needed.
pub fn parse_tag(bytes: &[u8]) -> Result<Option<(FlvTag, usize)>, FlvError> {
    let Some(header) = bytes.get(..TAG_HEADER) else {
        return Ok(None);
    };
    let size = usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
    if size > MAX_TAG {
        return Err(FlvError::TagTooLarge { size });
    }
    let timestamp = u32::from(header[7]) << 24
        | u32::from(header[4]) << 16
        | u32::from(header[5]) << 8
        | u32::from(header[6]);
    let total = TAG_HEADER + size + PREVIOUS_SIZE;
    let Some(data) = bytes.get(TAG_HEADER..TAG_HEADER + size) else {
        return Ok(None);
    };
    if bytes.len() < total {
        return Ok(None);
    }
    Ok(Some((
        FlvTag {
            kind: header[0] & 0x1f,
            timestamp,
            data: data.to_vec(),
        },
        total,
    )))
}

/// Cuts a growing FLV byte stream into tags.
#[derive(Debug, Default)]
pub struct FlvReader {
    buffer: Vec<u8>,
    header_done: bool,
}

impl FlvReader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete tag, if the bytes pushed so far hold one.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        if !self.header_done {
            // Header: signature, flags (1), DataOffset (4), then PreviousTagSize0 (4).
            let Some(head) = self.buffer.get(..9) else {
                return Ok(None);
            };
            if &head[..4] != SIGNATURE {
                return Err(FlvError::BadSignature);
            }
            let size = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
            if size < 9 {
                return Err(FlvError::BadHeaderSize { size });
            }
            let skip = (size as usize).saturating_add(PREVIOUS_SIZE);
            if skip > MAX_TAG {
                return Err(FlvError::BadHeaderSize { size });
            }
            if self.buffer.len() < skip {
                return Ok(None);
            }
            self.buffer.drain(..skip);
            self.header_done = true;
        }
        match parse_tag(&self.buffer)? {
            Some((tag, used)) => {
                self.buffer.drain(..used);
                Ok(Some(tag))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(kind: u8, ts: u32, data: &[u8]) -> Vec<u8> {
        let size = data.len();
        let mut out = vec![
            kind,
            (size >> 16) as u8,
            (size >> 8) as u8,
            size as u8,
            (ts >> 16) as u8,
            (ts >> 8) as u8,
            ts as u8,
            (ts >> 24) as u8,
            0,
            0,
            0,
        ];
        out.extend_from_slice(data);
        out.extend_from_slice(&((TAG_HEADER + size) as u32).to_be_bytes());
        out
    }

    fn stream(tags: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"FLV\x01\x04\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        for t in tags {
            out.extend_from_slice(t);
        }
        out
    }

    #[test]
    fn tags_come_out_whole_whatever_the_pieces() {
        let bytes = stream(&[
            tag(TAG_SCRIPT, 0, b"onMetaData"),
            tag(TAG_AUDIO, 0, &[0xaf, 0x00, 0x11, 0x90]),
            tag(TAG_AUDIO, 0x0100_0017, &[0xaf, 0x01, 1, 2, 3]),
        ]);
        for piece in [1, 3, 7, bytes.len()] {
            let mut reader = FlvReader::new();
            let mut tags = Vec::new();
            for chunk in bytes.chunks(piece) {
                reader.push(chunk);
                while let Some(t) = reader.next_tag().expect("valid") {
                    tags.push(t);
                }
            }
            assert_eq!(tags.len(), 3);
            assert_eq!(tags[1].data, [0xaf, 0x00, 0x11, 0x90]);
            assert_eq!(tags[2].kind, TAG_AUDIO);
            assert_eq!(tags[2].timestamp, 0x0100_0017);
        }
    }

    #[test]
    fn a_stream_that_is_not_flv_is_refused() {
        let mut reader = FlvReader::new();
        reader.push(b"OggS\x00\x02\x00\x00\x00\x00\x00\x00");
        assert_eq!(reader.next_tag(), Err(FlvError::BadSignature));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut reader = FlvReader::new();
            reader.push(b"FLV\x01\x04\x00\x00\x00\x09\x00\x00\x00\x00");
            reader.push(&bytes);
            for _ in 0..64 {
                match reader.next_tag() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            let _ = parse_tag(&bytes);
        }
    }
}
