//! The `[[recorders]]` section: which input to record, where, how files are cut and kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::Config;

/// (span, field, message), like the rest of the config's checks.
type FieldError = (std::ops::Range<usize>, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// RIFF/BWF; a file is rotated before its data would pass 4 GiB.
    Wav,
    /// BWF that becomes RF64 (EBU Tech 3306) in place when it passes 4 GiB.
    Rf64,
    /// FLAC (16 or 24-bit, up to 8 channels per file), metadata in Vorbis comments.
    Flac,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav | Self::Rf64 => "wav",
            Self::Flac => "flac",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One file holding every recorded channel.
    Interleaved,
    /// One mono file per channel.
    Mono,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Never call fsync; the kernel writes back on its own (about 30 s).
    Never,
    /// fsync after each header rewrite: a power cut loses at most `header_interval`.
    #[default]
    Header,
    /// fsync only when a file is closed.
    Close,
}

/// One recorder: an input's audio into files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderConfig {
    pub name: Spanned<String>,
    /// Name of the input to record.
    pub input: Spanned<String>,
    pub directory: Spanned<PathBuf>,
    #[serde(default = "default_format")]
    pub format: FileFormat,
    /// 16, 24 or 32.
    #[serde(default = "default_bits")]
    pub bits: Spanned<u8>,
    /// `interleaved` (default) or `mono`; ignored when `groups` is set.
    #[serde(default = "default_layout")]
    pub layout: Layout,
    /// Named groups of 1-based channels, one file each, e.g. `{ mics = "1-8", stereo = "9-10" }`.
    /// Channels in no group are not recorded.
    pub groups: Option<Spanned<BTreeMap<String, String>>>,
    /// Track names for iXML and the `{track}` of mono files, in channel order.
    pub channel_names: Option<Spanned<Vec<String>>>,
    /// File name (may contain `/`), relative to `directory`, without extension. Fields:
    /// `{recorder}`, `{input}`, `{track}` (group or channel name, `all` when interleaved),
    /// `{date}` (YYYY-MM-DD), `{time}` (HHMMSS), `{year}`, `{month}`, `{day}`, `{hour}`,
    /// `{minute}`, `{second}` (UTC).
    #[serde(default = "default_template")]
    pub template: Spanned<String>,
    /// Start a new file when the wall clock crosses a multiple of this (`1h`: on the hour).
    #[serde(default, with = "humantime_serde")]
    pub rotate_every: Option<Duration>,
    /// Start a new file before one's audio passes this many bytes.
    pub rotate_bytes: Option<Spanned<u64>>,
    /// Delete this recorder's files older than this.
    #[serde(default, with = "humantime_serde")]
    pub keep_for: Option<Duration>,
    /// Delete this recorder's oldest files while all of them take more than this many bytes.
    pub keep_bytes: Option<u64>,
    /// How often the header of each open file is rewritten with the current size.
    #[serde(default = "default_header_interval", with = "humantime_serde")]
    pub header_interval: Duration,
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Start each take on a media-clock position that is a multiple of this (`1s`: a whole
    /// second of the stream's clock, which for AES67 is PTP time). Recorders of different
    /// streams on the same clock then start on the same sample.
    #[serde(default, with = "humantime_serde")]
    pub align: Option<Duration>,
    /// Level-triggered recording: files only while some channel is loud.
    pub vox: Option<VoxConfig>,
}

/// VOX: a take starts when any recorded channel's sample peak reaches `threshold`, with the
/// `pre_roll` before it, and ends `hang` after the last loud sample.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoxConfig {
    /// dBFS, -120..0.
    pub threshold: Spanned<f64>,
    #[serde(default = "default_hang", with = "humantime_serde")]
    pub hang: Duration,
    #[serde(default = "default_pre_roll", with = "humantime_serde")]
    pub pre_roll: Duration,
}

fn default_hang() -> Duration {
    Duration::from_secs(5)
}
fn default_pre_roll() -> Duration {
    Duration::from_secs(1)
}

fn default_format() -> FileFormat {
    FileFormat::Wav
}
fn default_bits() -> Spanned<u8> {
    Spanned::new(0..0, 24)
}
fn default_layout() -> Layout {
    Layout::Interleaved
}
fn default_template() -> Spanned<String> {
    Spanned::new(0..0, "{recorder}-{date}-{time}-{track}".into())
}
fn default_header_interval() -> Duration {
    Duration::from_secs(1)
}

/// One file of a recorder: its name and the 0-based input channels it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub name: String,
    pub channels: Vec<usize>,
    /// Names of each channel, for iXML.
    pub channel_names: Vec<String>,
}

impl RecorderConfig {
    fn channel_name(&self, c: usize) -> String {
        self.channel_names
            .as_ref()
            .and_then(|n| n.get_ref().get(c).cloned())
            .unwrap_or_else(|| format!("ch{}", c + 1))
    }

    /// The files this recorder writes for an input of `input_channels`.
    pub fn tracks(&self, input_channels: u16) -> Result<Vec<Track>, FieldError> {
        let n = usize::from(input_channels);
        let track = |name: String, channels: Vec<usize>| Track {
            channel_names: channels.iter().map(|&c| self.channel_name(c)).collect(),
            name,
            channels,
        };
        if let Some(groups) = &self.groups {
            let mut tracks = Vec::new();
            for (name, range) in groups.get_ref() {
                let channels = parse_channels(range, n)
                    .map_err(|m| (groups.span(), "groups".to_owned(), format!("{name}: {m}")))?;
                tracks.push(track(name.clone(), channels));
            }
            if tracks.is_empty() {
                return Err((groups.span(), "groups".into(), "no group".into()));
            }
            return Ok(tracks);
        }
        Ok(match self.layout {
            Layout::Interleaved => vec![track("all".into(), (0..n).collect())],
            Layout::Mono => (0..n)
                .map(|c| track(self.channel_name(c), vec![c]))
                .collect(),
        })
    }
}

impl RecorderConfig {
    /// A FLAC file holds at most 8 channels: an interleaved recording of more needs groups
    /// or mono files.
    pub fn check_flac_tracks(&self, tracks: &[Track]) -> Result<(), FieldError> {
        if self.format != FileFormat::Flac {
            return Ok(());
        }
        match tracks.iter().find(|t| t.channels.len() > 8) {
            Some(t) => Err((
                self.groups.as_ref().map_or(self.name.span(), |g| g.span()),
                if self.groups.is_some() {
                    "groups"
                } else {
                    "layout"
                }
                .into(),
                format!(
                    "{}: {} channels, but a FLAC file holds at most 8; use groups or layout = \"mono\"",
                    t.name,
                    t.channels.len()
                ),
            )),
            None => Ok(()),
        }
    }
}

/// `"1-8"`, `"9,10"`, `"1-2,5"` → 0-based channels.
pub fn parse_channels(spec: &str, count: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("{part:?} is not a channel or range like 1-8"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if a == 0 || b < a || b > count {
            return Err(format!(
                "{part:?} is outside channels 1-{count} of the input"
            ));
        }
        out.extend(a - 1..b);
    }
    Ok(out)
}

/// Checks every recorder against the config; the field is named `recorders[i].…`.
pub fn validate(config: &Config) -> Result<(), FieldError> {
    let mut names = std::collections::HashSet::new();
    for (i, r) in config.recorders.iter().enumerate() {
        let field = |f: &str| format!("recorders[{i}].{f}");
        let name = r.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err((
                r.name.span(),
                field("name"),
                "use letters, digits, - _ .".into(),
            ));
        }
        if !names.insert(name.clone()) {
            return Err((
                r.name.span(),
                field("name"),
                format!("duplicate name {name:?}"),
            ));
        }
        let Some(input) = config
            .inputs
            .iter()
            .find(|inp| inp.name.get_ref() == r.input.get_ref())
        else {
            return Err((
                r.input.span(),
                field("input"),
                format!("no input named {:?}", r.input.get_ref()),
            ));
        };
        if !matches!(r.bits.get_ref(), 16 | 24 | 32) {
            return Err((r.bits.span(), field("bits"), "must be 16, 24 or 32".into()));
        }
        if r.format == FileFormat::Flac && !matches!(r.bits.get_ref(), 16 | 24) {
            return Err((
                r.bits.span(),
                field("bits"),
                "must be 16 or 24 with format = \"flac\"".into(),
            ));
        }
        if let Some(b) = &r.rotate_bytes
            && *b.get_ref() < 1 << 20
        {
            return Err((
                b.span(),
                field("rotate_bytes"),
                "must be at least 1048576".into(),
            ));
        }
        if r.rotate_every.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err((
                r.name.span(),
                field("rotate_every"),
                "must be at least 1s".into(),
            ));
        }
        if r.header_interval < Duration::from_millis(100)
            || r.header_interval > Duration::from_secs(60)
        {
            return Err((
                r.name.span(),
                field("header_interval"),
                "must be between 100ms and 60s".into(),
            ));
        }
        if r.align
            .is_some_and(|a| a < Duration::from_millis(1) || a > Duration::from_secs(3600))
        {
            return Err((
                r.name.span(),
                field("align"),
                "must be between 1ms and 1h".into(),
            ));
        }
        if let Some(vox) = &r.vox {
            let t = *vox.threshold.get_ref();
            if !(-120.0..=0.0).contains(&t) {
                return Err((
                    vox.threshold.span(),
                    field("vox.threshold"),
                    "must be between -120 and 0 dBFS".into(),
                ));
            }
            if vox.pre_roll > Duration::from_secs(60) || vox.hang > Duration::from_secs(3600) {
                return Err((
                    vox.threshold.span(),
                    field("vox"),
                    "pre_roll must be at most 60s and hang at most 1h".into(),
                ));
            }
        }
        let template = r.template.get_ref();
        if let Err(m) = check_template(template) {
            return Err((r.template.span(), field("template"), m));
        }
        let dir = r.directory.get_ref();
        if dir.exists() && !dir.is_dir() {
            return Err((
                r.directory.span(),
                field("directory"),
                format!("{} is not a directory", dir.display()),
            ));
        }
        if let Ok(crate::config::InputPlan::Fixed(stream)) = input.plan() {
            let tracks = r
                .tracks(stream.channels)
                .map_err(|(s, f, m)| (s, field(&f), m))?;
            r.check_flac_tracks(&tracks)
                .map_err(|(s, f, m)| (s, field(&f), m))?;
        }
    }
    Ok(())
}

const FIELDS: [&str; 12] = [
    "recorder", "input", "track", "date", "time", "year", "month", "day", "hour", "minute",
    "second", "seq",
];

fn check_template(t: &str) -> Result<(), String> {
    if t.is_empty() || t.starts_with('/') || t.split('/').any(|p| p == "..") {
        return Err("must be a relative name without ..".into());
    }
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("unclosed {")? + open;
        let field = &rest[open + 1..close];
        if !FIELDS.contains(&field) {
            return Err(format!(
                "unknown field {{{field}}}; known: {}",
                FIELDS.join(", ")
            ));
        }
        rest = &rest[close + 1..];
    }
    Ok(())
}

/// The directory must exist (or be creatable) and take files: say so at start, not when the
/// first packet arrives.
pub fn check_directory(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".estuary-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ranges() {
        assert_eq!(parse_channels("1-3,5", 8), Ok(vec![0, 1, 2, 4]));
        assert_eq!(parse_channels("9-10", 10), Ok(vec![8, 9]));
        assert!(parse_channels("0-2", 8).is_err());
        assert!(parse_channels("7-9", 8).is_err());
        assert!(parse_channels("x", 8).is_err());
    }

    #[test]
    fn templates() {
        assert!(check_template("{input}/{date}/{time}-{track}").is_ok());
        assert!(check_template("{nope}").is_err());
        assert!(check_template("../x").is_err());
        assert!(check_template("/abs").is_err());
        assert!(check_template("{date").is_err());
    }
}
