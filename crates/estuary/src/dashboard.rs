//! The web dashboard: a small single-page app embedded in the binary, so it works offline and
//! on an isolated control-room network (no CDN, no build step, no files to install).
//!
//! It is plain HTML, CSS and JavaScript modules under `assets/dashboard/`, served at `/` and
//! `/dashboard/*`. Everything it shows comes from the REST API (`/api/...`) on the same origin,
//! which is why the Content-Security-Policy allows `'self'` only.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    /// Strong validator: a hash of the content, computed at compile time.
    etag: &'static str,
}

/// FNV-1a, 64 bits: enough to tell two versions of a file apart for caching.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits + `"`, built in a const context.
const fn etag_bytes(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../assets/dashboard/", $file));
        const ETAG: [u8; 18] = etag_bytes(BODY);
        Asset {
            body: BODY,
            content_type: $content_type,
            // Hex digits and quotes are ASCII, so this cannot fail.
            etag: match std::str::from_utf8(&ETAG) {
                Ok(s) => s,
                Err(_) => panic!("etag is ASCII"),
            },
        }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
const APP_JS: Asset = asset!("app.js", "text/javascript; charset=utf-8");
const METERS_JS: Asset = asset!("meters.js", "text/javascript; charset=utf-8");
const STYLE_CSS: Asset = asset!("style.css", "text/css; charset=utf-8");
const ICON_SVG: Asset = asset!("icon.svg", "image/svg+xml");

/// Same origin only: no inline script or style, no third-party anything, and the page may not
/// be framed (clickjacking a control surface is worth preventing).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The dashboard's routes, to merge into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/dashboard/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/dashboard/meters.js",
            get(|h: HeaderMap| async move { serve(&METERS_JS, &h) }),
        )
        .route(
            "/dashboard/style.css",
            get(|h: HeaderMap| async move { serve(&STYLE_CSS, &h) }),
        )
        .route(
            "/dashboard/icon.svg",
            get(|h: HeaderMap| async move { serve(&ICON_SVG, &h) }),
        )
        .route(
            "/favicon.ico",
            get(|h: HeaderMap| async move { serve(&ICON_SVG, &h) }),
        )
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate every time (cheap: a 304 on the ETag), so a daemon upgrade is picked up at
    // the next load without stale JavaScript talking to a newer API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_by_content_and_are_quoted_hex() {
        assert_ne!(INDEX.etag, APP_JS.etag);
        assert_eq!(INDEX.etag.len(), 18);
        assert!(INDEX.etag.starts_with('"') && INDEX.etag.ends_with('"'));
        assert!(INDEX.etag[1..17].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_matching_etag_gets_304_with_the_same_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(APP_JS.etag));
        let r = serve(&APP_JS, &h);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = serve(&APP_JS, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ASCII header")
                .contains("script-src 'self'")
        );
    }

    #[test]
    fn the_page_loads_only_files_that_are_served() {
        let html = std::str::from_utf8(INDEX.body).expect("UTF-8 page");
        for path in [
            "/dashboard/app.js",
            "/dashboard/style.css",
            "/dashboard/icon.svg",
        ] {
            assert!(html.contains(path), "{path}");
        }
        // No inline script or style: the CSP would block them.
        assert!(!html.contains("<script>") && !html.contains("style="));
    }
}
