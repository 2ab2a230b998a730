//! Rules resolved for lookup, and what they make of each input's detectors.

use std::time::Duration;

use estuary_engine::monitor::detect::Timing;
use estuary_engine::monitor::health::HealthConfig;
use estuary_engine::monitor::{
    ClippingConfig, DcOffsetConfig, DiscontinuityConfig, MonitorConfig, PhaseConfig, SilenceConfig,
    StuckConfig,
};

use super::config::{AlarmsConfig, RuleConfig, Severity, scope_of};
use crate::gateway::{Condition, Scope};

/// Default no-packets threshold when a rule gives none. Counters are published every 20 ms
/// and judged every 50 ms, so much less would raise on a late publication.
const NO_PACKETS_DEFAULT: Duration = Duration::from_millis(250);

/// A rule ready for matching.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub condition: Condition,
    pub scope: Scope,
    /// Names, or `*` for every one.
    pub subjects: Vec<String>,
    pub threshold: Option<f64>,
    pub raise_after: Option<Duration>,
    pub clear_after: Option<Duration>,
    pub severity: Severity,
    /// None: every notifier.
    pub notify: Option<Vec<String>>,
}

impl Rule {
    fn from_config(c: &RuleConfig) -> Option<Rule> {
        let condition = Condition::from_name(c.condition.get_ref())?;
        let scope = scope_of(condition);
        let selector = match scope {
            Scope::Input => &c.inputs,
            Scope::Output | Scope::Clock => &c.outputs,
        };
        Some(Rule {
            name: c.name.get_ref().clone(),
            condition,
            scope,
            subjects: selector
                .as_ref()
                .map_or_else(|| vec!["*".into()], |s| s.get_ref().clone()),
            threshold: c.threshold.as_ref().map(|t| *t.get_ref()),
            raise_after: c.raise_after,
            clear_after: c.clear_after,
            severity: c.severity,
            notify: c.notify.as_ref().map(|n| n.get_ref().clone()),
        })
    }

    /// 2: names the subject, 1: through `*`, 0: not at all.
    fn specificity(&self, subject: &str) -> u8 {
        if self.subjects.iter().any(|s| s == subject) {
            2
        } else if self.subjects.iter().any(|s| s == "*") {
            1
        } else {
            0
        }
    }

    /// Whether the alarm service, not a detector, applies `raise_after`/`clear_after`: these
    /// conditions come as plain state changes.
    pub fn debounced_here(&self) -> bool {
        matches!(
            self.condition,
            Condition::NoPackets
                | Condition::Disconnected
                | Condition::RouteFailed
                | Condition::RecordFailed
                | Condition::ClockUnlocked
                | Condition::FailoverActive
        )
    }
}

/// The rules in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules(Vec<Rule>);

impl Rules {
    pub fn from_config(alarms: &AlarmsConfig) -> Self {
        Rules(
            alarms
                .rules()
                .iter()
                .filter_map(Rule::from_config)
                .collect(),
        )
    }

    /// The rule deciding `condition` on `subject`: one naming it beats a `*` one, then the
    /// first in the file wins (a detector has one setting per input).
    pub fn find(&self, condition: Condition, scope: Scope, subject: &str) -> Option<&Rule> {
        let mut best: Option<(&Rule, u8)> = None;
        for rule in self
            .0
            .iter()
            .filter(|r| r.condition == condition && r.scope == scope)
        {
            let s = rule.specificity(subject);
            if s > best.map_or(0, |b| b.1) {
                best = Some((rule, s));
            }
        }
        best.map(|b| b.0)
    }
}

/// The detector settings of input `input` under `alarms`: a detector without a rule is off.
pub fn detectors(alarms: &AlarmsConfig, input: &str) -> (MonitorConfig, HealthConfig) {
    let rules = Rules::from_config(alarms);
    let mut monitor = MonitorConfig::meters_only();
    let mut health = health_off();
    for condition in Condition::ALL {
        if let Some(rule) = rules.find(condition, Scope::Input, input) {
            enable(rule, &mut monitor, &mut health);
        }
    }
    (monitor, health)
}

/// Health alarms that can never raise: the monitor keeps no "off" switch, but a debounce of
/// `Duration::MAX` saturates and never completes.
fn health_off() -> HealthConfig {
    let never = Timing::new(Duration::MAX, Duration::ZERO);
    HealthConfig {
        loss: never,
        late: never,
        duplicates: never,
        reordered: never,
        jitter: never,
        stream_change: never,
        no_packets_after: Duration::MAX,
        drift: never,
        ..HealthConfig::default()
    }
}

fn timing(rule: &Rule, default: Timing) -> Timing {
    Timing::new(
        rule.raise_after.unwrap_or(default.raise_after),
        rule.clear_after.unwrap_or(default.clear_after),
    )
}

fn enable(rule: &Rule, m: &mut MonitorConfig, h: &mut HealthConfig) {
    let d = HealthConfig::default();
    let t = rule.threshold;
    match rule.condition {
        Condition::Silence => {
            let mut c = SilenceConfig::default();
            c.threshold_dbfs = t.unwrap_or(c.threshold_dbfs);
            c.timing = timing(rule, c.timing);
            m.silence = Some(c);
        }
        Condition::Clipping => {
            let mut c = ClippingConfig::default();
            c.level_dbfs = t.unwrap_or(c.level_dbfs);
            c.timing = timing(rule, c.timing);
            m.clipping = Some(c);
        }
        Condition::Stuck => {
            let c = StuckConfig::default();
            m.stuck = Some(StuckConfig {
                timing: timing(rule, c.timing),
            });
        }
        Condition::DcOffset => {
            let mut c = DcOffsetConfig::default();
            c.threshold_dbfs = t.unwrap_or(c.threshold_dbfs);
            c.timing = timing(rule, c.timing);
            m.dc_offset = Some(c);
        }
        Condition::Discontinuity => {
            let mut c = DiscontinuityConfig::default();
            c.ratio = t.unwrap_or(c.ratio);
            c.timing = timing(rule, c.timing);
            m.discontinuity = Some(c);
        }
        Condition::PhaseInverted => {
            let mut c = PhaseConfig::default();
            c.threshold = t.unwrap_or(c.threshold);
            // A hysteresis reaching past +1 would keep the alarm up for ever.
            c.hysteresis = c.hysteresis.min((1.0 - c.threshold) / 2.0);
            c.timing = timing(rule, c.timing);
            m.phase = Some(c);
        }
        Condition::Loss => h.loss = timing(rule, d.loss),
        Condition::Late => h.late = timing(rule, d.late),
        Condition::Duplicates => h.duplicates = timing(rule, d.duplicates),
        Condition::Reordered => h.reordered = timing(rule, d.reordered),
        Condition::StreamChanged => h.stream_change = timing(rule, d.stream_change),
        Condition::Jitter => {
            if let Some(us) = t {
                h.jitter_threshold = Duration::from_secs_f64(us / 1e6);
            }
            // Never more than a quarter of the threshold, or the alarm could not clear.
            h.jitter_hysteresis = d.jitter_hysteresis.min(h.jitter_threshold / 4);
            h.jitter = timing(rule, d.jitter);
        }
        Condition::NoPackets => {
            h.no_packets_after =
                t.map_or(NO_PACKETS_DEFAULT, |ms| Duration::from_secs_f64(ms / 1e3));
        }
        Condition::Drift => {
            h.drift_threshold_ppm = t.unwrap_or(d.drift_threshold_ppm);
            h.drift_hysteresis_ppm = d.drift_hysteresis_ppm.min(h.drift_threshold_ppm / 4.0);
            h.drift = timing(rule, d.drift);
        }
        Condition::Disconnected
        | Condition::RouteFailed
        | Condition::RecordFailed
        | Condition::ClockUnlocked
        | Condition::FailoverActive => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarms(text: &str) -> AlarmsConfig {
        #[derive(serde::Deserialize)]
        struct Wrap {
            alarms: AlarmsConfig,
        }
        toml::from_str::<Wrap>(text).expect("alarms toml").alarms
    }

    #[test]
    fn default_rules_enable_only_their_detectors() {
        let (m, h) = detectors(&AlarmsConfig::default(), "any");
        let silence = m.silence.expect("silence on");
        assert_eq!(silence.threshold_dbfs, -60.0);
        assert_eq!(silence.timing.raise_after, Duration::from_secs(10));
        assert!(m.clipping.is_some());
        assert!(m.stuck.is_none() && m.dc_offset.is_none() && m.phase.is_none());
        assert!(m.discontinuity.is_none());
        assert_eq!(h.no_packets_after, Duration::from_millis(500));
        assert_eq!(h.loss, HealthConfig::default().loss);
        assert_eq!(h.jitter.raise_after, Duration::MAX);
        assert_eq!(h.drift.raise_after, Duration::MAX);
    }

    #[test]
    fn an_empty_rule_list_turns_every_detector_off() {
        let (m, h) = detectors(&alarms("[alarms]\nrules = []\n"), "any");
        assert_eq!(m, MonitorConfig::meters_only());
        assert_eq!(h.no_packets_after, Duration::MAX);
        assert_eq!(h.loss.raise_after, Duration::MAX);
    }

    #[test]
    fn thresholds_and_timings_map_per_input() {
        let a = alarms(
            r#"
            [[alarms.rules]]
            name = "quiet"
            condition = "silence"
            threshold = -50.0
            raise_after = "3s"
            clear_after = "500ms"
            [[alarms.rules]]
            name = "studio-quiet"
            condition = "silence"
            inputs = ["studio"]
            threshold = -70.0
            [[alarms.rules]]
            name = "jitter"
            condition = "jitter"
            inputs = ["studio"]
            threshold = 400.0
            [[alarms.rules]]
            name = "drift"
            condition = "drift"
            threshold = 50.0
            [[alarms.rules]]
            name = "gone"
            condition = "no_packets"
            threshold = 1500.0
            "#,
        );
        let (m, h) = detectors(&a, "other");
        let s = m.silence.expect("silence");
        assert_eq!(s.threshold_dbfs, -50.0);
        assert_eq!(
            s.timing,
            Timing::new(Duration::from_secs(3), Duration::from_millis(500))
        );
        assert_eq!(h.jitter.raise_after, Duration::MAX);
        assert_eq!(h.drift_threshold_ppm, 50.0);
        assert_eq!(h.drift_hysteresis_ppm, 12.5);
        assert_eq!(h.no_packets_after, Duration::from_millis(1_500));

        let (m, h) = detectors(&a, "studio");
        let s = m.silence.expect("silence");
        assert_eq!(s.threshold_dbfs, -70.0);
        assert_eq!(s.timing, SilenceConfig::default().timing);
        assert_eq!(h.jitter_threshold, Duration::from_micros(400));
        assert_eq!(h.jitter_hysteresis, Duration::from_micros(100));
        assert_eq!(h.jitter, HealthConfig::default().jitter);
    }
}
