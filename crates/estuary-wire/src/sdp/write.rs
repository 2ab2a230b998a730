//! The strict writer: CRLF line ends, RFC 8866 §5 field order (v o s i c t a*, then per
//! media m i c a*), and only what the model holds, so that `parse(write(d))` gives `d` back
//! (warnings aside).
//!
//! Per-stream values are written at media level. A media `i=` or `a=clock-domain` equal to
//! the session-level one is left out, because the reader inherits it back.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{
    AudioStream, Connection, Direction, FrameCount, Origin, RefClock, SessionDescription,
    SourceFilter, hex_id,
};

/// Writes `d` as SDP text; see the module documentation.
///
/// Text fields are written as they are: they must not contain line breaks (the reader never
/// produces such values).
pub fn write(d: &SessionDescription) -> String {
    let mut s = String::with_capacity(256 + 512 * d.streams.len());
    line(&mut s, "v=0");
    write_origin(&mut s, &d.origin);
    // RFC 8866 §5.3 recommends "s= " when there is no name; the reader returns it as "".
    if d.name.is_empty() {
        line(&mut s, "s= ");
    } else {
        line(&mut s, &format!("s={}", d.name));
    }
    if let Some(i) = &d.info {
        line(&mut s, &format!("i={i}"));
    }
    line(&mut s, "t=0 0");
    if let Some(k) = &d.keywords {
        line(&mut s, &format!("a=keywds:{k}"));
    }
    if let Some(dom) = d.clock_domain {
        line(&mut s, &format!("a=clock-domain:PTPv2 {dom}"));
    }
    for g in &d.groups {
        let mut v = format!("a=group:{}", g.semantics);
        for m in &g.mids {
            v.push(' ');
            v.push_str(m);
        }
        line(&mut s, &v);
    }
    for stream in &d.streams {
        write_stream(&mut s, d, stream);
    }
    s
}

fn line(s: &mut String, text: &str) {
    s.push_str(text);
    s.push_str("\r\n");
}

fn addr_type(a: &IpAddr) -> &'static str {
    if a.is_ipv4() { "IP4" } else { "IP6" }
}

/// A missing `o=` was read as `Origin::default()` (empty user name); writing none keeps it so.
fn write_origin(s: &mut String, o: &Origin) {
    if o.username.is_empty() {
        return;
    }
    let ty = match o.address.parse::<IpAddr>() {
        Ok(a) => addr_type(&a),
        Err(_) => "IP4",
    };
    line(
        s,
        &format!(
            "o={} {} {} IN {ty} {}",
            o.username, o.session_id, o.session_version, o.address
        ),
    );
}

fn write_stream(s: &mut String, d: &SessionDescription, m: &AudioStream) {
    let pt = m.payload_type;
    line(s, &format!("m=audio {} RTP/AVP {pt}", m.port));
    if let Some(i) = m.info.as_ref().filter(|i| Some(*i) != d.info.as_ref()) {
        line(s, &format!("i={i}"));
    }
    if let Some(c) = &m.connection {
        line(s, &connection(c));
    }
    line(
        s,
        &format!(
            "a=rtpmap:{pt} {}/{}/{}",
            m.format.encoding_name(),
            m.sample_rate,
            m.channels
        ),
    );
    if let Some(o) = &m.channel_order {
        line(s, &format!("a=fmtp:{pt} channel-order={o}"));
    }
    if let Some(p) = m.ptime_ms {
        line(s, &format!("a=ptime:{p}"));
    }
    if let Some(p) = m.maxptime_ms {
        line(s, &format!("a=maxptime:{p}"));
    }
    match m.framecount {
        Some(FrameCount::Exact(n)) => line(s, &format!("a=framecount:{n}")),
        Some(FrameCount::Range { min, max }) => line(s, &format!("a=framecount:{min}-{max}")),
        None => {}
    }
    if let Some(f) = &m.source_filter {
        line(s, &source_filter(f));
    }
    if let Some(r) = &m.ts_refclk {
        line(s, &format!("a=ts-refclk:{}", refclk(r)));
    }
    if let Some(o) = m.media_clock_offset {
        line(s, &format!("a=mediaclk:direct={o}"));
    }
    if let Some(dom) = m.clock_domain.filter(|dom| Some(*dom) != d.clock_domain) {
        line(s, &format!("a=clock-domain:PTPv2 {dom}"));
    }
    if let Some(t) = m.sync_time {
        line(s, &format!("a=sync-time:{t}"));
    }
    if let Some(mid) = &m.mid {
        line(s, &format!("a=mid:{mid}"));
    }
    if let Some(dir) = m.direction {
        line(s, direction(dir));
    }
}

/// `c=` with `/ttl[/count]` for IPv4 and `/count` for IPv6 (RFC 8866 §5.7). An IPv4 count
/// without a TTL cannot be written and is dropped.
fn connection(c: &Connection) -> String {
    let mut v = format!("c=IN {} {}", addr_type(&c.address), c.address);
    match (c.address, c.ttl, c.count) {
        (IpAddr::V4(_), Some(ttl), count) => {
            let _ = write!(v, "/{ttl}");
            if let Some(n) = count {
                let _ = write!(v, "/{n}");
            }
        }
        (IpAddr::V6(_), _, Some(n)) => {
            let _ = write!(v, "/{n}");
        }
        _ => {}
    }
    v
}

fn source_filter(f: &SourceFilter) -> String {
    let ty = f
        .destination
        .or_else(|| f.sources.first().copied())
        .map_or("IP4", |a| addr_type(&a));
    let dest = f.destination.map_or("*".to_string(), |a| a.to_string());
    let mode = if f.include { "incl" } else { "excl" };
    let mut v = format!("a=source-filter: {mode} IN {ty} {dest}");
    for src in &f.sources {
        let _ = write!(v, " {src}");
    }
    v
}

/// RFC 7273 §4.8 forms, in the spelling the reader accepts.
pub(super) fn refclk(r: &RefClock) -> String {
    match r {
        RefClock::Ptp {
            version,
            gmid,
            domain,
        } => match domain {
            Some(dom) => format!("ptp={version}:{}:{dom}", hex_id(gmid)),
            None => format!("ptp={version}:{}", hex_id(gmid)),
        },
        RefClock::PtpTraceable { version: None } => "ptp=traceable".into(),
        RefClock::PtpTraceable { version: Some(v) } => format!("ptp={v}:traceable"),
        RefClock::LocalMac(mac) => format!("localmac={}", hex_id(mac)),
        RefClock::Other(v) => v.clone(),
    }
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::SendRecv => "a=sendrecv",
        Direction::SendOnly => "a=sendonly",
        Direction::RecvOnly => "a=recvonly",
        Direction::Inactive => "a=inactive",
    }
}
