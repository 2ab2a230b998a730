//! Estuary's SDP model for AES67 / ST 2110-30/-31 / RAVENNA / Dante audio streams, built on
//! the general SDP tokenizer of the `sdp-types` crate.
//!
//! Reading is tolerant: a pre-pass ([`normalise`]) fixes what real devices and hand-edited
//! files get wrong (LF line endings, leading or trailing whitespace, blank lines, a missing
//! final newline, a missing `t=` line, an empty `s=`), recording one [`SdpWarning`] per fix,
//! then hands the text to `sdp-types`. The typed layer ([`SessionDescription`],
//! [`AudioStream`]) applies the AES67 rules: media-level `c=`, `a=source-filter`,
//! `a=ts-refclk`, `a=mediaclk`, `a=clock-domain`, `a=sync-time`, the direction and `i=`
//! override the session-level ones (RFC 7273 §5, RFC 4570 §3). Non-audio and non-PCM media
//! sections are skipped with a warning. Errors carry the 1-based line number of the
//! *original* text. Nothing here indexes or unwraps input: every accessor returns `Option`
//! or `Result`, and arithmetic on parsed numbers is checked or saturating.
//!
//! [`write()`] (or [`SessionDescription::to_sdp_string`]) writes the whole model back in strict
//! CRLF form, and `parse(write(d)) == d` apart from warnings. [`write_aes67_sdp`] builds that
//! model for Estuary's own transmitters (AES67-2018 §8, RFC 7273, ST 2110-30 §6).

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::payload::SampleFormat;

pub mod channels;
mod profile;
pub mod text;
mod write;

pub use channels::{ChannelGroup, ChannelOrder, ChannelOrderError, dante_labels};
pub use profile::{Level, St2110_10Issue};
pub use text::{Normalised, normalise};
pub use write::write;

/// A fix the tolerant reader applied, or a part of the description it ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpWarning {
    /// Lines end in a bare LF instead of CRLF (RFC 8866 §5).
    LfLineEndings,
    /// The last line has no line terminator.
    MissingFinalNewline,
    /// Whitespace before the `<type>=` of this line was removed.
    LeadingWhitespace {
        /// 1-based line number.
        line: usize,
    },
    /// Whitespace at the end of this line was removed.
    TrailingWhitespace {
        /// 1-based line number.
        line: usize,
    },
    /// An empty (or whitespace-only) line was skipped.
    BlankLine {
        /// 1-based line number.
        line: usize,
    },
    /// No `t=` line; `t=0 0` is assumed.
    MissingTimeLine,
    /// No `o=` line.
    MissingOrigin,
    /// `s=` is empty (RFC 8866 wants at least one character).
    EmptySessionName {
        /// 1-based line number.
        line: usize,
    },
    /// A media section was skipped (not audio, or no PCM encoding).
    SkippedMedia {
        /// 1-based line number of the `m=` line.
        line: usize,
        /// Why it was skipped.
        reason: String,
    },
    /// `channel-order` accounts for a different number of channels than `a=rtpmap`
    /// (ST 2110-30 §6.2.2 wants them equal); the rtpmap count is the one used.
    ChannelCountMismatch {
        /// 1-based line number of the `a=fmtp`.
        line: usize,
        /// Channels named by `channel-order`.
        channel_order: u32,
        /// Channels in `a=rtpmap`.
        rtpmap: u16,
    },
    /// An attribute value could not be understood and was ignored.
    IgnoredAttribute {
        /// 1-based line number.
        line: usize,
        /// Attribute name.
        attribute: String,
        /// Its value.
        value: String,
    },
}

/// Why a description cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The text has no `v=0` first line.
    #[error("line {line}: missing or invalid v= line")]
    NoVersion {
        /// 1-based line number of the first non-blank line (1 if the text is empty).
        line: usize,
    },
    /// `sdp-types` rejected a line.
    #[error("line {line}: invalid {field}")]
    Syntax {
        /// 1-based line number in the original text.
        line: usize,
        /// The field or check that failed, as reported by the tokenizer.
        field: String,
    },
    /// A field the audio layer needs has an invalid value.
    #[error("line {line}: invalid {field}: {value:?}")]
    InvalidField {
        /// 1-based line number in the original text.
        line: usize,
        /// Which field.
        field: &'static str,
        /// The offending text.
        value: String,
    },
}

/// `o=` line (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// User name ("-" when none).
    pub username: String,
    /// Session id; 64 bits because Dante ids exceed 2^32.
    pub session_id: u64,
    /// Session version.
    pub session_version: u64,
    /// Unicast address of the originator, as written (an IP address or a host name).
    pub address: String,
}

/// Connection data (`c=`, RFC 8866 §5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// Unicast or multicast address.
    pub address: IpAddr,
    /// TTL (IPv4 multicast only).
    pub ttl: Option<u8>,
    /// Number of consecutive addresses (`/<count>` suffix).
    pub count: Option<u32>,
}

/// `a=source-filter` (RFC 4570).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFilter {
    /// `incl` (true) or `excl` (false).
    pub include: bool,
    /// Destination address; `None` for `*` (all destinations).
    pub destination: Option<IpAddr>,
    /// Source addresses.
    pub sources: Vec<IpAddr>,
}

/// `a=ts-refclk` (RFC 7273 §4.8).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefClock {
    /// `ptp=<version>:<gmid>[:<domain>]`.
    Ptp {
        /// e.g. "IEEE1588-2008".
        version: String,
        /// Grandmaster clock identity (EUI-64).
        gmid: [u8; 8],
        /// PTP domain, when given.
        domain: Option<u8>,
    },
    /// `ptp=<version>:traceable`, or `ptp=traceable` as aes67-linux-daemon writes it.
    PtpTraceable {
        /// e.g. "IEEE1588-2008"; `None` for the bare `ptp=traceable` form.
        version: Option<String>,
    },
    /// `localmac=<mac>`: the sender's free-running clock.
    LocalMac([u8; 6]),
    /// Any other clock source, kept as written.
    Other(String),
}

/// Stream direction attribute (RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv`.
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

/// `a=group` (RFC 5888), e.g. `DUP 1 2` for ST 2022-7 redundancy (RFC 7104).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Semantics, e.g. "DUP".
    pub semantics: String,
    /// Media identification tags (`a=mid`).
    pub mids: Vec<String>,
}

/// `a=framecount` (AES67-2018 §8.2 allows a range; aes67-linux-daemon writes `64-192`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCount {
    /// One number of frames per packet.
    Exact(u32),
    /// `<min>-<max>`: both ends kept as written.
    Range {
        /// Lower end.
        min: u32,
        /// Upper end (≥ `min`).
        max: u32,
    },
}

/// One PCM audio stream (one `m=audio` section), with session-level defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioStream {
    /// Destination UDP port.
    pub port: u16,
    /// RTP payload type.
    pub payload_type: u8,
    /// Sample format.
    pub format: SampleFormat,
    /// Sample (and RTP clock) rate in Hz.
    pub sample_rate: u32,
    /// Channels per frame.
    pub channels: u16,
    /// Media-level `c=` if present, else session-level.
    pub connection: Option<Connection>,
    /// Media-level source filter if present, else session-level.
    pub source_filter: Option<SourceFilter>,
    /// `a=ptime` in milliseconds.
    pub ptime_ms: Option<f64>,
    /// `a=maxptime` in milliseconds.
    pub maxptime_ms: Option<f64>,
    /// `a=framecount`, integer or range.
    pub framecount: Option<FrameCount>,
    /// `a=fmtp:<pt> channel-order=SMPTE2110.(...)` (ST 2110-30 §6.2.2).
    pub channel_order: Option<ChannelOrder>,
    /// `a=mediaclk:direct=<offset>` (RFC 7273 §5.2), media level if present, else session.
    pub media_clock_offset: Option<u32>,
    /// Media-level `a=ts-refclk` if present, else session-level.
    pub ts_refclk: Option<RefClock>,
    /// `a=clock-domain:PTPv2 <n>` (RAVENNA), media level if present, else session.
    pub clock_domain: Option<u8>,
    /// `a=sync-time:<rtp-ts>` (RAVENNA), media level if present, else session.
    pub sync_time: Option<u64>,
    /// Media `i=` if present, else session `i=`.
    pub info: Option<String>,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Media-level direction if present, else session-level.
    pub direction: Option<Direction>,
}

impl AudioStream {
    /// Frames (samples per channel) per packet: `a=framecount` if present, else
    /// round(ptime × rate / 1000) with ptime defaulting to 1 ms (AES67-2018 §7.2).
    ///
    /// A range `a=framecount` does not fix the size, so ptime decides then.
    pub fn frames_per_packet(&self) -> Option<u32> {
        if let Some(FrameCount::Exact(n)) = self.framecount {
            return Some(n);
        }
        let ptime = self.ptime_ms.unwrap_or(1.0);
        let frames = (ptime * f64::from(self.sample_rate) / 1000.0).round();
        if frames.is_finite() && frames >= 1.0 && frames <= f64::from(u32::MAX) {
            Some(frames as u32)
        } else {
            None
        }
    }

    /// Exact packet duration from [`AudioStream::frames_per_packet`]: senders round ptime for
    /// display (0.12 for 125 µs), the frame count is what they send.
    pub fn packet_time(&self) -> Option<std::time::Duration> {
        let frames = u64::from(self.frames_per_packet()?);
        let nanos = frames.checked_mul(1_000_000_000)? / u64::from(self.sample_rate).max(1);
        Some(std::time::Duration::from_nanos(nanos))
    }

    /// Channel names from Dante's `i=` form ("2 channels: Left, Right"), if the stream's `i=`
    /// is in that form.
    pub fn info_labels(&self) -> Option<Vec<String>> {
        self.info.as_deref().and_then(dante_labels)
    }

    /// One label per channel: from `channel-order` when it matches the channel count, else
    /// from Dante's `i=` when that does; `None` otherwise (a count that disagrees with
    /// `a=rtpmap` cannot be mapped to channels).
    pub fn channel_labels(&self) -> Option<Vec<String>> {
        if let Some(o) = self
            .channel_order
            .as_ref()
            .filter(|o| o.matches(self.channels))
        {
            return Some(o.labels());
        }
        self.info_labels()
            .filter(|l| l.len() == usize::from(self.channels))
    }
}

/// A session description reduced to what an audio receiver needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionDescription {
    /// `o=`.
    pub origin: Origin,
    /// `s=` (may be empty after a tolerated empty `s=`).
    pub name: String,
    /// Session-level `i=`.
    pub info: Option<String>,
    /// `a=keywds` (RFC 8866 §6.1); Dante writes "Dante".
    pub keywords: Option<String>,
    /// Session-level `a=clock-domain:PTPv2 <n>` (RAVENNA); see also
    /// [`AudioStream::clock_domain`].
    pub clock_domain: Option<u8>,
    /// `a=group` lines.
    pub groups: Vec<Group>,
    /// PCM audio streams, in `m=` order.
    pub streams: Vec<AudioStream>,
    /// Fixes applied and parts ignored while reading.
    pub warnings: Vec<SdpWarning>,
}

impl SessionDescription {
    /// Writes the description; see [`write()`].
    pub fn to_sdp_string(&self) -> String {
        write(self)
    }

    /// ST 2022-7 pairs: for each `a=group:DUP` naming exactly two streams by `a=mid`, their
    /// indices in [`SessionDescription::streams`].
    pub fn dup_pairs(&self) -> Vec<(usize, usize)> {
        let index = |mid: &str| {
            self.streams
                .iter()
                .position(|s| s.mid.as_deref() == Some(mid))
        };
        self.groups
            .iter()
            .filter(|g| g.semantics.eq_ignore_ascii_case("DUP"))
            .filter_map(|g| match g.mids.as_slice() {
                [a, b] => Some((index(a)?, index(b)?)),
                _ => None,
            })
            .collect()
    }
}

/// Parses an SDP text tolerantly; see the module documentation.
pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    let norm = normalise(text);
    let mut warnings = norm.warnings;
    let session = sdp_types::Session::parse(norm.text.as_bytes()).map_err(|e| {
        use sdp_types::ParserError as P;
        let line_of = |n: usize| norm.line_map.get(n.wrapping_sub(1)).copied().unwrap_or(n);
        #[allow(deprecated)]
        let (n, field): (usize, String) = match e {
            P::NoVersion => {
                return SdpError::NoVersion {
                    line: norm.line_map.first().copied().unwrap_or(1),
                };
            }
            P::InvalidVersion(n, _) => {
                return SdpError::NoVersion { line: line_of(n) };
            }
            P::UnexpectedLine(n, _) => (n, "line".into()),
            P::InvalidLineFormat(n, f)
            | P::InvalidFieldEncoding(n, f)
            | P::InvalidFieldFormat(n, f)
            | P::MissingField(n, f)
            | P::FieldTrailingData(n, f) => (n, f.into()),
            P::MultipleVersions(n) => (n, "v= (duplicate)".into()),
            P::MultipleOrigins(n) => (n, "o= (duplicate)".into()),
            P::MultipleSessionNames(n) => (n, "s= (duplicate)".into()),
            P::MultipleSessionDescription(n) => (n, "i= (duplicate)".into()),
            P::MultipleUris(n) => (n, "u= (duplicate)".into()),
            P::MultipleConnections(n) => (n, "c= (duplicate)".into()),
            P::MultipleTimeZones(n) => (n, "z= (duplicate)".into()),
            P::MultipleMediaTitles(n) => (n, "i= (duplicate)".into()),
            P::MultipleKeys(n) => (n, "k= (duplicate)".into()),
            P::RepeatWithoutTime(n) => (n, "r= without t=".into()),
            P::NoOrigin | P::NoSessionName => (1, "session".into()),
        };
        SdpError::Syntax {
            line: line_of(n),
            field,
        }
    })?;
    let lines = &norm.sections;

    let origin = if lines.has_session_line('o') {
        let o = &session.origin;
        let line = lines.line_of(0, "o=");
        let session_id = o
            .sess_id
            .parse::<u64>()
            .map_err(|_| SdpError::InvalidField {
                line,
                field: "o= sess-id",
                value: o.sess_id.clone(),
            })?;
        // RFC 8866 §5.2 allows a host name here, but a name whose last label is numeric
        // is a mangled IPv4 address (e.g. the anonymised "10.xx.xxx.236").
        let addr = &o.unicast_address;
        let last_label_numeric = addr
            .rsplit('.')
            .next()
            .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        if addr.parse::<IpAddr>().is_err() && (last_label_numeric || addr.contains(':')) {
            return Err(SdpError::InvalidField {
                line,
                field: "o= unicast-address",
                value: addr.clone(),
            });
        }
        Origin {
            username: o.username.clone().unwrap_or_else(|| "-".into()),
            session_id,
            session_version: o.sess_version,
            address: o.unicast_address.clone(),
        }
    } else {
        warnings.push(SdpWarning::MissingOrigin);
        Origin::default()
    };

    let session_conn = match &session.connection {
        Some(c) => Some(parse_connection(
            &c.connection_address,
            lines.line_of(0, "c="),
        )?),
        None => None,
    };
    let session_attrs = Attrs {
        attrs: &session.attributes,
        section: 0,
        lines,
    };
    let session_filter = session_attrs.source_filter(&mut warnings)?;
    let session_refclk = session_attrs.refclk(&mut warnings);
    let session_mediaclk = session_attrs.mediaclk(&mut warnings);
    let session_direction = session_attrs.direction();
    let clock_domain = session_attrs.clock_domain(&mut warnings);
    let session_sync_time = session_attrs.sync_time(&mut warnings);
    let keywords = session_attrs.value("keywds").map(str::to_string);
    let groups = session
        .attributes
        .iter()
        .filter(|a| a.attribute.eq_ignore_ascii_case("group"))
        .filter_map(|a| {
            let mut it = a.value.as_deref()?.split_ascii_whitespace();
            Some(Group {
                semantics: it.next()?.to_string(),
                mids: it.map(str::to_string).collect(),
            })
        })
        .collect();

    let mut streams = Vec::new();
    for (k, media) in session.medias.iter().enumerate() {
        let section = k + 1;
        let m_line = lines.line_of(section, "m=");
        if !media.media.eq_ignore_ascii_case("audio") {
            warnings.push(SdpWarning::SkippedMedia {
                line: m_line,
                reason: format!("media type {:?} is not audio", media.media),
            });
            continue;
        }
        let attrs = Attrs {
            attrs: &media.attributes,
            section,
            lines,
        };
        let Some((payload_type, format, sample_rate, channels)) = attrs.pcm_format(&media.fmt)
        else {
            warnings.push(SdpWarning::SkippedMedia {
                line: m_line,
                reason: format!(
                    "no L16/L24/L32/AM824 encoding among formats {:?}",
                    media.fmt
                ),
            });
            continue;
        };
        let connection = match media.connections.first() {
            Some(c) => Some(parse_connection(
                &c.connection_address,
                lines.line_of(section, "c="),
            )?),
            None => session_conn,
        };
        let source_filter = match attrs.source_filter(&mut warnings)? {
            Some(f) => Some(f),
            None => session_filter.clone(),
        };
        let channel_order = attrs.channel_order(payload_type, channels, &mut warnings);
        streams.push(AudioStream {
            port: media.port,
            payload_type,
            format,
            sample_rate,
            channels,
            connection,
            source_filter,
            ptime_ms: attrs.millis("ptime", &mut warnings),
            maxptime_ms: attrs.millis("maxptime", &mut warnings),
            framecount: attrs.framecount(&mut warnings),
            channel_order,
            media_clock_offset: attrs.mediaclk(&mut warnings).or(session_mediaclk),
            ts_refclk: attrs
                .refclk(&mut warnings)
                .or_else(|| session_refclk.clone()),
            clock_domain: attrs.clock_domain(&mut warnings).or(clock_domain),
            sync_time: attrs.sync_time(&mut warnings).or(session_sync_time),
            info: media
                .media_title
                .clone()
                .or_else(|| session.session_description.clone()),
            mid: attrs.value("mid").map(str::to_string),
            direction: attrs.direction().or(session_direction),
        });
    }

    Ok(SessionDescription {
        origin,
        name: session.session_name.clone(),
        info: session.session_description.clone(),
        keywords,
        clock_domain,
        groups,
        streams,
        warnings,
    })
}

/// Parses `<address>[/<ttl>][/<count>]` (RFC 8866 §5.7).
fn parse_connection(value: &str, line: usize) -> Result<Connection, SdpError> {
    let invalid = || SdpError::InvalidField {
        line,
        field: "c= connection-address",
        value: value.to_string(),
    };
    let mut parts = value.split('/');
    let address: IpAddr = parts
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(invalid)?;
    let first = parts.next();
    let second = parts.next();
    if parts.next().is_some() {
        return Err(invalid());
    }
    let (ttl, count) = match (address, first, second) {
        // IPv6 has no TTL field: a single suffix is the count.
        (IpAddr::V6(_), Some(c), None) => (None, Some(c.parse().map_err(|_| invalid())?)),
        (IpAddr::V6(_), Some(_), Some(_)) => return Err(invalid()),
        (_, None, _) => (None, None),
        (IpAddr::V4(_), Some(t), c) => (
            Some(t.parse().map_err(|_| invalid())?),
            match c {
                Some(c) => Some(c.parse().map_err(|_| invalid())?),
                None => None,
            },
        ),
    };
    Ok(Connection {
        address,
        ttl,
        count,
    })
}

/// Attribute list of one section plus where its lines are, for error positions.
struct Attrs<'s> {
    attrs: &'s [sdp_types::Attribute],
    section: usize,
    lines: &'s text::Sections,
}

impl<'s> Attrs<'s> {
    fn value(&self, name: &str) -> Option<&'s str> {
        self.attrs
            .iter()
            .find(|a| a.attribute.eq_ignore_ascii_case(name))
            .and_then(|a| a.value.as_deref())
            .map(str::trim)
    }

    fn has(&self, name: &str) -> bool {
        self.attrs
            .iter()
            .any(|a| a.attribute.eq_ignore_ascii_case(name))
    }

    fn line(&self, name: &str) -> usize {
        self.lines.attr_line(self.section, name)
    }

    fn ignore(&self, warnings: &mut Vec<SdpWarning>, name: &str, value: &str) {
        warnings.push(SdpWarning::IgnoredAttribute {
            line: self.line(name),
            attribute: name.to_string(),
            value: value.to_string(),
        });
    }

    /// Picks the first payload type of `fmt` with a PCM encoding (RFC 3551 §6 static types
    /// 10 and 11 need no rtpmap).
    fn pcm_format(&self, fmt: &str) -> Option<(u8, SampleFormat, u32, u16)> {
        fmt.split_ascii_whitespace()
            .filter_map(|pt| pt.parse::<u8>().ok())
            .find_map(|pt| {
                let rtpmap = self
                    .attrs
                    .iter()
                    .filter(|a| a.attribute.eq_ignore_ascii_case("rtpmap"))
                    .filter_map(|a| a.value.as_deref())
                    .find_map(|v| {
                        let (p, enc) = v.trim().split_once(char::is_whitespace)?;
                        (p.parse::<u8>().ok()? == pt).then_some(enc.trim())
                    });
                match rtpmap {
                    Some(enc) => {
                        let mut it = enc.split('/');
                        let format = SampleFormat::from_encoding_name(it.next()?)?;
                        let rate = it.next()?.trim().parse::<u32>().ok()?;
                        let channels = match it.next() {
                            Some(c) => c.trim().parse::<u16>().ok()?,
                            None => 1,
                        };
                        (rate > 0 && channels > 0).then_some((pt, format, rate, channels))
                    }
                    None => match pt {
                        10 => Some((pt, SampleFormat::L16, 44_100, 2)),
                        11 => Some((pt, SampleFormat::L16, 44_100, 1)),
                        _ => None,
                    },
                }
            })
    }

    fn millis(&self, name: &str, warnings: &mut Vec<SdpWarning>) -> Option<f64> {
        let v = self.value(name)?;
        match v.parse::<f64>() {
            Ok(ms) if ms.is_finite() && ms > 0.0 => Some(ms),
            _ => {
                self.ignore(warnings, name, v);
                None
            }
        }
    }

    fn framecount(&self, warnings: &mut Vec<SdpWarning>) -> Option<FrameCount> {
        let v = self.value("framecount")?;
        let count = parse_framecount(v);
        if count.is_none() {
            self.ignore(warnings, "framecount", v);
        }
        count
    }

    fn sync_time(&self, warnings: &mut Vec<SdpWarning>) -> Option<u64> {
        let v = self.value("sync-time")?;
        let t = v.parse::<u64>().ok();
        if t.is_none() {
            self.ignore(warnings, "sync-time", v);
        }
        t
    }

    /// `channel-order` from the `a=fmtp` of payload type `pt` (ST 2110-30 §6.2.2); other
    /// format parameters (e.g. `TSMODE`) are not kept.
    fn channel_order(
        &self,
        pt: u8,
        channels: u16,
        warnings: &mut Vec<SdpWarning>,
    ) -> Option<ChannelOrder> {
        let params = self
            .attrs
            .iter()
            .filter(|a| a.attribute.eq_ignore_ascii_case("fmtp"))
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (p, params) = v.trim().split_once(char::is_whitespace)?;
                (p.parse::<u8>().ok()? == pt).then_some(params)
            })?;
        let value = params.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("channel-order").then_some(v)
        })?;
        let Ok(order) = ChannelOrder::parse(value) else {
            self.ignore(warnings, "fmtp", value.trim());
            return None;
        };
        if !order.matches(channels) {
            warnings.push(SdpWarning::ChannelCountMismatch {
                line: self.line("fmtp"),
                channel_order: order.channel_count(),
                rtpmap: channels,
            });
        }
        Some(order)
    }

    /// `a=mediaclk:direct=<offset>[ rate=<n>[/<d>]]` (RFC 7273 §5.2).
    fn mediaclk(&self, warnings: &mut Vec<SdpWarning>) -> Option<u32> {
        let v = self.value("mediaclk")?;
        let offset = v
            .split_ascii_whitespace()
            .next()
            .and_then(|d| d.strip_prefix("direct="))
            .and_then(|n| n.parse::<u32>().ok());
        if offset.is_none() {
            self.ignore(warnings, "mediaclk", v);
        }
        offset
    }

    fn refclk(&self, warnings: &mut Vec<SdpWarning>) -> Option<RefClock> {
        let v = self.value("ts-refclk")?;
        let clock = parse_refclk(v);
        if matches!(clock, RefClock::Other(_)) {
            self.ignore(warnings, "ts-refclk", v);
        }
        Some(clock)
    }

    fn clock_domain(&self, warnings: &mut Vec<SdpWarning>) -> Option<u8> {
        let v = self.value("clock-domain")?;
        let domain = v
            .strip_prefix("PTPv2")
            .and_then(|d| d.trim().parse::<u8>().ok());
        if domain.is_none() {
            self.ignore(warnings, "clock-domain", v);
        }
        domain
    }

    fn direction(&self) -> Option<Direction> {
        [
            ("sendrecv", Direction::SendRecv),
            ("sendonly", Direction::SendOnly),
            ("recvonly", Direction::RecvOnly),
            ("inactive", Direction::Inactive),
        ]
        .into_iter()
        .find(|(n, _)| self.has(n))
        .map(|(_, d)| d)
    }

    /// `a=source-filter: <mode> <nettype> <addrtype> <dest> <src>...` (RFC 4570 §3).
    fn source_filter(
        &self,
        warnings: &mut Vec<SdpWarning>,
    ) -> Result<Option<SourceFilter>, SdpError> {
        let Some(v) = self.value("source-filter") else {
            return Ok(None);
        };
        let line = self.line("source-filter");
        let invalid = |what: &str| SdpError::InvalidField {
            line,
            field: "a=source-filter",
            value: what.to_string(),
        };
        let mut it = v.split_ascii_whitespace();
        let include = match it.next() {
            Some(m) if m.eq_ignore_ascii_case("incl") => true,
            Some(m) if m.eq_ignore_ascii_case("excl") => false,
            _ => {
                self.ignore(warnings, "source-filter", v);
                return Ok(None);
            }
        };
        let (Some(_nettype), Some(_addrtype), Some(dest)) = (it.next(), it.next(), it.next())
        else {
            return Err(invalid(v));
        };
        let destination = if dest == "*" {
            None
        } else {
            Some(dest.parse::<IpAddr>().map_err(|_| invalid(dest))?)
        };
        let sources = it
            .map(|s| s.parse::<IpAddr>().map_err(|_| invalid(s)))
            .collect::<Result<Vec<_>, _>>()?;
        if sources.is_empty() {
            return Err(invalid(v));
        }
        Ok(Some(SourceFilter {
            include,
            destination,
            sources,
        }))
    }
}

/// `<n>` or `<min>-<max>`, all positive, min ≤ max.
fn parse_framecount(v: &str) -> Option<FrameCount> {
    let positive = |s: &str| s.trim().parse::<u32>().ok().filter(|n| *n > 0);
    match v.split_once('-') {
        None => positive(v).map(FrameCount::Exact),
        Some((a, b)) => {
            let (min, max) = (positive(a)?, positive(b)?);
            (min <= max).then_some(FrameCount::Range { min, max })
        }
    }
}

/// Parses the value of `a=ts-refclk` (RFC 7273 §4.8).
fn parse_refclk(v: &str) -> RefClock {
    if let Some(p) = v.strip_prefix("ptp=") {
        if p.eq_ignore_ascii_case("traceable") {
            return RefClock::PtpTraceable { version: None };
        }
        let mut it = p.split(':');
        let version = it.next().unwrap_or_default().to_string();
        match (it.next(), it.next(), it.next()) {
            (Some(t), None, None) if t.eq_ignore_ascii_case("traceable") => {
                return RefClock::PtpTraceable {
                    version: Some(version),
                };
            }
            (Some(gm), domain, None) => {
                if let Some(gmid) = parse_hex_id::<8>(gm) {
                    let domain = match domain {
                        None => Some(None),
                        Some(d) => d.trim().parse::<u8>().ok().map(Some),
                    };
                    if let Some(domain) = domain {
                        return RefClock::Ptp {
                            version,
                            gmid,
                            domain,
                        };
                    }
                }
            }
            _ => {}
        }
    } else if let Some(mac) = v.strip_prefix("localmac=").and_then(parse_hex_id::<6>) {
        return RefClock::LocalMac(mac);
    }
    RefClock::Other(v.to_string())
}

/// Parses `N` hyphen-separated hex octets ("39-A7-94-FF-FE-07-CB-D0").
fn parse_hex_id<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let mut parts = s.trim().split('-');
    for o in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn hex_id(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// PTP reference of a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtpRef {
    /// Grandmaster clock identity.
    pub gmid: [u8; 8],
    /// PTP domain.
    pub domain: u8,
}

/// What Estuary's AES67 transmitter announces.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderSdp {
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` session version.
    pub session_version: u64,
    /// Sender's own (source) address, for `o=`.
    pub origin_address: IpAddr,
    /// Session name; control characters become spaces, empty becomes "-".
    pub name: String,
    /// Optional session `i=`.
    pub info: Option<String>,
    /// Destination address (`c=`).
    pub destination: IpAddr,
    /// Multicast TTL, written for IPv4 multicast destinations.
    pub ttl: u8,
    /// Destination UDP port.
    pub port: u16,
    /// RTP payload type (dynamic, 96..=127 usually).
    pub payload_type: u8,
    /// Sample format.
    pub format: SampleFormat,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// Packet time in ms (written with the shortest exact decimal form).
    pub ptime_ms: f64,
    /// Optional `a=framecount`.
    pub framecount: Option<u32>,
    /// `a=clock-domain:PTPv2 <n>` (RAVENNA), when set.
    pub clock_domain: Option<u8>,
    /// PTP grandmaster; without it the stream is referenced to `local_mac`.
    pub ptp: Option<PtpRef>,
    /// Sender MAC, for `a=ts-refclk:localmac=` when not PTP-locked.
    pub local_mac: [u8; 6],
    /// `a=mediaclk:direct=` offset.
    pub media_clock_offset: u32,
    /// Optional ST 2110-30 `channel-order` (written as `a=fmtp`).
    pub channel_order: Option<ChannelOrder>,
    /// Optional `a=keywds`; control characters become spaces.
    pub keywords: Option<String>,
    /// Optional `a=sync-time` (RAVENNA).
    pub sync_time: Option<u64>,
}

impl Default for SenderSdp {
    /// A 48 kHz stereo L24 1 ms stream to 239.69.0.1:5004 (the AES67 defaults); callers
    /// override what they know.
    fn default() -> Self {
        Self {
            session_id: 0,
            session_version: 0,
            origin_address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            name: "-".into(),
            info: None,
            destination: IpAddr::V4(std::net::Ipv4Addr::new(239, 69, 0, 1)),
            ttl: 32,
            port: 5004,
            payload_type: 96,
            format: SampleFormat::L24,
            sample_rate: 48_000,
            channels: 2,
            ptime_ms: 1.0,
            framecount: None,
            clock_domain: None,
            ptp: None,
            local_mac: [0; 6],
            media_clock_offset: 0,
            channel_order: None,
            keywords: None,
            sync_time: None,
        }
    }
}

fn sanitise(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.trim();
    if s.is_empty() { "-".into() } else { s.into() }
}

impl SenderSdp {
    /// The model this sender announces; [`write_aes67_sdp`] writes it.
    pub fn to_session(&self) -> SessionDescription {
        let multicast_v4 = matches!(self.destination, IpAddr::V4(a) if a.is_multicast());
        let info = self.info.as_deref().map(sanitise);
        let ts_refclk = match self.ptp {
            Some(ptp) => RefClock::Ptp {
                version: "IEEE1588-2008".into(),
                gmid: ptp.gmid,
                domain: Some(ptp.domain),
            },
            None => RefClock::LocalMac(self.local_mac),
        };
        let stream = AudioStream {
            port: self.port,
            payload_type: self.payload_type,
            format: self.format,
            sample_rate: self.sample_rate,
            channels: self.channels,
            connection: Some(Connection {
                address: self.destination,
                ttl: multicast_v4.then_some(self.ttl),
                count: None,
            }),
            source_filter: None,
            ptime_ms: Some(self.ptime_ms),
            maxptime_ms: None,
            framecount: self.framecount.map(FrameCount::Exact),
            channel_order: self.channel_order.clone(),
            media_clock_offset: Some(self.media_clock_offset),
            ts_refclk: Some(ts_refclk),
            clock_domain: self.clock_domain,
            sync_time: self.sync_time,
            info: info.clone(),
            mid: None,
            direction: Some(Direction::RecvOnly),
        };
        SessionDescription {
            origin: Origin {
                username: "-".into(),
                session_id: self.session_id,
                session_version: self.session_version,
                address: self.origin_address.to_string(),
            },
            name: sanitise(&self.name),
            info,
            keywords: self.keywords.as_deref().map(sanitise),
            clock_domain: self.clock_domain,
            groups: Vec::new(),
            streams: vec![stream],
            warnings: Vec::new(),
        }
    }
}

/// Writes a strict CRLF AES67 SDP (AES67-2018 §8) for one of Estuary's transmitters.
pub fn write_aes67_sdp(p: &SenderSdp) -> String {
    write(&p.to_session())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AES67_ANNEX: &str = "v=0\r\no=- 1311738121 1311738121 IN IP4 192.168.1.1\r\n\
        s=Stage left I/O\r\nc=IN IP4 239.0.0.1/32\r\nt=0 0\r\nm=audio 5004 RTP/AVP 96\r\n\
        i=Channels 1-8\r\na=rtpmap:96 L24/48000/8\r\na=recvonly\r\na=ptime:1\r\n\
        a=ts-refclk:ptp=IEEE1588-2008:39-A7-94-FF-FE-07-CB-D0:0\r\n\
        a=mediaclk:direct=963214424\r\n";

    #[test]
    fn annex_example() {
        let d = parse(AES67_ANNEX).expect("valid");
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert_eq!(d.origin.session_id, 1_311_738_121);
        assert_eq!(d.name, "Stage left I/O");
        let s = &d.streams[0];
        assert_eq!(s.format, SampleFormat::L24);
        assert_eq!((s.sample_rate, s.channels, s.payload_type), (48_000, 8, 96));
        assert_eq!(s.frames_per_packet(), Some(48));
        assert_eq!(s.media_clock_offset, Some(963_214_424));
        assert_eq!(
            s.ts_refclk,
            Some(RefClock::Ptp {
                version: "IEEE1588-2008".into(),
                gmid: [0x39, 0xa7, 0x94, 0xff, 0xfe, 0x07, 0xcb, 0xd0],
                domain: Some(0)
            })
        );
        assert_eq!(s.info.as_deref(), Some("Channels 1-8"));
        assert_eq!(s.direction, Some(Direction::RecvOnly));
    }

    #[test]
    fn tolerant_fixes_and_line_numbers() {
        let text =
            "v=0\n  o=- 1 1 IN IP4 10.0.0.1 \n\ns=\nc=IN IP4 10.xx.0.1\nm=audio 5004 RTP/AVP 96";
        match parse(text) {
            Err(SdpError::InvalidField { line: 5, field, .. }) => {
                assert_eq!(field, "c= connection-address");
            }
            other => panic!("unexpected {other:?}"),
        }
        let ok = "v=0\n  o=- 1 1 IN IP4 10.0.0.1 \n\ns=\nm=audio 5004 RTP/AVP 11";
        let d = parse(ok).expect("tolerated");
        assert_eq!(d.streams[0].channels, 1);
        assert_eq!(d.streams[0].sample_rate, 44_100);
        for w in [
            SdpWarning::LfLineEndings,
            SdpWarning::MissingFinalNewline,
            SdpWarning::LeadingWhitespace { line: 2 },
            SdpWarning::TrailingWhitespace { line: 2 },
            SdpWarning::BlankLine { line: 3 },
            SdpWarning::EmptySessionName { line: 4 },
            SdpWarning::MissingTimeLine,
        ] {
            assert!(d.warnings.contains(&w), "missing {w:?} in {:?}", d.warnings);
        }
        // A line the tokenizer rejects is reported at its original position.
        match parse("v=0\n\n\nbroken\n") {
            Err(SdpError::Syntax { line: 4, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn frames_per_packet_rounding() {
        let mut d = parse(AES67_ANNEX).expect("valid");
        let s = &mut d.streams[0];
        s.ptime_ms = Some(0.12);
        assert_eq!(s.frames_per_packet(), Some(6));
        s.ptime_ms = None;
        assert_eq!(s.frames_per_packet(), Some(48));
        s.framecount = Some(FrameCount::Exact(12));
        assert_eq!(s.frames_per_packet(), Some(12));
    }

    #[test]
    fn writer_round_trip() {
        let p = SenderSdp {
            session_id: 18_311_622_000,
            session_version: 3,
            origin_address: "192.168.1.5".parse().expect("ip"),
            name: "Estuary\r\nTX".into(),
            info: Some("2 channels".into()),
            destination: "239.69.1.2".parse().expect("ip"),
            ttl: 15,
            port: 5004,
            payload_type: 98,
            format: SampleFormat::L24,
            sample_rate: 48_000,
            channels: 2,
            ptime_ms: 0.125,
            framecount: Some(6),
            clock_domain: Some(0),
            ptp: Some(PtpRef {
                gmid: [0, 0x1d, 0xc1, 0xff, 0xfe, 1, 2, 3],
                domain: 0,
            }),
            local_mac: [0; 6],
            media_clock_offset: 4_000_000_000,
            ..SenderSdp::default()
        };
        let text = write_aes67_sdp(&p);
        assert!(text.contains("s=Estuary  TX\r\n"));
        assert!(text.contains("a=ts-refclk:ptp=IEEE1588-2008:00-1D-C1-FF-FE-01-02-03:0\r\n"));
        let d = parse(&text).expect("own output parses");
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        let s = &d.streams[0];
        assert_eq!(s.connection.map(|c| c.ttl), Some(Some(15)));
        assert_eq!(s.ptime_ms, Some(0.125));
        assert_eq!(s.media_clock_offset, Some(4_000_000_000));
    }
}
