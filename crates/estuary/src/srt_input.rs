//! The configuration of SRT inputs (`[[inputs]] kind = "srt"`): checks and the settings the
//! pipeline needs (see `pipeline/srt_in.rs` for the running side).

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use estuary_io::srt::{SrtConfig, SrtMode};
use estuary_wire::payload::SampleFormat;

use crate::config::{FieldError, InputConfig, InputKind, ResolvedStream, SrtModeConfig};

/// SRT receive latency when the config does not say (libsrt's live default).
pub const DEFAULT_SRT_LATENCY: Duration = Duration::from_millis(120);
/// Decoded audio held against bursts and drift when the config does not say: three AAC
/// frames, so a frame that arrives a little late never starves the output.
pub const DEFAULT_BUFFER: Duration = Duration::from_millis(60);

impl InputConfig {
    /// The stream an SRT input feeds its outputs: `channels` × `sample_rate` (default 2 ×
    /// 48 kHz) whatever the sender's codec carries; decoded audio is mapped and resampled to it.
    pub(crate) fn srt_stream(&self) -> Result<ResolvedStream, FieldError> {
        let name = self.name.span();
        let foreign = [
            ("sdp_file", self.sdp_file.is_some()),
            ("sdp", self.sdp.is_some()),
            ("source", self.source.is_some()),
            ("format", self.format.is_some()),
            ("interface", self.interface.is_some()),
            ("payload_type", self.payload_type.is_some()),
            ("redundant", self.redundant.is_some()),
            ("failover", self.failover.is_some()),
        ];
        if let Some((field, _)) = foreign.iter().find(|(_, set)| *set) {
            return Err((
                name,
                (*field).into(),
                format!("`{field}` does not apply to an SRT input (kind = \"srt\")"),
            ));
        }
        self.signal()?;
        let Some(address) = &self.address else {
            return Err((
                name,
                "address".into(),
                "missing: the listener to call, or the local address to listen on".into(),
            ));
        };
        let Some(mode) = &self.mode else {
            return Err((name, "mode".into(), "missing (caller or listener)".into()));
        };
        crate::config::check_srt_encryption(&self.passphrase, &self.key_length)?;
        if let Some(id) = &self.stream_id {
            if *mode.get_ref() == SrtModeConfig::Listener {
                return Err((
                    id.span(),
                    "stream_id".into(),
                    "is sent by a caller; a listener cannot set it".into(),
                ));
            }
            if id.get_ref().len() > estuary_io::srt::MAX_STREAM_ID_LEN {
                return Err((
                    id.span(),
                    "stream_id".into(),
                    format!(
                        "must be at most {} bytes",
                        estuary_io::srt::MAX_STREAM_ID_LEN
                    ),
                ));
            }
        }
        if let Some(latency) = self.srt_latency
            && latency > Duration::from_secs(10)
        {
            return Err((name, "srt_latency".into(), "must be at most 10s".into()));
        }
        let buffer = self.srt_buffer();
        if buffer < Duration::from_millis(5) || buffer > Duration::from_secs(2) {
            return Err((name, "buffer".into(), "must be between 5ms and 2s".into()));
        }
        let mut stream = self.format_fields(*address.get_ref())?;
        // Decoded audio is carried as 32-bit words; 302M's 24 bits pass unchanged.
        stream.format = SampleFormat::L32;
        stream.label = Some(format!("srt {}", mode_name(*mode.get_ref())));
        Ok(stream)
    }

    /// Refuses SRT-only settings on other kinds of input.
    pub(crate) fn refuse_srt_fields(&self) -> Result<(), FieldError> {
        let spans = [
            ("mode", self.mode.as_ref().map(Spanned::span)),
            ("passphrase", self.passphrase.as_ref().map(Spanned::span)),
            ("key_length", self.key_length.as_ref().map(Spanned::span)),
            ("stream_id", self.stream_id.as_ref().map(Spanned::span)),
            ("srt_latency", self.srt_latency.map(|_| self.name.span())),
            ("buffer", self.buffer.map(|_| self.name.span())),
        ];
        match spans.into_iter().find(|(_, s)| s.is_some()) {
            Some((field, Some(span))) if self.kind != InputKind::Srt => Err((
                span,
                field.into(),
                format!(
                    "`{field}` is an SRT input setting; this input is kind = \"{}\"",
                    self.kind.name()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The decoded-audio buffer of an SRT input.
    pub(crate) fn srt_buffer(&self) -> Duration {
        self.buffer.unwrap_or(DEFAULT_BUFFER)
    }

    /// The libsrt connection settings of an SRT input (call after [`Self::srt_stream`]).
    pub(crate) fn srt_link(&self, address: SocketAddr) -> SrtConfig {
        let mode = match self.mode.as_ref().map(|m| *m.get_ref()) {
            Some(SrtModeConfig::Caller) => SrtMode::Caller { remote: address },
            _ => SrtMode::Listener { bind: address },
        };
        SrtConfig {
            mode,
            passphrase: self.passphrase.as_ref().map(|p| p.get_ref().clone()),
            key_length: self.key_length.as_ref().map(|k| *k.get_ref()),
            latency: self.srt_latency.unwrap_or(DEFAULT_SRT_LATENCY),
            stream_id: self.stream_id.as_ref().map(|s| s.get_ref().clone()),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

fn mode_name(mode: SrtModeConfig) -> &'static str {
    match mode {
        SrtModeConfig::Caller => "caller",
        SrtModeConfig::Listener => "listener",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{InputPlan, parse};

    fn input(extra: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        parse(
            &format!(
                "[[inputs]]\nname = \"remote\"\nkind = \"srt\"\naddress = \"127.0.0.1:9000\"\n{extra}\n"
            ),
            Path::new("."),
        )
    }

    #[test]
    fn srt_input_resolves_to_its_channels_and_rate() {
        let config =
            input("mode = \"listener\"\nchannels = 2\nsrt_latency = \"200ms\"").expect("valid");
        let InputPlan::Fixed(stream) = config.inputs[0].plan().expect("plan") else {
            panic!("fixed");
        };
        assert_eq!((stream.channels, stream.sample_rate), (2, 48_000));
        let link = config.inputs[0].srt_link(stream.destination);
        assert_eq!(link.latency, std::time::Duration::from_millis(200));
    }

    #[test]
    fn srt_input_errors_name_the_field_and_line() {
        let e = input("").expect_err("mode missing");
        assert_eq!(e.field, "inputs[0].mode");
        let e = input("mode = \"caller\"\npassphrase = \"short\"").expect_err("short");
        assert_eq!(
            (e.field.as_str(), e.line),
            ("inputs[0].passphrase", Some(6))
        );
        let e = input("mode = \"listener\"\nstream_id = \"x\"").expect_err("listener id");
        assert_eq!(e.field, "inputs[0].stream_id");
        let e = input("mode = \"caller\"\nsdp = \"v=0\"").expect_err("sdp");
        assert_eq!(e.field, "inputs[0].sdp");
        let e = parse(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\nmode = \"caller\"\n",
            Path::new("."),
        )
        .expect_err("srt field on aes67");
        assert_eq!((e.field.as_str(), e.line), ("inputs[0].mode", Some(5)));
    }
}
