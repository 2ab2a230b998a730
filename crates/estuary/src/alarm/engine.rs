//! The rule engine: signals in, alarm changes out. Pure (time is passed in), so it is tested
//! without threads or clocks.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Instant, SystemTime};

use super::config::Severity;
use super::rules::{Rule, Rules};
use crate::gateway::{Condition, Scope, Signal, rfc3339};
use crate::status::AlarmStatus;

/// Alarm changes kept by the engine (the gateway keeps its own event history).
pub const HISTORY: usize = 500;

/// An alarm raised or cleared: what is logged, recorded and sent to notifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub key: String,
    pub rule: String,
    /// A [`Condition`] name (`test` for `estuary alarm test`).
    pub condition: String,
    pub severity: Severity,
    pub raised: bool,
    pub scope: String,
    pub subject: String,
    pub channel: Option<u16>,
    pub value: f64,
    pub message: String,
    pub at: SystemTime,
    /// Notifier names; None: all.
    pub notify: Option<Vec<String>>,
}

impl Notice {
    pub fn state(&self) -> &'static str {
        if self.raised { "raised" } else { "cleared" }
    }

    pub fn wants(&self, notifier: &str) -> bool {
        self.notify
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == notifier))
    }
}

/// The stable identity of what a signal is about.
pub fn key_of(scope: Scope, subject: &str, condition: Condition, channel: Option<u16>) -> String {
    let base = format!("{}/{subject}/{}", scope.name(), condition.name());
    match channel {
        Some(ch) => format!("{base}/ch{ch}"),
        None => base,
    }
}

#[derive(Debug, Clone)]
struct Pending {
    raise: bool,
    signal: Signal,
    due: Instant,
}

/// Raised alarms, waiting changes and the recent history.
#[derive(Debug, Default)]
pub struct Engine {
    rules: Rules,
    active: BTreeMap<String, Notice>,
    pending: BTreeMap<String, Pending>,
    history: VecDeque<Notice>,
}

impl Engine {
    pub fn new(rules: Rules) -> Self {
        Engine {
            rules,
            ..Engine::default()
        }
    }

    /// Applies one detector change; returns the alarm changes it makes now.
    pub fn on_signal(&mut self, signal: &Signal, now: Instant) -> Vec<Notice> {
        let key = key_of(
            signal.scope,
            &signal.subject,
            signal.condition,
            signal.channel,
        );
        let Some(rule) = self
            .rules
            .find(signal.condition, signal.scope, &signal.subject)
            .cloned()
        else {
            // No rule (any more): a clear still ends what was raised.
            return if signal.raised {
                Vec::new()
            } else {
                self.clear(&key, signal).into_iter().collect()
            };
        };
        let delay = if signal.raised {
            rule.raise_after
        } else {
            rule.clear_after
        }
        .filter(|d| rule.debounced_here() && !d.is_zero());
        let active = self.active.contains_key(&key);
        if signal.raised == active {
            // Already in that state: a duplicate, or the end of a change still pending.
            self.pending.remove(&key);
            return Vec::new();
        }
        match delay {
            Some(d) => {
                self.pending.entry(key).or_insert(Pending {
                    raise: signal.raised,
                    signal: signal.clone(),
                    due: now + d,
                });
                Vec::new()
            }
            None => {
                self.pending.remove(&key);
                self.change(&key, &rule, signal).into_iter().collect()
            }
        }
    }

    /// Completes the delayed changes that are due.
    pub fn tick(&mut self, now: Instant) -> Vec<Notice> {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in due {
            let Some(p) = self.pending.remove(&key) else {
                continue;
            };
            let rule = self
                .rules
                .find(p.signal.condition, p.signal.scope, &p.signal.subject)
                .cloned();
            match (p.raise, rule) {
                (true, Some(rule)) => out.extend(self.change(&key, &rule, &p.signal)),
                (false, _) => out.extend(self.clear(&key, &p.signal)),
                (true, None) => {}
            }
        }
        out
    }

    /// New rules: raised alarms take the new rule's name and severity, and those no rule
    /// covers any more are cleared.
    pub fn set_rules(&mut self, rules: Rules, now: SystemTime) -> Vec<Notice> {
        self.rules = rules;
        let mut out = Vec::new();
        let keys: Vec<String> = self.active.keys().cloned().collect();
        for key in keys {
            let Some(alarm) = self.active.get_mut(&key) else {
                continue;
            };
            let found = Condition::from_name(&alarm.condition).and_then(|c| {
                let scope = if alarm.scope == Scope::Output.name() {
                    Scope::Output
                } else if alarm.scope == Scope::Clock.name() {
                    Scope::Clock
                } else {
                    Scope::Input
                };
                self.rules.find(c, scope, &alarm.subject)
            });
            if let Some(rule) = found {
                alarm.rule.clone_from(&rule.name);
                alarm.severity = rule.severity;
                alarm.notify.clone_from(&rule.notify);
            } else if let Some(mut notice) = self.active.remove(&key) {
                notice.raised = false;
                notice.at = now;
                notice.message = format!("{} (its rule was removed)", cleared_message(&notice));
                self.remember(notice.clone());
                out.push(notice);
            }
        }
        let rules = &self.rules;
        self.pending.retain(|_, p| {
            rules
                .find(p.signal.condition, p.signal.scope, &p.signal.subject)
                .is_some()
        });
        out
    }

    fn change(&mut self, key: &str, rule: &Rule, signal: &Signal) -> Option<Notice> {
        if !signal.raised {
            return self.clear(key, signal);
        }
        let notice = Notice {
            key: key.to_owned(),
            rule: rule.name.clone(),
            condition: signal.condition.name().to_owned(),
            severity: rule.severity,
            raised: true,
            scope: signal.scope.name().to_owned(),
            subject: signal.subject.clone(),
            channel: signal.channel,
            value: signal.value,
            message: raised_message(signal),
            at: signal.at,
            notify: rule.notify.clone(),
        };
        self.active.insert(key.to_owned(), notice.clone());
        self.remember(notice.clone());
        Some(notice)
    }

    /// Ends a raised alarm; a clear of nothing is ignored.
    fn clear(&mut self, key: &str, signal: &Signal) -> Option<Notice> {
        self.pending.remove(key);
        let mut notice = self.active.remove(key)?;
        notice.raised = false;
        notice.at = signal.at;
        notice.message = cleared_message(&notice);
        self.remember(notice.clone());
        Some(notice)
    }

    fn remember(&mut self, notice: Notice) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(notice);
    }

    /// Raised alarms for the status, most recent first.
    pub fn active(&self) -> Vec<AlarmStatus> {
        let mut list: Vec<&Notice> = self.active.values().collect();
        list.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.key.cmp(&b.key)));
        list.into_iter().map(status_of).collect()
    }

    #[cfg(test)]
    pub fn history(&self) -> &VecDeque<Notice> {
        &self.history
    }
}

fn status_of(n: &Notice) -> AlarmStatus {
    AlarmStatus {
        key: n.key.clone(),
        rule: n.rule.clone(),
        scope: n.scope.clone(),
        subject: n.subject.clone(),
        channel: n.channel,
        condition: n.condition.clone(),
        severity: n.severity.name().to_owned(),
        message: n.message.clone(),
        value: if n.value.is_finite() { n.value } else { 0.0 },
        raised_at: rfc3339(n.at),
    }
}

fn place(scope: &str, subject: &str, channel: Option<u16>) -> String {
    match channel {
        Some(ch) => format!("{scope} {subject} ch{ch}"),
        None => format!("{scope} {subject}"),
    }
}

/// What the measured value says, in words.
fn detail(condition: Condition, v: f64) -> String {
    match condition {
        Condition::Silence | Condition::DcOffset | Condition::Stuck if v == f64::NEG_INFINITY => {
            "digital silence".into()
        }
        Condition::Silence | Condition::DcOffset | Condition::Stuck => format!("{v:.1} dBFS"),
        Condition::Clipping => format!("{v:.1} (run of full-scale samples, or dBTP)"),
        Condition::Discontinuity => format!("{v:.0} click(s) in 10 ms"),
        Condition::PhaseInverted => format!("correlation {v:.2}"),
        Condition::Loss | Condition::Late | Condition::Duplicates | Condition::Reordered => {
            format!("{v:.0} packet(s) in the last interval")
        }
        Condition::Jitter => format!("{v:.0} µs"),
        Condition::StreamChanged => format!("{v:.0} change(s)"),
        Condition::NoPackets => format!("no packet for {v:.0} ms"),
        Condition::Drift => format!("{v:+.1} ppm"),
        Condition::Disconnected => "no peer connected".into(),
        Condition::RouteFailed => "the route cannot receive its stream".into(),
        Condition::RecordFailed => "the recorder cannot write its files".into(),
        Condition::ClockUnlocked => "the PTP clock is not locked to a grandmaster".into(),
        Condition::FailoverActive if v >= 2.0 => "the fallback is on air".into(),
        Condition::FailoverActive => "the backup is on air".into(),
    }
}

fn raised_message(s: &Signal) -> String {
    format!(
        "{} on {}: {}",
        s.condition.name(),
        place(s.scope.name(), &s.subject, s.channel),
        detail(s.condition, s.value)
    )
}

fn cleared_message(n: &Notice) -> String {
    format!(
        "{} cleared on {}",
        n.condition,
        place(&n.scope, &n.subject, n.channel)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alarm::config::{AlarmsConfig, RuleConfig};

    fn alarms(toml_text: &str) -> AlarmsConfig {
        #[derive(serde::Deserialize)]
        struct Wrap {
            alarms: AlarmsConfig,
        }
        toml::from_str::<Wrap>(toml_text)
            .expect("alarms toml")
            .alarms
    }

    fn signal(subject: &str, condition: Condition, channel: Option<u16>, raised: bool) -> Signal {
        Signal {
            scope: crate::alarm::config::scope_of(condition),
            subject: subject.into(),
            channel,
            condition,
            raised,
            value: -90.0,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        }
    }

    const RULES: &str = r#"
        [[alarms.rules]]
        name = "quiet"
        condition = "silence"
        severity = "warning"
        notify = ["ops"]
        [[alarms.rules]]
        name = "studio-quiet"
        condition = "silence"
        inputs = ["studio"]
        severity = "critical"
        [[alarms.rules]]
        name = "link"
        condition = "disconnected"
        raise_after = "2s"
        clear_after = "1s"
    "#;

    fn engine() -> Engine {
        Engine::new(Rules::from_config(&alarms(RULES)))
    }

    #[test]
    fn a_repeated_raise_is_one_alarm_and_a_stray_clear_is_ignored() {
        let mut e = engine();
        let now = Instant::now();
        assert!(
            e.on_signal(&signal("a", Condition::Silence, Some(1), false), now)
                .is_empty()
        );
        let first = e.on_signal(&signal("a", Condition::Silence, Some(1), true), now);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].key, "input/a/silence/ch1");
        assert!(
            e.on_signal(&signal("a", Condition::Silence, Some(1), true), now)
                .is_empty()
        );
        assert_eq!(e.active().len(), 1);
        let cleared = e.on_signal(&signal("a", Condition::Silence, Some(1), false), now);
        assert_eq!(cleared.len(), 1);
        assert!(!cleared[0].raised);
        assert_eq!(cleared[0].message, "silence cleared on input a ch1");
        assert!(e.active().is_empty());
        assert!(
            e.on_signal(&signal("a", Condition::Silence, Some(1), false), now)
                .is_empty()
        );
    }

    #[test]
    fn channels_are_separate_alarms() {
        let mut e = engine();
        let now = Instant::now();
        e.on_signal(&signal("a", Condition::Silence, Some(1), true), now);
        e.on_signal(&signal("a", Condition::Silence, Some(2), true), now);
        let keys: Vec<String> = e.active().into_iter().map(|a| a.key).collect();
        assert_eq!(keys, ["input/a/silence/ch1", "input/a/silence/ch2"]);
    }

    #[test]
    fn a_named_rule_beats_the_wildcard_and_sets_severity_and_routing() {
        let mut e = engine();
        let now = Instant::now();
        let studio = e.on_signal(&signal("studio", Condition::Silence, Some(1), true), now);
        assert_eq!(studio[0].rule, "studio-quiet");
        assert_eq!(studio[0].severity, Severity::Critical);
        assert!(studio[0].wants("ops") && studio[0].wants("pager"));
        let other = e.on_signal(&signal("b", Condition::Silence, Some(1), true), now);
        assert_eq!(other[0].rule, "quiet");
        assert_eq!(other[0].severity, Severity::Warning);
        assert!(other[0].wants("ops") && !other[0].wants("pager"));
        assert_eq!(other[0].message, "silence on input b ch1: -90.0 dBFS");
    }

    #[test]
    fn conditions_without_a_rule_raise_nothing() {
        let mut e = engine();
        assert!(
            e.on_signal(&signal("a", Condition::Loss, None, true), Instant::now())
                .is_empty()
        );
    }

    #[test]
    fn service_side_debounce_waits_and_a_quick_recovery_raises_nothing() {
        let mut e = engine();
        let t0 = Instant::now();
        let down = signal("srt", Condition::Disconnected, None, true);
        let up = signal("srt", Condition::Disconnected, None, false);
        assert!(e.on_signal(&down, t0).is_empty());
        assert!(e.tick(t0 + Duration::from_millis(1_500)).is_empty());
        assert!(
            e.on_signal(&up, t0 + Duration::from_millis(1_600))
                .is_empty()
        );
        assert!(e.tick(t0 + Duration::from_secs(5)).is_empty());
        assert!(e.on_signal(&down, t0 + Duration::from_secs(6)).is_empty());
        let raised = e.tick(t0 + Duration::from_secs(8));
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].key, "output/srt/disconnected");
        assert!(e.on_signal(&up, t0 + Duration::from_secs(9)).is_empty());
        assert!(e.tick(t0 + Duration::from_millis(9_500)).is_empty());
        let cleared = e.tick(t0 + Duration::from_secs(10));
        assert_eq!(cleared.len(), 1);
        assert!(!cleared[0].raised);
    }

    #[test]
    fn history_is_bounded() {
        let mut e = engine();
        let now = Instant::now();
        for i in 0..HISTORY {
            e.on_signal(
                &signal(&format!("i{i}"), Condition::Silence, Some(1), true),
                now,
            );
            e.on_signal(
                &signal(&format!("i{i}"), Condition::Silence, Some(1), false),
                now,
            );
        }
        assert_eq!(e.history().len(), HISTORY);
        let last = e.history().back().expect("history");
        assert_eq!(last.key, format!("input/i{}/silence/ch1", HISTORY - 1));
        assert!(!last.raised);
    }

    #[test]
    fn removing_a_rule_clears_its_alarms() {
        let mut e = engine();
        let now = Instant::now();
        e.on_signal(&signal("studio", Condition::Silence, Some(1), true), now);
        e.on_signal(&signal("b", Condition::Silence, Some(1), true), now);
        let mut config = alarms(RULES);
        let rules: &mut Vec<RuleConfig> = config.rules.as_mut().expect("rules");
        rules.retain(|r| r.name.get_ref() != "quiet");
        let out = e.set_rules(Rules::from_config(&config), SystemTime::UNIX_EPOCH);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, "input/b/silence/ch1");
        assert_eq!(e.active().len(), 1);
    }

    #[test]
    fn the_active_list_is_most_recent_first() {
        let mut e = engine();
        let now = Instant::now();
        let mut late = signal("b", Condition::Silence, Some(1), true);
        late.at += Duration::from_secs(5);
        e.on_signal(&signal("a", Condition::Silence, Some(1), true), now);
        e.on_signal(&late, now);
        let list = e.active();
        assert_eq!(list[0].subject, "b");
        assert_eq!(list[0].severity, "warning");
        assert_eq!(list[0].raised_at, "1970-01-01T00:16:45.000Z");
    }
}
