//! The settings of the compressed network outputs: `kind = "icecast"` (a source publishing to
//! an Icecast 2 / Shoutcast v2 server) and `kind = "http"` (listen-in served by Estuary).
//! See docs/outputs.md.

use estuary_io::encode::Codec;
use estuary_io::icecast::IcecastConfig;
use toml::Spanned;

use super::{CodecConfig, FieldError, OutputConfig, OutputKind, ResolvedStream};

/// HTTP listen-in: listeners served at once unless `max_listeners` says otherwise.
pub const DEFAULT_MAX_LISTENERS: u32 = 16;

/// An Icecast or HTTP output's settings, checked against its input.
#[derive(Debug, Clone, PartialEq)]
pub struct NetPlan {
    pub codec: Codec,
    pub bitrate: u32,
    pub sample_rate: u32,
    /// Channels encoded (1 after a mono downmix).
    pub channels: u16,
    pub mono: bool,
}

/// Where an Icecast URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcecastUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub mount: String,
}

impl CodecConfig {
    pub fn name(self) -> &'static str {
        match self {
            CodecConfig::Opus => "opus",
            CodecConfig::Pcm => "pcm",
            CodecConfig::Mp3 => "mp3",
            CodecConfig::Aac => "aac",
            CodecConfig::Flac => "flac",
        }
    }
}

impl OutputConfig {
    /// Icecast or HTTP: a compressed stream over TCP.
    pub fn is_network(&self) -> bool {
        matches!(
            self.kind,
            OutputKind::Icecast | OutputKind::Http | OutputKind::Rtmp
        )
    }

    /// The first Icecast/HTTP-only setting given, for the other kinds' checks.
    pub(super) fn net_field_set(&self) -> Option<&'static str> {
        self.net_fields()
            .into_iter()
            .find(|(_, set)| *set)
            .map(|(f, _)| f)
    }

    fn net_fields(&self) -> [(&'static str, bool); 17] {
        [
            ("url", self.url.is_some()),
            ("user", self.user.is_some()),
            ("password", self.password.is_some()),
            ("stream_name", self.stream_name.is_some()),
            ("description", self.description.is_some()),
            ("genre", self.genre.is_some()),
            ("homepage", self.homepage.is_some()),
            ("public", self.public.is_some()),
            ("title", self.title.is_some()),
            ("title_file", self.title_file.is_some()),
            ("sample_rate", self.sample_rate.is_some()),
            ("downmix", self.downmix.is_some()),
            ("path", self.path.is_some()),
            ("max_listeners", self.max_listeners.is_some()),
            ("token", self.token.is_some()),
            ("tls_ca_file", self.tls_ca_file.is_some()),
            ("tls_insecure", self.tls_insecure.is_some()),
        ]
    }

    /// Icecast/HTTP: refuses the other kinds' settings and asks for the required ones.
    pub(super) fn check_net_fields(&self) -> Result<(), FieldError> {
        let name = self.name.span();
        let kind = match self.kind {
            OutputKind::Icecast => "icecast",
            OutputKind::Rtmp => "rtmp",
            _ => "http",
        };
        let foreign = [
            ("mode", self.mode.is_some()),
            ("passphrase", self.passphrase.is_some()),
            ("key_length", self.key_length.is_some()),
            ("stream_id", self.stream_id.is_some()),
            ("format", self.format.is_some()),
            ("ptime", self.ptime.is_some()),
            ("ttl", self.ttl.is_some()),
            ("dscp", self.dscp.is_some()),
            ("payload_type", self.payload_type.is_some()),
            ("interface", self.interface.is_some()),
            ("session_name", self.session_name.is_some()),
            ("sdp_file", self.sdp_file.is_some()),
            ("sap", self.sap.is_some()),
            ("ravenna", self.ravenna.is_some()),
            ("redundant", self.redundant.is_some()),
        ];
        let other_kind: &[&str] = match self.kind {
            OutputKind::Icecast => &["path", "max_listeners", "token"],
            OutputKind::Rtmp => &[
                "path",
                "max_listeners",
                "token",
                "user",
                "password",
                "stream_name",
                "description",
                "genre",
                "homepage",
                "public",
                "title",
                "title_file",
            ],
            _ => &[
                "url",
                "user",
                "password",
                "stream_name",
                "description",
                "genre",
                "homepage",
                "public",
                "title_file",
                "tls_ca_file",
                "tls_insecure",
            ],
        };
        let not_ours = foreign
            .iter()
            .find(|(_, set)| *set)
            .map(|(f, _)| *f)
            .or_else(|| {
                self.net_fields()
                    .into_iter()
                    .find(|(f, set)| *set && other_kind.contains(f))
                    .map(|(f, _)| f)
            });
        if let Some(f) = not_ours {
            return Err((
                name,
                f.into(),
                format!("`{f}` is not a setting of kind = \"{kind}\" outputs"),
            ));
        }
        match self.kind {
            OutputKind::Rtmp => {
                if self.address.port() != 0 {
                    return Err((
                        name,
                        "address".into(),
                        "an RTMP output is addressed by `url`".into(),
                    ));
                }
                let url = self.url.as_ref().ok_or_else(|| {
                    (
                        name.clone(),
                        "url".into(),
                        "missing (rtmp://host/app/stream-key)".into(),
                    )
                })?;
                let tls = estuary_io::rtmp::RtmpConfig::parse(url.get_ref())
                    .map_err(|m| (url.span(), "url".into(), m))?
                    .tls;
                self.check_tls_fields(tls, "rtmps://")?;
                if self.codec.is_some_and(|c| c != CodecConfig::Aac) {
                    return Err((name, "codec".into(), "RTMP carries aac".into()));
                }
            }
            OutputKind::Icecast => {
                if self.address.port() != 0 {
                    return Err((
                        name,
                        "address".into(),
                        "an Icecast output is addressed by `url`".into(),
                    ));
                }
                let url = self.url.as_ref().ok_or_else(|| {
                    (
                        name.clone(),
                        "url".into(),
                        "missing (http://host:8000/mount)".into(),
                    )
                })?;
                let tls = parse_icecast_url(url.get_ref())
                    .map_err(|m| (url.span(), "url".into(), m))?
                    .tls;
                self.check_tls_fields(tls, "https://")?;
                if self.password.is_none() {
                    return Err((name, "password".into(), "missing".into()));
                }
            }
            _ => {
                if self.address.port() == 0 {
                    return Err((
                        name,
                        "address".into(),
                        "missing (the ip:port to listen on)".into(),
                    ));
                }
                let path = self
                    .path
                    .as_ref()
                    .ok_or_else(|| (name, "path".into(), "missing (e.g. /studio.mp3)".into()))?;
                let p = path.get_ref();
                if !p.starts_with('/')
                    || p.len() > 200
                    || p.chars().any(|c| c.is_control() || c == ' ' || c == '?')
                {
                    return Err((
                        path.span(),
                        "path".into(),
                        format!("{p:?} must start with '/' and hold no spaces or '?'"),
                    ));
                }
                if let Some(m) = &self.max_listeners
                    && !(1..=1000).contains(m.get_ref())
                {
                    return Err((m.span(), "max_listeners".into(), "must be 1 to 1000".into()));
                }
                if let Some(t) = &self.token
                    && t.get_ref().len() < 16
                {
                    return Err((
                        t.span(),
                        "token".into(),
                        "must be at least 16 characters".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_net(
        &self,
        stream: &ResolvedStream,
        carried: usize,
    ) -> Result<(), FieldError> {
        let plan = self.net_plan(stream)?;
        if !plan.mono && carried > 2 {
            let span = self
                .channels
                .as_ref()
                .map_or(self.name.span(), |c| c.span());
            return Err((
                span,
                "channels".into(),
                "carries 1 or 2 channels (downmix = \"mono\" folds more into one)".into(),
            ));
        }
        Ok(())
    }

    /// The codec, rate and channels of an Icecast or HTTP output fed by `stream`.
    pub fn net_plan(&self, stream: &ResolvedStream) -> Result<NetPlan, FieldError> {
        let codec = self.net_codec()?;
        let bitrate = *self.bitrate.get_ref();
        let range = match codec {
            Codec::Opus => 6_000..=510_000,
            Codec::Flac => 0..=u32::MAX,
            _ => 32_000..=320_000,
        };
        if !range.contains(&bitrate) {
            return Err((
                self.bitrate.span(),
                "bitrate".into(),
                format!(
                    "{} bitrate must be {} to {} bit/s",
                    codec_label(codec),
                    range.start(),
                    range.end()
                ),
            ));
        }
        let sample_rate = match &self.sample_rate {
            Some(r) => {
                if !codec.supports_rate(*r.get_ref()) {
                    return Err((
                        r.span(),
                        "sample_rate".into(),
                        format!("{} cannot carry {} Hz", codec_label(codec), r.get_ref()),
                    ));
                }
                *r.get_ref()
            }
            None if codec.supports_rate(stream.sample_rate) => stream.sample_rate,
            None if codec == Codec::Mp3 => 44_100,
            None => 48_000,
        };
        let mono = match &self.downmix {
            None => false,
            Some(d) if d.get_ref() == "mono" => true,
            Some(d) => {
                return Err((
                    d.span(),
                    "downmix".into(),
                    format!("{:?} is not \"mono\"", d.get_ref()),
                ));
            }
        };
        let carried = self.channel_map(stream.channels).len();
        let channels = if mono {
            1
        } else {
            u16::try_from(carried).unwrap_or(u16::MAX)
        };
        Ok(NetPlan {
            codec,
            bitrate,
            sample_rate,
            channels,
            mono,
        })
    }

    /// `tls_ca_file` and `tls_insecure` only with a TLS URL, and not both.
    fn check_tls_fields(&self, tls: bool, scheme: &str) -> Result<(), FieldError> {
        let ca = self.tls_ca_file.as_ref().map(Spanned::span);
        let insecure = self.tls_insecure.as_ref().map(Spanned::span);
        if let Some((span, field)) = ca
            .clone()
            .map(|s| (s, "tls_ca_file"))
            .or(insecure.clone().map(|s| (s, "tls_insecure")))
            && !tls
        {
            return Err((
                span,
                field.into(),
                format!("only for a TLS destination (a {scheme} url)"),
            ));
        }
        if let (Some(span), Some(flag)) = (insecure, &self.tls_insecure)
            && *flag.get_ref()
            && ca.is_some()
        {
            return Err((
                span,
                "tls_insecure".into(),
                "give tls_ca_file or tls_insecure, not both".into(),
            ));
        }
        Ok(())
    }

    fn tls_trust(&self) -> estuary_io::tls::TlsTrust {
        estuary_io::tls::TlsTrust {
            ca_file: self.tls_ca_file.as_ref().map(|p| p.get_ref().clone()),
            insecure: self.tls_insecure.as_ref().is_some_and(|f| *f.get_ref()),
        }
    }

    /// The codec of an Icecast or HTTP output (MP3 unless `codec` says otherwise).
    pub fn net_codec(&self) -> Result<Codec, FieldError> {
        if self.kind == OutputKind::Rtmp {
            return Ok(Codec::FlvAac);
        }
        Ok(match self.codec.unwrap_or(CodecConfig::Mp3) {
            CodecConfig::Mp3 => Codec::Mp3,
            CodecConfig::Aac => Codec::Aac,
            CodecConfig::Opus => Codec::Opus,
            CodecConfig::Flac => Codec::Flac,
            CodecConfig::Pcm => {
                return Err((
                    self.name.span(),
                    "codec".into(),
                    "must be mp3, aac, opus or flac".into(),
                ));
            }
        })
    }

    /// The RTMP destination (after [`OutputConfig::check_kind_fields`] passed).
    pub fn rtmp_config(&self) -> Result<estuary_io::rtmp::RtmpConfig, String> {
        let mut config =
            estuary_io::rtmp::RtmpConfig::parse(self.url.as_ref().map_or("", |u| u.get_ref()))?;
        config.trust = self.tls_trust();
        Ok(config)
    }

    /// The Icecast source settings (after [`OutputConfig::check_kind_fields`] passed).
    pub fn icecast_config(&self) -> Result<IcecastConfig, String> {
        let codec = self.net_codec().map_err(|(_, _, m)| m)?;
        let url = parse_icecast_url(self.url.as_ref().map_or("", |u| u.get_ref()))?;
        Ok(IcecastConfig {
            host: url.host,
            port: url.port,
            mount: url.mount,
            tls: url.tls,
            trust: self.tls_trust(),
            user: self.user.clone().unwrap_or_else(|| "source".into()),
            password: self
                .password
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default(),
            content_type: codec.content_type(),
            name: self.stream_name.clone(),
            description: self.description.clone(),
            genre: self.genre.clone(),
            url: self.homepage.clone(),
            public: self.public.unwrap_or(false),
            bitrate_kbps: *self.bitrate.get_ref() / 1000,
            admin_metadata: !codec.is_ogg(),
        })
    }

    /// HTTP listen-in: listeners at once.
    pub fn max_listeners(&self) -> u32 {
        self.max_listeners
            .as_ref()
            .map_or(DEFAULT_MAX_LISTENERS, |m| *m.get_ref())
    }
}

fn codec_label(codec: Codec) -> &'static str {
    match codec {
        Codec::Mp3 => "MP3",
        Codec::Aac | Codec::FlvAac => "AAC",
        Codec::Opus => "Opus",
        Codec::Flac => "FLAC",
    }
}

/// `http://host[:port]/mount` or `https://...`; the port defaults to 8000 (http) or 443.
pub fn parse_icecast_url(text: &str) -> Result<IcecastUrl, String> {
    let bad = || format!("{text:?} is not http://host:port/mount or https://host:port/mount");
    let (tls, rest) = if let Some(r) = text.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = text.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(bad());
    };
    let (authority, mount) = rest.split_at(rest.find('/').ok_or_else(bad)?);
    if mount.len() < 2
        || mount
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '?')
    {
        return Err(format!("{text:?}: the mount must be a path like /live.mp3"));
    }
    if authority.contains('@') {
        return Err(format!(
            "{text:?}: give the credentials as `user` and `password`, not in the URL"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (authority, if tls { 443 } else { 8000 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(IcecastUrl {
        tls,
        host: host.to_owned(),
        port,
        mount: mount.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icecast_urls() {
        let u = parse_icecast_url("http://127.0.0.1:8000/live.mp3").expect("url");
        assert_eq!(
            u,
            IcecastUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8000,
                mount: "/live.mp3".into()
            }
        );
        let u = parse_icecast_url("https://radio.example/live").expect("url");
        assert_eq!((u.tls, u.port), (true, 443));
        assert!(parse_icecast_url("rtmp://x/y").is_err());
        assert!(parse_icecast_url("http://host:8000").is_err());
        assert!(parse_icecast_url("http://u:p@host:8000/m").is_err());
    }

    fn load(text: &str) -> Result<super::super::Config, super::super::ConfigError> {
        super::super::parse(text, std::path::Path::new("."))
    }

    const INPUT: &str = "[[inputs]]\nname = \"tone\"\nkind = \"generator\"\nsignal = \"tone\"\n";

    #[test]
    fn an_icecast_output_needs_a_url_and_a_password_and_names_the_line() {
        let text = format!(
            "{INPUT}[[outputs]]\nname = \"ice\"\nkind = \"icecast\"\ninput = \"tone\"\nurl = \"ftp://x/y\"\npassword = \"p\"\n"
        );
        let e = load(&text).expect_err("bad url");
        assert_eq!(e.field, "outputs[0].url");
        assert_eq!(e.line, Some(9));
        let text = format!(
            "{INPUT}[[outputs]]\nname = \"ice\"\nkind = \"icecast\"\ninput = \"tone\"\nurl = \"http://h/m\"\ncodec = \"mp3\"\nbitrate = 1000\npassword = \"p\"\n"
        );
        let e = load(&text).expect_err("bitrate");
        assert_eq!(e.field, "outputs[0].bitrate");
        let text = format!(
            "{INPUT}[[outputs]]\nname = \"ice\"\nkind = \"icecast\"\ninput = \"tone\"\nurl = \"http://h/m\"\nmode = \"caller\"\npassword = \"p\"\n"
        );
        assert_eq!(load(&text).expect_err("mode").field, "outputs[0].mode");
    }

    #[test]
    fn tls_trust_settings_need_a_tls_url() {
        let rtmp = |url: &str, extra: &str| {
            format!(
                "{INPUT}[[outputs]]\nname = \"r\"\nkind = \"rtmp\"\ninput = \"tone\"\nurl = \"{url}\"\n{extra}"
            )
        };
        let e = load(&rtmp("rtmp://h/live/k", "tls_insecure = true\n")).expect_err("plain");
        assert_eq!(
            (e.field.as_str(), e.line),
            ("outputs[0].tls_insecure", Some(10))
        );
        let both = "tls_ca_file = \"/x.pem\"\ntls_insecure = true\n";
        let e = load(&rtmp("rtmps://h/live/k", both)).expect_err("both");
        assert_eq!(e.field, "outputs[0].tls_insecure");
        load(&rtmp("rtmps://h/live/k", "tls_ca_file = \"/x.pem\"\n")).expect("valid");
    }

    #[test]
    fn an_http_output_needs_an_address_and_a_path() {
        let text = format!(
            "{INPUT}[[outputs]]\nname = \"web\"\nkind = \"http\"\ninput = \"tone\"\naddress = \"127.0.0.1:8001\"\n"
        );
        assert_eq!(load(&text).expect_err("path").field, "outputs[0].path");
        let text = format!(
            "{INPUT}[[outputs]]\nname = \"web\"\nkind = \"http\"\ninput = \"tone\"\naddress = \"127.0.0.1:8001\"\npath = \"/a.mp3\"\ndownmix = \"mono\"\ncodec = \"aac\"\n"
        );
        load(&text).expect("valid");
    }
}
