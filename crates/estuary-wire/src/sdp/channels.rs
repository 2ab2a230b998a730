//! Channel grouping: the ST 2110-30 `channel-order` format parameter (ST 2110-30 §6.2.2),
//! its AES3 use by ST 2110-31, and the channel names Dante writes into `i=`.

use std::fmt;

/// One symbol of `channel-order=SMPTE2110.(...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelGroup {
    /// `M`: mono.
    Mono,
    /// `DM`: dual mono.
    DualMono,
    /// `ST`: standard stereo (L, R).
    Stereo,
    /// `LtRt`: matrix stereo.
    LtRt,
    /// `51`: 5.1 surround.
    Surround51,
    /// `71`: 7.1 surround.
    Surround71,
    /// `222`: 22.2 surround (ST 2036-2 order).
    Surround222,
    /// `SGRP`: one SDI audio group of four channels.
    SdiGroup,
    /// `U01`..`U64`: that many channels of undefined use.
    Undefined(u8),
    /// `AES3`: one AES3 pair of subframes carried as AM824 (ST 2110-31).
    Aes3,
}

const LABELS_51: [&str; 6] = ["L", "R", "C", "LFE", "Ls", "Rs"];
const LABELS_71: [&str; 8] = ["L", "R", "C", "LFE", "Lss", "Rss", "Lrs", "Rrs"];
const LABELS_222: [&str; 24] = [
    "FL", "FR", "FC", "LFE1", "BL", "BR", "FLc", "FRc", "BC", "LFE2", "SiL", "SiR", "TpFL", "TpFR",
    "TpFC", "TpC", "TpBL", "TpBR", "TpSiL", "TpSiR", "TpBC", "BtFC", "BtFL", "BtFR",
];

impl ChannelGroup {
    /// Reads one symbol; `None` for anything ST 2110-30 Table 1 (or ST 2110-31) does not name.
    pub fn from_symbol(s: &str) -> Option<Self> {
        let fixed = [
            ("M", Self::Mono),
            ("DM", Self::DualMono),
            ("ST", Self::Stereo),
            ("LtRt", Self::LtRt),
            ("51", Self::Surround51),
            ("71", Self::Surround71),
            ("222", Self::Surround222),
            ("SGRP", Self::SdiGroup),
            ("AES3", Self::Aes3),
        ];
        if let Some((_, g)) = fixed.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Some(*g);
        }
        let digits = s.strip_prefix(['U', 'u'])?;
        // Exactly two digits: "U1" and "U001" are not symbols.
        if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = digits.parse::<u8>().ok()?;
        (1..=64).contains(&n).then_some(Self::Undefined(n))
    }

    /// The symbol as ST 2110-30 writes it.
    pub fn symbol(self) -> String {
        match self {
            Self::Mono => "M".into(),
            Self::DualMono => "DM".into(),
            Self::Stereo => "ST".into(),
            Self::LtRt => "LtRt".into(),
            Self::Surround51 => "51".into(),
            Self::Surround71 => "71".into(),
            Self::Surround222 => "222".into(),
            Self::SdiGroup => "SGRP".into(),
            Self::Undefined(n) => format!("U{n:02}"),
            Self::Aes3 => "AES3".into(),
        }
    }

    /// Channels the group occupies.
    pub fn channel_count(self) -> u32 {
        match self {
            Self::Mono => 1,
            Self::DualMono | Self::Stereo | Self::LtRt | Self::Aes3 => 2,
            Self::SdiGroup => 4,
            Self::Surround51 => 6,
            Self::Surround71 => 8,
            Self::Surround222 => 24,
            Self::Undefined(n) => u32::from(n),
        }
    }

    /// One label per channel, in stream order.
    pub fn labels(self) -> Vec<String> {
        let fixed = |l: &[&str]| l.iter().map(|s| (*s).to_string()).collect();
        let numbered = |prefix: &str, n: u32| (1..=n).map(|i| format!("{prefix} ch{i}")).collect();
        match self {
            Self::Mono => fixed(&["M"]),
            Self::DualMono => fixed(&["M1", "M2"]),
            Self::Stereo => fixed(&["L", "R"]),
            Self::LtRt => fixed(&["Lt", "Rt"]),
            Self::Surround51 => fixed(&LABELS_51),
            Self::Surround71 => fixed(&LABELS_71),
            Self::Surround222 => fixed(&LABELS_222),
            Self::SdiGroup => numbered("SGRP", 4),
            Self::Aes3 => fixed(&["AES3 A", "AES3 B"]),
            Self::Undefined(n) => numbered(&format!("U{n:02}"), u32::from(n)),
        }
    }
}

/// `channel-order=SMPTE2110.(<symbol>,...)` (ST 2110-30 §6.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOrder {
    /// The groups, in channel order.
    pub symbols: Vec<ChannelGroup>,
}

/// Why a `channel-order` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOrderError;

impl ChannelOrder {
    /// Reads the value after `channel-order=`. Only the `SMPTE2110` convention is typed; other
    /// conventions (e.g. the older `SVIP`) are refused so the caller can warn.
    pub fn parse(value: &str) -> Result<Self, ChannelOrderError> {
        let value = value.trim();
        let convention = value.get(..9).ok_or(ChannelOrderError)?;
        if !convention.eq_ignore_ascii_case("SMPTE2110") {
            return Err(ChannelOrderError);
        }
        let list = value
            .get(9..)
            .and_then(|r| r.strip_prefix(".("))
            .and_then(|r| r.strip_suffix(')'))
            .ok_or(ChannelOrderError)?;
        let symbols = list
            .split(',')
            .map(|s| ChannelGroup::from_symbol(s.trim()).ok_or(ChannelOrderError))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { symbols })
    }

    /// Total channels the order describes (ST 2110-30 wants it equal to the rtpmap count).
    pub fn channel_count(&self) -> u32 {
        self.symbols
            .iter()
            .fold(0u32, |n, g| n.saturating_add(g.channel_count()))
    }

    /// One label per channel, e.g. `["L", "R", "C", "LFE", "Ls", "Rs", "L", "R"]` for
    /// `(51,ST)`.
    pub fn labels(&self) -> Vec<String> {
        self.symbols.iter().flat_map(|g| g.labels()).collect()
    }

    /// True when the order accounts for exactly `channels` channels.
    pub fn matches(&self, channels: u16) -> bool {
        self.channel_count() == u32::from(channels)
    }
}

impl fmt::Display for ChannelOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SMPTE2110.(")?;
        for (i, g) in self.symbols.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&g.symbol())?;
        }
        f.write_str(")")
    }
}

/// Channel names from Dante's `i=` line, `"<n> channels: <name>, <name>, ..."`. `None` when the
/// text is not in that form or the count disagrees with the list, because then the names
/// cannot be matched to channels.
pub fn dante_labels(info: &str) -> Option<Vec<String>> {
    let (count, names) = info.trim().split_once(':')?;
    let count = count
        .trim()
        .strip_suffix("channels")
        .or_else(|| count.trim().strip_suffix("channel"))?
        .trim()
        .parse::<usize>()
        .ok()?;
    let labels: Vec<String> = names.split(',').map(|n| n.trim().to_string()).collect();
    (labels.len() == count && labels.iter().all(|l| !l.is_empty())).then_some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_and_count() {
        let cases: &[(&str, ChannelGroup, u32)] = &[
            ("M", ChannelGroup::Mono, 1),
            ("DM", ChannelGroup::DualMono, 2),
            ("ST", ChannelGroup::Stereo, 2),
            ("LtRt", ChannelGroup::LtRt, 2),
            ("51", ChannelGroup::Surround51, 6),
            ("71", ChannelGroup::Surround71, 8),
            ("222", ChannelGroup::Surround222, 24),
            ("SGRP", ChannelGroup::SdiGroup, 4),
            ("U01", ChannelGroup::Undefined(1), 1),
            ("U64", ChannelGroup::Undefined(64), 64),
            ("AES3", ChannelGroup::Aes3, 2),
        ];
        for (sym, group, n) in cases {
            assert_eq!(ChannelGroup::from_symbol(sym), Some(*group), "{sym}");
            assert_eq!(group.channel_count(), *n, "{sym}");
            assert_eq!(group.labels().len(), *n as usize, "{sym}");
            assert_eq!(&group.symbol(), sym);
        }
        for bad in ["U00", "U65", "U1", "U001", "X", "", "5.1"] {
            assert_eq!(ChannelGroup::from_symbol(bad), None, "{bad}");
        }
    }

    #[test]
    fn order_labels_and_check() {
        let o = ChannelOrder::parse("SMPTE2110.(51,ST)").expect("valid");
        assert_eq!(o.channel_count(), 8);
        assert!(o.matches(8) && !o.matches(6));
        assert_eq!(o.labels(), ["L", "R", "C", "LFE", "Ls", "Rs", "L", "R"]);
        assert_eq!(o.to_string(), "SMPTE2110.(51,ST)");
        let u = ChannelOrder::parse("SMPTE2110.(M,U03)").expect("valid");
        assert_eq!(u.labels(), ["M", "U03 ch1", "U03 ch2", "U03 ch3"]);
        assert_eq!(ChannelOrder::parse("SVIP.(ST)"), Err(ChannelOrderError));
        assert_eq!(ChannelOrder::parse("SMPTE2110.()"), Err(ChannelOrderError));
        assert_eq!(ChannelOrder::parse("SMPTE2110.(ST"), Err(ChannelOrderError));
    }

    #[test]
    fn dante_info_labels() {
        assert_eq!(
            dante_labels("2 channels: Left, Right"),
            Some(vec!["Left".to_string(), "Right".to_string()])
        );
        assert_eq!(dante_labels("1 channels: 02"), Some(vec!["02".to_string()]));
        assert_eq!(dante_labels("8 channels: 1,2,3"), None);
        assert_eq!(dante_labels("Channels 1-8"), None);
    }
}
