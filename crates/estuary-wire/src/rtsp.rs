//! RTSP/1.0 messages (RFC 2326 §4, §6, §7) as RAVENNA devices speak them.
//!
//! [`RtspParser`] is incremental and sans-IO: the caller pushes whatever bytes the socket
//! gave it and pulls complete messages out. It copes with what real RAVENNA devices send:
//! - several messages in one read (a Lawo mic8 answers a DESCRIBE with an extra empty
//!   response in front), and bodies split across reads (`Content-Length` decides, §12.14);
//! - header names in any case (`cseq`, `content-length`); lookups ignore case (§4.2 via
//!   RFC 2616 §4.2);
//! - an empty request-URI (`ANNOUNCE  RTSP/1.0` from a Merging Anubis);
//! - bare LF line ends, empty lines between messages and folded header lines (RFC 2616
//!   §2.2 LWS), which some embedded servers produce;
//! - bytes in the head that are not UTF-8 (RFC 2326 §4 asks for UTF-8; an old device may
//!   send Latin-1 in a session name): they become U+FFFD instead of failing the stream.
//!
//! Every length is bounded by [`Limits`], so a peer cannot make it buffer without end: a
//! header block or body over the limit is an error, not an allocation. Bytes are only
//! read through `get(..)`/iterators, so no input can make it panic. After an error the
//! stream has lost framing; the parser keeps returning that error.

use std::fmt::Write as _;

/// The only protocol version this module writes by default.
pub const RTSP_VERSION: &str = "RTSP/1.0";

/// Upper bounds on what one message may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes from the start line to the empty line that ends the headers.
    pub max_head: usize,
    /// Bytes of body (`Content-Length`).
    pub max_body: usize,
}

impl Default for Limits {
    /// 16 KiB of headers and 1 MiB of body: an SDP with dozens of streams is a few KiB.
    fn default() -> Self {
        Self {
            max_head: 16 * 1024,
            max_body: 1024 * 1024,
        }
    }
}

/// Why bytes from the network are not an RTSP message stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtspError {
    /// The header block grew past [`Limits::max_head`] without ending.
    #[error("RTSP header block larger than {limit} bytes")]
    HeadTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// `Content-Length` announces more than [`Limits::max_body`].
    #[error("RTSP body of {length} bytes exceeds the limit of {limit}")]
    BodyTooLarge {
        /// Announced length.
        length: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The first line is neither `METHOD URI RTSP/x` nor `RTSP/x NNN reason`.
    #[error("invalid RTSP start line {line:?}")]
    InvalidStartLine {
        /// The line, lossily decoded.
        line: String,
    },
    /// A header line without a colon, with an empty name, or with control characters.
    #[error("invalid RTSP header line {line:?}")]
    InvalidHeader {
        /// The line, lossily decoded.
        line: String,
    },
    /// `Content-Length` is not a decimal number, or two of them disagree.
    #[error("invalid RTSP Content-Length {value:?}")]
    InvalidContentLength {
        /// The header value(s).
        value: String,
    },
}

/// Why an [`RtspMessage`] cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtspWriteError {
    /// A method, URI, version, reason, header name or value would break the framing.
    #[error("RTSP {field} {value:?} contains characters that cannot be written")]
    InvalidField {
        /// Which part of the message.
        field: &'static str,
        /// The offending text.
        value: String,
    },
    /// A `Content-Length` header disagrees with the body.
    #[error("Content-Length {header:?} does not match a body of {body} bytes")]
    ContentLengthMismatch {
        /// The header value.
        header: String,
        /// Body length.
        body: usize,
    },
    /// The status code is not three digits.
    #[error("RTSP status {status} is not in 100..=999")]
    InvalidStatus {
        /// The status given.
        status: u16,
    },
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD URI VERSION` (RFC 2326 §6.1).
    Request {
        /// Method, e.g. `DESCRIBE`; case-sensitive (§6.1).
        method: String,
        /// Request-URI; may be empty (Merging Anubis ANNOUNCE).
        uri: String,
    },
    /// `VERSION STATUS REASON` (RFC 2326 §7.1).
    Response {
        /// Three-digit status code.
        status: u16,
        /// Reason phrase; may be empty.
        reason: String,
    },
}

/// Header fields in arrival order, duplicates kept; names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of `name`, ignoring ASCII case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a field after the others.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Replaces every field called `name` by one with `value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.0.push((name.to_owned(), value.into()));
    }

    /// All fields, as (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One RTSP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspMessage {
    /// Request or status line.
    pub start: StartLine,
    /// Protocol version as sent, e.g. `RTSP/1.0`.
    pub version: String,
    /// Header fields.
    pub headers: Headers,
    /// Body (exactly `Content-Length` bytes; empty without one).
    pub body: Vec<u8>,
}

impl RtspMessage {
    /// A request with no headers and no body.
    pub fn request(method: impl Into<String>, uri: impl Into<String>) -> Self {
        Self {
            start: StartLine::Request {
                method: method.into(),
                uri: uri.into(),
            },
            version: RTSP_VERSION.to_owned(),
            headers: Headers::default(),
            body: Vec::new(),
        }
    }

    /// A response with no headers and no body.
    pub fn response(status: u16, reason: impl Into<String>) -> Self {
        Self {
            start: StartLine::Response {
                status,
                reason: reason.into(),
            },
            version: RTSP_VERSION.to_owned(),
            headers: Headers::default(),
            body: Vec::new(),
        }
    }

    /// Adds a header (builder style).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets the body (builder style); the writer adds `Content-Length`.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// First value of header `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// `CSeq` (RFC 2326 §12.17), when present and numeric.
    pub fn cseq(&self) -> Option<u32> {
        self.header("CSeq")?.trim().parse().ok()
    }

    /// The method, for a request.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The request-URI, for a request.
    pub fn uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// Appends the message to `out` with CRLF line ends. A `Content-Length` is added when
    /// the body is not empty and none is set; an existing one must match the body.
    ///
    /// # Errors
    /// Text that would break the framing (CR, LF, other controls; spaces in a method or
    /// header name), a mismatched `Content-Length`, a status outside 100..=999.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), RtspWriteError> {
        let head = self.head_text()?;
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
        Ok(())
    }

    /// The message as bytes; see [`RtspMessage::write_to`].
    ///
    /// # Errors
    /// As [`RtspMessage::write_to`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, RtspWriteError> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        self.write_to(&mut out)?;
        Ok(out)
    }

    fn head_text(&self) -> Result<String, RtspWriteError> {
        check_token("version", &self.version)?;
        let mut s = String::with_capacity(256);
        // `write!` into a String cannot fail.
        match &self.start {
            StartLine::Request { method, uri } => {
                check_token("method", method)?;
                check_text("uri", uri)?;
                let _ = write!(s, "{method} {uri} {}\r\n", self.version);
            }
            StartLine::Response { status, reason } => {
                if !(100..=999).contains(status) {
                    return Err(RtspWriteError::InvalidStatus { status: *status });
                }
                check_text("reason", reason)?;
                let _ = write!(s, "{} {status} {reason}\r\n", self.version);
            }
        }
        for (name, value) in self.headers.iter() {
            check_header_name(name)?;
            check_text("header value", value)?;
            let _ = write!(s, "{name}: {value}\r\n");
        }
        self.write_content_length(&mut s)?;
        s.push_str("\r\n");
        Ok(s)
    }

    fn write_content_length(&self, s: &mut String) -> Result<(), RtspWriteError> {
        match self.header("Content-Length") {
            Some(v) if v.trim().parse::<usize>().ok() != Some(self.body.len()) => {
                Err(RtspWriteError::ContentLengthMismatch {
                    header: v.to_owned(),
                    body: self.body.len(),
                })
            }
            Some(_) => Ok(()),
            None if self.body.is_empty() => Ok(()),
            None => {
                let _ = write!(s, "Content-Length: {}\r\n", self.body.len());
                Ok(())
            }
        }
    }
}

/// A token (method, version, header name) has no whitespace and no controls.
fn check_token(field: &'static str, v: &str) -> Result<(), RtspWriteError> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RtspWriteError::InvalidField {
            field,
            value: v.to_owned(),
        });
    }
    Ok(())
}

fn check_header_name(v: &str) -> Result<(), RtspWriteError> {
    check_token("header name", v)?;
    if v.contains(':') {
        return Err(RtspWriteError::InvalidField {
            field: "header name",
            value: v.to_owned(),
        });
    }
    Ok(())
}

/// Free text (URI, reason, header value): no controls except tab, and no surrounding
/// blanks, since the parser trims those and the round trip must be exact.
fn check_text(field: &'static str, v: &str) -> Result<(), RtspWriteError> {
    let bad_char = v.chars().any(|c| c.is_control() && c != '\t');
    if bad_char || v.trim_matches(is_blank) != v {
        return Err(RtspWriteError::InvalidField {
            field,
            value: v.to_owned(),
        });
    }
    Ok(())
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Incremental RTSP stream parser; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct RtspParser {
    buf: Vec<u8>,
    limits: Limits,
    /// Head parsed, waiting for `body_len` bytes after `head_len`.
    pending: Option<Pending>,
    /// Where the search for the end of the head resumes, so feeding one byte at a time
    /// stays linear.
    scan_from: usize,
    failed: Option<RtspError>,
}

#[derive(Debug, Clone)]
struct Pending {
    message: RtspMessage,
    head_len: usize,
    body_len: usize,
}

impl RtspParser {
    /// A parser with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser with explicit limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as part of a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message; `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// The stream is not RTSP or exceeds [`Limits`]; the same error is returned on every
    /// later call, since framing is lost.
    pub fn next_message(&mut self) -> Result<Option<RtspMessage>, RtspError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.advance() {
            Ok(m) => Ok(m),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn advance(&mut self) -> Result<Option<RtspMessage>, RtspError> {
        if self.pending.is_none() {
            self.skip_empty_lines();
            let Some(head_len) = find_head_end(&self.buf, self.scan_from) else {
                // The terminator is at most 4 bytes; rescan only the tail next time.
                self.scan_from = self.buf.len().saturating_sub(3);
                if self.buf.len() > self.limits.max_head {
                    return Err(RtspError::HeadTooLarge {
                        limit: self.limits.max_head,
                    });
                }
                return Ok(None);
            };
            if head_len > self.limits.max_head {
                return Err(RtspError::HeadTooLarge {
                    limit: self.limits.max_head,
                });
            }
            let head = self.buf.get(..head_len).unwrap_or_default();
            let message = parse_head(head)?;
            let body_len = content_length(&message.headers)?;
            if body_len > self.limits.max_body {
                return Err(RtspError::BodyTooLarge {
                    length: body_len,
                    limit: self.limits.max_body,
                });
            }
            self.pending = Some(Pending {
                message,
                head_len,
                body_len,
            });
        }
        self.take_body()
    }

    /// RFC 2616 §4.1: ignore empty lines where a start line is expected.
    fn skip_empty_lines(&mut self) {
        let n = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.buf.drain(..n);
        self.scan_from = self.scan_from.saturating_sub(n);
    }

    fn take_body(&mut self) -> Result<Option<RtspMessage>, RtspError> {
        let Some(p) = &self.pending else {
            return Ok(None);
        };
        // Both were bounded by the limits, so this cannot overflow in practice; checked
        // anyway so that huge limits stay safe.
        let total = p
            .head_len
            .checked_add(p.body_len)
            .ok_or(RtspError::BodyTooLarge {
                length: p.body_len,
                limit: self.limits.max_body,
            })?;
        let Some(body) = self.buf.get(p.head_len..total) else {
            return Ok(None);
        };
        let body = body.to_vec();
        self.buf.drain(..total);
        self.scan_from = 0;
        let Some(Pending { mut message, .. }) = self.pending.take() else {
            return Ok(None);
        };
        message.body = body;
        Ok(Some(message))
    }
}

/// Length of the head including the empty line that ends it (CRLF CRLF, or LF LF and
/// mixes, for servers that send bare LF).
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let after = i + off + 1;
        match buf.get(after..) {
            Some([b'\n', ..]) => return Some(after + 1),
            Some([b'\r', b'\n', ..]) => return Some(after + 2),
            _ => i = after,
        }
    }
    None
}

fn parse_head(head: &[u8]) -> Result<RtspMessage, RtspError> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or_default();
    let (start, version) = parse_start_line(start_line)?;
    let mut headers = Headers::default();
    for line in lines.take_while(|l| !l.is_empty()) {
        parse_header_line(line, &mut headers)?;
    }
    Ok(RtspMessage {
        start,
        version,
        headers,
        body: Vec::new(),
    })
}

fn invalid_start(line: &str) -> RtspError {
    RtspError::InvalidStartLine {
        line: line.to_owned(),
    }
}

fn has_bad_controls(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\t')
}

fn parse_start_line(line: &str) -> Result<(StartLine, String), RtspError> {
    if has_bad_controls(line) {
        return Err(invalid_start(line));
    }
    if line.starts_with("RTSP/") {
        parse_status_line(line)
    } else {
        parse_request_line(line)
    }
}

/// `RTSP/1.0 200 OK`; the reason may be empty or missing.
fn parse_status_line(line: &str) -> Result<(StartLine, String), RtspError> {
    let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim_start_matches(is_blank);
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let valid_code = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
    let status: u16 = code
        .parse()
        .ok()
        .filter(|s| valid_code && (100..=999).contains(s))
        .ok_or_else(|| invalid_start(line))?;
    if version.contains(char::is_whitespace) {
        return Err(invalid_start(line));
    }
    let start = StartLine::Response {
        status,
        reason: reason.trim_matches(is_blank).to_owned(),
    };
    Ok((start, version.to_owned()))
}

/// `METHOD URI RTSP/1.0`; the URI may be empty (two spaces) and is trimmed.
fn parse_request_line(line: &str) -> Result<(StartLine, String), RtspError> {
    let (method, rest) = line.split_once(' ').ok_or_else(|| invalid_start(line))?;
    let (uri, version) = rest.rsplit_once(' ').unwrap_or(("", rest));
    let method_ok = !method.is_empty() && !method.contains(char::is_whitespace);
    let version_ok = version.starts_with("RTSP/") && !version.contains(char::is_whitespace);
    if !method_ok || !version_ok {
        return Err(invalid_start(line));
    }
    let start = StartLine::Request {
        method: method.to_owned(),
        uri: uri.trim_matches(is_blank).to_owned(),
    };
    Ok((start, version.to_owned()))
}

fn parse_header_line(line: &str, headers: &mut Headers) -> Result<(), RtspError> {
    let invalid = || RtspError::InvalidHeader {
        line: line.to_owned(),
    };
    if has_bad_controls(line) {
        return Err(invalid());
    }
    // Folded continuation (RFC 2616 §2.2): joins the previous value with one space.
    if line.starts_with(is_blank) {
        let (_, value) = headers.0.last_mut().ok_or_else(invalid)?;
        let more = line.trim_matches(is_blank);
        if !more.is_empty() {
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(more);
        }
        return Ok(());
    }
    let (name, value) = line.split_once(':').ok_or_else(invalid)?;
    let name = name.trim_matches(is_blank);
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(invalid());
    }
    headers.append(name, value.trim_matches(is_blank));
    Ok(())
}

/// `Content-Length` (RFC 2326 §12.14); absent means no body. Repeated equal values are
/// tolerated, different ones are not (they would make framing ambiguous).
fn content_length(headers: &Headers) -> Result<usize, RtspError> {
    let mut length = None;
    for v in headers.get_all("Content-Length") {
        let t = v.trim();
        let n = t
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| t.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| RtspError::InvalidContentLength {
                value: v.to_owned(),
            })?;
        if length.is_some_and(|l| l != n) {
            return Err(RtspError::InvalidContentLength {
                value: headers
                    .get_all("Content-Length")
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Vec<RtspMessage> {
        let mut p = RtspParser::new();
        p.push(bytes);
        let mut out = Vec::new();
        while let Ok(Some(m)) = p.next_message() {
            out.push(m);
        }
        out
    }

    #[test]
    fn request_round_trip() {
        let m = RtspMessage::request("DESCRIBE", "rtsp://h/by-name/a%20b")
            .with_header("CSeq", "2")
            .with_header("Accept", "application/sdp");
        let bytes = m.to_bytes().expect("write");
        assert_eq!(
            bytes,
            b"DESCRIBE rtsp://h/by-name/a%20b RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n"
        );
        assert_eq!(parse_all(&bytes), vec![m]);
    }

    #[test]
    fn response_body_gets_content_length() {
        let m = RtspMessage::response(200, "OK").with_body(b"v=0\r\n".to_vec());
        let bytes = m.to_bytes().expect("write");
        let got = parse_all(&bytes);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, b"v=0\r\n");
        assert_eq!(got[0].header("content-length"), Some("5"));
    }

    #[test]
    fn bare_lf_and_folding() {
        let got = parse_all(b"OPTIONS * RTSP/1.0\nCSeq: 7\nX-A: one\n  two\n\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].cseq(), Some(7));
        assert_eq!(got[0].header("x-a"), Some("one two"));
    }

    #[test]
    fn latin1_in_head_is_replaced_not_fatal() {
        let got =
            parse_all(b"ANNOUNCE rtsp://h/by-name/caf\xe9 RTSP/1.0\r\nX-Name: \xe9t\xe9\r\n\r\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].uri(), Some("rtsp://h/by-name/caf\u{fffd}"));
        assert_eq!(got[0].header("x-name"), Some("\u{fffd}t\u{fffd}"));
    }

    #[test]
    fn errors_are_sticky_and_bounded() {
        let mut p = RtspParser::with_limits(Limits {
            max_head: 32,
            max_body: 4,
        });
        p.push(&[b'A'; 40]);
        let e = p.next_message().expect_err("too large");
        assert_eq!(e, RtspError::HeadTooLarge { limit: 32 });
        assert_eq!(p.next_message(), Err(e));
        let mut p = RtspParser::with_limits(Limits {
            max_head: 64,
            max_body: 4,
        });
        p.push(b"RTSP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert!(matches!(
            p.next_message(),
            Err(RtspError::BodyTooLarge { length: 5, .. })
        ));
    }

    #[test]
    fn writer_rejects_framing_breakers() {
        let m = RtspMessage::request("GET", "x").with_header("A", "b\r\nEvil: 1");
        assert!(m.to_bytes().is_err());
        let m = RtspMessage::response(200, "OK")
            .with_header("Content-Length", "3")
            .with_body(b"ab".to_vec());
        assert!(matches!(
            m.to_bytes(),
            Err(RtspWriteError::ContentLengthMismatch { .. })
        ));
    }
}
