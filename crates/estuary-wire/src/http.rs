//! HTTP/1.x message heads, as far as Estuary's own small HTTP peers need them: the request a
//! listen-in client sends (`GET /path?token=... HTTP/1.1` and its `Authorization` header) and
//! the response an Icecast server (or any HTTP server) answers a source or admin request with
//! (`HTTP/1.0 200 OK`, Icecast 1.x's `ICE/1.0`, Shoutcast's `ICY 200 OK`).
//!
//! The tokenizing is `httparse`'s (sans-IO, used by hyper); this module bounds the head, reads
//! what Estuary needs out of it and says how many bytes it took, so the caller keeps whatever
//! followed. Every function returns a `Result` and never panics on any input.

use thiserror::Error;

/// The largest head accepted: a listen-in request or a server's answer is far smaller.
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers read per message; more is refused.
const MAX_HEADERS: usize = 64;

/// Why a head cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("the HTTP head is longer than {MAX_HEAD} bytes")]
    TooLong,
    #[error("not an HTTP message: {0}")]
    Malformed(String),
}

/// A parse that needs more bytes, or what was read and the bytes it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The head is not complete yet; read more and call again with everything so far.
    Partial,
    Complete {
        head: T,
        len: usize,
    },
}

/// What a listen-in client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenRequest {
    pub method: String,
    /// The target's path, without the query.
    pub path: String,
    /// `?token=...` or `Authorization: Bearer ...` (the header wins).
    pub token: Option<String>,
}

impl ListenRequest {
    /// `HEAD`: headers only, no stream.
    pub fn head_only(&self) -> bool {
        self.method == "HEAD"
    }
}

/// A response's status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub code: u16,
    pub reason: String,
}

impl ResponseHead {
    /// `1xx`: an interim answer; the final one follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.code)
    }
}

fn malformed(e: httparse::Error) -> HttpError {
    HttpError::Malformed(e.to_string())
}

fn too_long_unless_complete<T>(bytes: &[u8]) -> Result<Parsed<T>, HttpError> {
    if bytes.len() >= MAX_HEAD {
        Err(HttpError::TooLong)
    } else {
        Ok(Parsed::Partial)
    }
}

/// Reads a request head from the start of `bytes`.
pub fn parse_request(bytes: &[u8]) -> Result<Parsed<ListenRequest>, HttpError> {
    let bytes = bytes.get(..MAX_HEAD).unwrap_or(bytes);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(bytes).map_err(malformed)? {
        httparse::Status::Partial => return too_long_unless_complete(bytes),
        httparse::Status::Complete(len) => len,
    };
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(HttpError::Malformed("no request line".into()));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut token = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_owned);
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("authorization")
            && let Ok(value) = std::str::from_utf8(header.value)
            && let Some(t) = strip_prefix_ignore_case(value.trim(), "bearer ")
        {
            token = Some(t.trim().to_owned());
        }
    }
    Ok(Parsed::Complete {
        head: ListenRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            token,
        },
        len,
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// Reads a response head from the start of `bytes`. `ICE/1.0` and `ICY` status lines (old
/// Icecast and Shoutcast servers) are read as `HTTP/1.0`.
pub fn parse_response(bytes: &[u8]) -> Result<Parsed<ResponseHead>, HttpError> {
    let bytes = bytes.get(..MAX_HEAD).unwrap_or(bytes);
    // httparse knows HTTP/1.x only; the other two differ in the protocol name alone.
    let normalized = match (bytes.strip_prefix(b"ICE/1.0"), bytes.strip_prefix(b"ICY")) {
        (Some(rest), _) | (None, Some(rest)) => [b"HTTP/1.0".as_slice(), rest].concat(),
        (None, None) => bytes.to_vec(),
    };
    let added = normalized.len().saturating_sub(bytes.len());
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(&normalized).map_err(malformed)? {
        httparse::Status::Partial => return too_long_unless_complete(bytes),
        httparse::Status::Complete(len) => len,
    };
    let code = response
        .code
        .ok_or_else(|| HttpError::Malformed("no status code".into()))?;
    let len = len
        .checked_sub(added)
        .ok_or_else(|| HttpError::Malformed("short status line".into()))?;
    Ok(Parsed::Complete {
        head: ResponseHead {
            code,
            reason: response.reason.unwrap_or("").to_owned(),
        },
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> ListenRequest {
        match parse_request(text.as_bytes()) {
            Ok(Parsed::Complete { head, len }) => {
                assert_eq!(len, text.len());
                head
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn listen_requests_give_path_and_token() {
        let r = request("GET /a.mp3?x=1&token=abc HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.token.as_deref()),
            ("GET", "/a.mp3", Some("abc"))
        );
        let r = request("HEAD /a.mp3 HTTP/1.0\r\nauthorization: bearer  t0k \r\n\r\n");
        assert!(r.head_only());
        assert_eq!(r.token.as_deref(), Some("t0k"));
        assert_eq!(
            parse_request(b"GET /a.mp3 HTTP/1.1\r\nHost"),
            Ok(Parsed::Partial)
        );
        assert!(parse_request(b"\x00\x01 junk\r\n\r\n").is_err());
        assert!(parse_request(&vec![b'a'; MAX_HEAD + 10]).is_err());
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse_request(long.as_bytes()), Err(HttpError::TooLong));
    }

    #[test]
    fn responses_of_http_icecast_and_shoutcast() {
        let cases: [(&[u8], u16, &str, usize); 4] = [
            (
                b"HTTP/1.0 200 OK\r\nServer: Icecast 2.4.4\r\n\r\nbody",
                200,
                "OK",
                42,
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", 100, "Continue", 25),
            (
                b"ICE/1.0 401 Authentication Required\r\n\r\n",
                401,
                "Authentication Required",
                39,
            ),
            (b"ICY 200 OK\r\n\r\n", 200, "OK", 14),
        ];
        for (bytes, code, reason, len) in cases {
            let Ok(Parsed::Complete { head, len: got }) = parse_response(bytes) else {
                panic!("{bytes:?}");
            };
            assert_eq!((head.code, head.reason.as_str(), got), (code, reason, len));
        }
        assert_eq!(parse_response(b"HTTP/1.0 20"), Ok(Parsed::Partial));
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
                let _ = parse_request(&bytes);
                let _ = parse_response(&bytes);
                for prefix in [b"ICE/1.0".as_slice(), b"ICY", b"HTTP/1.1 200"] {
                    let _ = parse_response(&[prefix, &bytes].concat());
                }
            }

            #[test]
            fn a_complete_head_parses_the_same_with_anything_after_it(
                path in "/[a-z0-9._-]{1,32}",
                token in proptest::option::of("[A-Za-z0-9]{1,24}"),
                tail in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let query = token.as_ref().map(|t| format!("?token={t}")).unwrap_or_default();
                let head = format!("GET {path}{query} HTTP/1.1\r\nHost: x\r\n\r\n");
                let bytes = [head.as_bytes(), &tail].concat();
                let Ok(Parsed::Complete { head: r, len }) = parse_request(&bytes) else {
                    return Err(TestCaseError::fail("not parsed"));
                };
                prop_assert_eq!(len, head.len());
                prop_assert_eq!(r.path, path);
                prop_assert_eq!(r.token, token);
            }
        }
    }
}
