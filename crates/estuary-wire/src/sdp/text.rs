//! The tolerant pre-pass: normalises line endings and whitespace before tokenizing, and
//! remembers where every kept line came from so errors name the original line.

use super::SdpWarning;

/// Normalised SDP text plus the original line number of each kept line.
#[derive(Debug, Clone, Default)]
pub struct Normalised {
    /// CRLF-free text: kept lines joined with "\n", ending in "\n".
    pub text: String,
    /// `line_map[i]` is the original 1-based line number of kept line `i`.
    pub line_map: Vec<usize>,
    /// Kept lines grouped by section: 0 = session, k = k-th `m=` section.
    pub sections: Sections,
    /// Fixes applied.
    pub warnings: Vec<SdpWarning>,
}

/// Kept lines, grouped by section, as (original line number, text).
#[derive(Debug, Clone, Default)]
pub struct Sections(Vec<Vec<(usize, String)>>);

impl Sections {
    /// Original line number of the first line in `section` starting with `prefix`
    /// (falls back to the section's first line, then 1).
    pub fn line_of(&self, section: usize, prefix: &str) -> usize {
        let lines = self.0.get(section);
        lines
            .and_then(|l| l.iter().find(|(_, t)| t.starts_with(prefix)))
            .or_else(|| lines.and_then(|l| l.first()))
            .map_or(1, |(n, _)| *n)
    }

    /// Original line number of `a=<name>` in `section`.
    pub fn attr_line(&self, section: usize, name: &str) -> usize {
        let lines = self.0.get(section);
        lines
            .and_then(|l| {
                l.iter().find(|(_, t)| {
                    t.strip_prefix("a=")
                        .and_then(|a| a.get(..name.len()))
                        .is_some_and(|a| a.eq_ignore_ascii_case(name))
                })
            })
            .or_else(|| lines.and_then(|l| l.first()))
            .map_or(1, |(n, _)| *n)
    }

    /// True if the session section has a `<key>=` line.
    pub fn has_session_line(&self, key: char) -> bool {
        self.0.first().is_some_and(|l| {
            l.iter()
                .any(|(_, t)| t.starts_with(key) && t.get(1..2) == Some("="))
        })
    }
}

/// Applies the tolerant fixes; see the module documentation of [`crate::sdp`].
pub fn normalise(input: &str) -> Normalised {
    let mut out = Normalised::default();
    let mut sections: Vec<Vec<(usize, String)>> = vec![Vec::new()];
    let mut bare_lf = false;
    let mut has_t = false;
    let raw_lines: Vec<&str> = input.split('\n').collect();
    let last = raw_lines.len().saturating_sub(1);
    for (i, raw) in raw_lines.iter().enumerate() {
        let n = i + 1;
        // `split` yields one empty piece after a final "\n"; that is not a line.
        if i == last && raw.is_empty() {
            break;
        }
        if i == last {
            out.warnings.push(SdpWarning::MissingFinalNewline);
        }
        let line = match raw.strip_suffix('\r') {
            Some(l) => l,
            None => {
                if i != last {
                    bare_lf = true;
                }
                raw
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            out.warnings.push(SdpWarning::BlankLine { line: n });
            continue;
        }
        if line.trim_start().len() != line.len() {
            out.warnings.push(SdpWarning::LeadingWhitespace { line: n });
        }
        if line.trim_end().len() != line.len() {
            out.warnings
                .push(SdpWarning::TrailingWhitespace { line: n });
        }
        if trimmed == "s=" {
            out.warnings.push(SdpWarning::EmptySessionName { line: n });
        }
        if trimmed.starts_with("t=") {
            has_t = true;
        }
        if trimmed.starts_with("m=") {
            sections.push(Vec::new());
        }
        out.text.push_str(trimmed);
        out.text.push('\n');
        out.line_map.push(n);
        if let Some(s) = sections.last_mut() {
            s.push((n, trimmed.to_string()));
        }
    }
    if bare_lf {
        out.warnings.insert(0, SdpWarning::LfLineEndings);
    }
    if !has_t && !out.line_map.is_empty() {
        out.warnings.push(SdpWarning::MissingTimeLine);
    }
    out.sections = Sections(sections);
    out
}
