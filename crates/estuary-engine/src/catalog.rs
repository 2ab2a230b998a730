//! The catalog of announced streams: what SAP and RAVENNA discovery have seen, by name.
//!
//! Pure and driven by an injected clock, like the rest of the engine: the daemon feeds it
//! announcements, withdrawals and ticks, and reads entries and events back.
//!
//! Identity: RFC 8866 §5.2 makes the `o=` line's user name, session id and address a globally
//! unique session identifier, while its version changes with every modification. The catalog
//! keys entries on that identity (per discovery protocol), so a re-announcement with a new
//! version (and, with SAP, a new message-id hash) updates the entry instead of adding a second
//! one. SAP deletions name the packet key (origin + hash), so each entry also remembers the
//! protocol-level keys it was announced under.
//!
//! Liveness: an entry is *active* while announcements keep coming, *stale* once three announce
//! intervals passed without one (the interval is measured from the gaps between
//! announcements), and forgotten after the longer of ten intervals and an hour (RFC 2974 §3.1).
//! Protocols with their own liveness (mDNS) withdraw entries explicitly instead.

use std::time::Duration;

use estuary_wire::sdp::{self, SdpError, SessionDescription};

use crate::time::MonoTime;

/// How an entry was discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Session Announcement Protocol (RFC 2974): AES67, Dante in AES67 mode, FFmpeg, PipeWire.
    Sap,
    /// mDNS/DNS-SD browse + RTSP DESCRIBE (RAVENNA).
    Ravenna,
}

impl Protocol {
    /// The prefix used in config selectors (`sap:Studio A`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sap => "sap",
            Protocol::Ravenna => "ravenna",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `o=` identity of a session: stable across versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionIdentity {
    pub username: String,
    pub session_id: u64,
    pub address: String,
}

impl SessionIdentity {
    pub fn of(session: &SessionDescription) -> Self {
        Self {
            username: session.origin.username.clone(),
            session_id: session.origin.session_id,
            address: session.origin.address.clone(),
        }
    }
}

/// Whether announcements are still arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Active,
    /// No announcement for three intervals; the stream may still be flowing.
    Stale,
}

/// One announced session.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub protocol: Protocol,
    pub identity: SessionIdentity,
    /// The protocol-level keys it was announced under (SAP: "origin/hash"; RAVENNA: the
    /// mDNS instance name); withdrawals name one of these.
    pub keys: Vec<String>,
    /// Who announced it (SAP origin, RTSP host), for display.
    pub announcer: String,
    /// The SDP exactly as received.
    pub sdp: String,
    pub session: SessionDescription,
    pub first_seen: MonoTime,
    pub last_seen: MonoTime,
    pub announcements: u64,
    /// Times the SDP content changed after the first announcement.
    pub changes: u64,
    /// Measured time between announcements; `None` until two were seen.
    pub interval: Option<Duration>,
    pub liveness: Liveness,
    /// Whether the protocol times entries out (SAP) or withdraws them itself (mDNS).
    pub expires: bool,
}

impl CatalogEntry {
    /// The session name (`s=`), which selectors match.
    pub fn name(&self) -> &str {
        &self.session.name
    }

    /// The `o=` version, which senders bump on every change.
    pub fn version(&self) -> u64 {
        self.session.origin.session_version
    }
}

/// What changed in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    Added {
        protocol: Protocol,
        name: String,
    },
    /// The SDP changed (new version or content): inputs following it must reconfigure.
    Updated {
        protocol: Protocol,
        name: String,
    },
    Stale {
        protocol: Protocol,
        name: String,
    },
    /// A stale entry was announced again.
    Revived {
        protocol: Protocol,
        name: String,
    },
    Removed {
        protocol: Protocol,
        name: String,
        why: RemovalReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// The sender said so (SAP deletion, mDNS goodbye).
    Withdrawn,
    /// Silent for longer than the protocol allows.
    TimedOut,
}

/// Timing rules; the defaults follow RFC 2974 and common AES67 practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogConfig {
    /// Assumed interval until two announcements were seen (AES67 devices announce every 30 s).
    pub default_interval: Duration,
    /// Intervals without an announcement before an entry is stale.
    pub stale_after_intervals: u32,
    /// Intervals before a silent entry is forgotten, but never sooner than `forget_min`.
    pub forget_after_intervals: u32,
    pub forget_min: Duration,
    /// Entries kept at most; the oldest silent one makes room (bounds memory on a noisy LAN).
    pub max_entries: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            default_interval: Duration::from_secs(30),
            stale_after_intervals: 3,
            forget_after_intervals: 10,
            forget_min: Duration::from_secs(3600),
            max_entries: 4096,
        }
    }
}

/// Chooses a catalog entry from a config string such as `sap:Studio A Main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSelector {
    /// `None` matches any protocol (`name:Studio A Main`).
    pub protocol: Option<Protocol>,
    pub name: String,
}

impl StreamSelector {
    /// Parses `sap:NAME`, `ravenna:NAME` or `name:NAME`; `None` when the prefix is none of them.
    pub fn parse(text: &str) -> Option<Self> {
        let (prefix, name) = text.split_once(':')?;
        let protocol = match prefix.trim() {
            "sap" => Some(Protocol::Sap),
            "ravenna" => Some(Protocol::Ravenna),
            "name" => None,
            _ => return None,
        };
        let name = name.trim();
        (!name.is_empty()).then(|| Self {
            protocol,
            name: name.to_owned(),
        })
    }

    /// Names are compared as people type them: surrounding spaces and case do not matter.
    pub fn matches(&self, entry: &CatalogEntry) -> bool {
        self.protocol.is_none_or(|p| p == entry.protocol)
            && entry.name().trim().eq_ignore_ascii_case(&self.name)
    }
}

impl std::fmt::Display for StreamSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = self.protocol.map_or("name", Protocol::as_str);
        write!(f, "{prefix}:{}", self.name)
    }
}

/// The catalog itself.
#[derive(Debug, Default)]
pub struct Catalog {
    config: CatalogConfig,
    entries: Vec<CatalogEntry>,
    /// Announcements whose SDP did not parse; shown by the API so a broken sender is visible.
    rejected: u64,
    last_rejection: Option<String>,
}

impl Catalog {
    pub fn new(config: CatalogConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// Announcements refused because their SDP did not parse, and why the last one was.
    pub fn rejected(&self) -> (u64, Option<&str>) {
        (self.rejected, self.last_rejection.as_deref())
    }

    /// The best entry for a selector: active before stale, then the most recently seen.
    pub fn find(&self, selector: &StreamSelector) -> Option<&CatalogEntry> {
        self.entries
            .iter()
            .filter(|e| selector.matches(e))
            .max_by_key(|e| (e.liveness == Liveness::Active, e.last_seen))
    }

    /// Records an announcement of `sdp_text` under the protocol-level `key`.
    pub fn announce(
        &mut self,
        now: MonoTime,
        protocol: Protocol,
        key: &str,
        announcer: &str,
        sdp_text: &str,
    ) -> Result<Option<CatalogEvent>, SdpError> {
        let session = match sdp::parse(sdp_text) {
            Ok(session) => session,
            Err(e) => {
                self.rejected += 1;
                self.last_rejection = Some(format!("{protocol} {key} from {announcer}: {e}"));
                return Err(e);
            }
        };
        let identity = SessionIdentity::of(&session);
        let existing = self
            .entries
            .iter_mut()
            .find(|e| e.protocol == protocol && e.identity == identity);
        let Some(entry) = existing else {
            self.make_room();
            let name = session.name.clone();
            self.entries.push(CatalogEntry {
                protocol,
                identity,
                keys: vec![key.to_owned()],
                announcer: announcer.to_owned(),
                sdp: sdp_text.to_owned(),
                session,
                first_seen: now,
                last_seen: now,
                announcements: 1,
                changes: 0,
                interval: None,
                liveness: Liveness::Active,
                expires: protocol == Protocol::Sap,
            });
            return Ok(Some(CatalogEvent::Added { protocol, name }));
        };
        let gap = now.duration_since(entry.last_seen);
        entry.interval = Some(match entry.interval {
            // Smoothed, so one lost announcement does not halve the stale deadline.
            Some(previous) => (previous * 3 + gap) / 4,
            None => gap,
        });
        entry.last_seen = now;
        entry.announcements += 1;
        if !entry.keys.iter().any(|k| k == key) {
            entry.keys.push(key.to_owned());
        }
        entry.announcer = announcer.to_owned();
        let name = session.name.clone();
        let revived = entry.liveness == Liveness::Stale;
        entry.liveness = Liveness::Active;
        if entry.sdp != sdp_text {
            entry.sdp = sdp_text.to_owned();
            entry.session = session;
            entry.changes += 1;
            return Ok(Some(CatalogEvent::Updated { protocol, name }));
        }
        Ok(revived.then_some(CatalogEvent::Revived { protocol, name }))
    }

    /// Removes the entry announced under `key`, or (SAP deletions carry the `o=` line) the
    /// one whose identity matches `origin_line`.
    pub fn withdraw(
        &mut self,
        protocol: Protocol,
        key: &str,
        origin_line: Option<&SessionIdentity>,
    ) -> Option<CatalogEvent> {
        let index = self.entries.iter().position(|e| {
            e.protocol == protocol
                && (e.keys.iter().any(|k| k == key) || origin_line == Some(&e.identity))
        })?;
        let entry = self.entries.remove(index);
        Some(CatalogEvent::Removed {
            protocol,
            name: entry.session.name,
            why: RemovalReason::Withdrawn,
        })
    }

    /// Ages entries: marks stale ones and forgets long-silent ones.
    pub fn tick(&mut self, now: MonoTime, events: &mut Vec<CatalogEvent>) {
        let config = self.config;
        self.entries.retain_mut(|entry| {
            if !entry.expires {
                return true;
            }
            let silent = now.duration_since(entry.last_seen);
            let interval = entry.interval.unwrap_or(config.default_interval);
            let forget = (interval * config.forget_after_intervals).max(config.forget_min);
            if silent > forget {
                events.push(CatalogEvent::Removed {
                    protocol: entry.protocol,
                    name: entry.session.name.clone(),
                    why: RemovalReason::TimedOut,
                });
                return false;
            }
            if entry.liveness == Liveness::Active
                && silent > interval * config.stale_after_intervals
            {
                entry.liveness = Liveness::Stale;
                events.push(CatalogEvent::Stale {
                    protocol: entry.protocol,
                    name: entry.session.name.clone(),
                });
            }
            true
        });
    }

    /// Drops the longest-silent entry when full, so a flood of announcements cannot grow the
    /// catalog without bound.
    fn make_room(&mut self) {
        if self.entries.len() < self.config.max_entries {
            return;
        }
        if let Some(oldest) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(i, _)| i)
        {
            self.entries.remove(oldest);
        }
    }
}
