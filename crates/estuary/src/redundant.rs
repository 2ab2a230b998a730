//! ST 2022-7 inputs: where the second path of a stream comes from (the config's `redundant`
//! table, or the SDP's `a=group:DUP`), and how much skew the buffer absorbs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use estuary_wire::sdp;

use crate::config::{FieldError, InputConfig, InputPlan, SourceSpec};

/// Path skew absorbed when `max_skew` is not given.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_millis(10);
/// Largest `max_skew` accepted.
const MAX_MAX_SKEW: Duration = Duration::from_secs(1);

/// `redundant = { address = "239.69.2.1:5004", interface = "eth1" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedundantConfig {
    /// The second path's destination; default: the other stream of the SDP's
    /// `a=group:DUP`.
    pub address: Option<Spanned<SocketAddr>>,
    /// The second path's interface; default: the input's `interface`.
    pub interface: Option<Spanned<String>>,
    /// Source-specific multicast sender on the second path.
    pub source: Option<IpAddr>,
}

/// The second path, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub destination: SocketAddr,
    pub source: Option<IpAddr>,
    pub interface: Option<String>,
}

impl InputConfig {
    /// Path skew absorbed by this input's buffer (zero for a single-path input).
    pub fn skew_allowance(&self, redundant: bool) -> Duration {
        if redundant {
            self.max_skew.unwrap_or(DEFAULT_MAX_SKEW)
        } else {
            Duration::ZERO
        }
    }

    /// The second path: from `redundant`, else from the SDP's `a=group:DUP` pairing the
    /// chosen stream (`sdp_text` for a discovered stream; the configured SDP otherwise).
    pub fn redundant_leg(&self, sdp_text: Option<&str>) -> Result<Option<Leg>, FieldError> {
        let config = self.redundant.as_ref().map(Spanned::get_ref);
        let span = self
            .redundant
            .as_ref()
            .map_or(self.name.span(), Spanned::span);
        let text = match (sdp_text, &self.sdp_file, &self.sdp) {
            (Some(text), _, _) => Some(text.to_owned()),
            (None, Some(file), _) => std::fs::read_to_string(file.get_ref()).ok(),
            (None, None, Some(sdp)) => Some(sdp.get_ref().clone()),
            _ => None,
        };
        let from_sdp = text.as_deref().and_then(|t| self.dup_twin(t));
        let interface = config
            .and_then(|c| c.interface.as_ref())
            .or(self.interface.as_ref())
            .map(|i| i.get_ref().clone());
        let source_override = config.and_then(|c| c.source);
        match (config.and_then(|c| c.address.as_ref()), from_sdp) {
            (Some(address), _) => Ok(Some(Leg {
                destination: *address.get_ref(),
                source: source_override,
                interface,
            })),
            (None, Some((destination, source))) => Ok(Some(Leg {
                destination,
                source: source_override.or(source),
                interface,
            })),
            (None, None) if config.is_some() => Err((
                span,
                "redundant.address".into(),
                "missing (and the SDP has no `a=group:DUP` pairing this stream)".into(),
            )),
            (None, None) => Ok(None),
        }
    }

    /// The other stream of the `a=group:DUP` that contains `sdp_stream`.
    fn dup_twin(&self, text: &str) -> Option<(SocketAddr, Option<IpAddr>)> {
        let session = sdp::parse(text).ok()?;
        let (a, b) = session
            .dup_pairs()
            .into_iter()
            .find(|&(a, b)| a == self.sdp_stream || b == self.sdp_stream)?;
        let twin = &session.streams[if a == self.sdp_stream { b } else { a }];
        let conn = twin.connection.as_ref()?;
        let source = twin
            .source_filter
            .as_ref()
            .and_then(|f| f.sources.first().copied());
        Some((SocketAddr::new(conn.address, twin.port), source))
    }

    /// Checks `redundant` and `max_skew` (a followed stream's SDP is checked when it comes).
    pub fn validate_redundancy(&self) -> Result<(), FieldError> {
        if let Some(skew) = self.max_skew
            && skew > MAX_MAX_SKEW
        {
            return Err((
                self.name.span(),
                "max_skew".into(),
                "must be at most 1s".into(),
            ));
        }
        let Some(redundant) = &self.redundant else {
            return Ok(());
        };
        if let Some(iface) = &redundant.get_ref().interface {
            estuary_io::mcast::resolve_interface(iface.get_ref())
                .map_err(|e| (iface.span(), "redundant.interface".into(), e.to_string()))?;
        }
        let following = matches!(self.source_spec(), Ok(Some(SourceSpec::Discovered(_))));
        if following {
            return Ok(());
        }
        let leg = self.redundant_leg(None)?;
        if let (Some(leg), Ok(InputPlan::Fixed(stream))) = (leg, self.plan())
            && leg.destination == stream.destination
            && leg.interface == self.interface.as_ref().map(|i| i.get_ref().clone())
        {
            return Err((
                redundant.span(),
                "redundant.address".into(),
                format!(
                    "{} on the same interface is the first path itself",
                    leg.destination
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config;

    const BASE: &str = "[discovery]\nsap = false\nravenna = false\n\n";

    fn load(text: &str) -> Result<config::Config, config::ConfigError> {
        config::parse(&format!("{BASE}{text}"), std::path::Path::new("."))
    }

    #[test]
    fn configured_second_path() {
        let cfg = load(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\n\
             redundant = { address = \"239.1.2.1:5004\" }\nmax_skew = \"20ms\"\n",
        )
        .expect("valid");
        let input = &cfg.inputs[0];
        let leg = input.redundant_leg(None).expect("ok").expect("a leg");
        assert_eq!(leg.destination.to_string(), "239.1.2.1:5004");
        assert_eq!(input.skew_allowance(true).as_millis(), 20);
    }

    #[test]
    fn second_path_from_sdp_dup_group() {
        let sdp = "v=0\\r\\no=- 1 1 IN IP4 10.0.0.1\\r\\ns=dup\\r\\nt=0 0\\r\\na=group:DUP p s\\r\\n\
                   m=audio 5004 RTP/AVP 98\\r\\nc=IN IP4 239.1.1.1/32\\r\\na=rtpmap:98 L24/48000/2\\r\\na=mid:p\\r\\n\
                   m=audio 5006 RTP/AVP 98\\r\\nc=IN IP4 239.2.1.1/32\\r\\na=rtpmap:98 L24/48000/2\\r\\na=mid:s\\r\\n";
        let cfg = load(&format!(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\nsdp = \"{sdp}\"\n"
        ))
        .expect("valid");
        let leg = cfg.inputs[0]
            .redundant_leg(None)
            .expect("ok")
            .expect("a leg");
        assert_eq!(leg.destination.to_string(), "239.2.1.1:5006");
    }

    #[test]
    fn errors_name_the_field() {
        let e = load(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\n\
             redundant = { interface = \"lo\" }\n",
        )
        .expect_err("no address");
        assert!(e.to_string().contains("redundant.address"), "{e}");
        let e = load(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\n\
             redundant = { address = \"239.1.1.1:5004\" }\n",
        )
        .expect_err("same path");
        assert!(e.to_string().contains("first path itself"), "{e}");
        let e = load(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\n\
             redundant = { address = \"239.1.2.1:5004\", port = 3 }\n",
        )
        .expect_err("unknown field");
        assert!(e.to_string().contains("port"), "{e}");
        let e = load(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\n\
             max_skew = \"5s\"\n",
        )
        .expect_err("skew");
        assert!(e.to_string().contains("max_skew"), "{e}");
    }
}
