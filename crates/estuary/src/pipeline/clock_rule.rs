//! The failover clock rule: is the main stream's clock locked? The supervisor judges it
//! (reading the PTP clock takes locks and allocates) at each status period and leaves the
//! verdict in an atomic that the ingest thread hands to the `Switcher` on every tick.
//!
//! The main stream's clock is *unlocked* when our PTP clock lost its lock (it was
//! synchronized since the daemon started, and is not now), or when the stream's SDP
//! `ts-refclk` names another grandmaster or domain than the one we are locked to. It is not
//! judged (never fails the stream) while our clock has never been synchronized: at start-up a
//! follower takes seconds to lock, and the `clock_unlocked` alarm covers one that never does.

use std::sync::atomic::{AtomicU8, Ordering};

use super::{RouteState, Running};

/// A verdict handed from the supervisor to the ingest thread.
#[derive(Debug, Default)]
pub(super) struct ClockGate(AtomicU8);

const NOT_JUDGED: u8 = 0;
const LOCKED: u8 = 1;
const UNLOCKED: u8 = 2;

impl ClockGate {
    fn set(&self, locked: Option<bool>) {
        let v = match locked {
            None => NOT_JUDGED,
            Some(true) => LOCKED,
            Some(false) => UNLOCKED,
        };
        self.0.store(v, Ordering::Relaxed);
    }

    /// The main stream's clock: `Some(false)` unlocked, `None` not judged.
    pub(super) fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            LOCKED => Some(true),
            UNLOCKED => Some(false),
            _ => None,
        }
    }
}

/// Our PTP clock as the rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OurClock {
    /// No PTP clock (`[clock]` system, or PTP failed to start): nothing to judge.
    None,
    /// PTP runs but has not been synchronized since the daemon started.
    Acquiring,
    /// Synchronized to this grandmaster and domain.
    Locked(String, u8),
    /// Was synchronized, is not now.
    Lost,
}

/// The verdict for a stream whose SDP declares `reference` (`ts-refclk`, if any).
pub(super) fn verdict(ours: &OurClock, reference: Option<&str>) -> Option<bool> {
    match ours {
        OurClock::None | OurClock::Acquiring => None,
        OurClock::Lost => Some(false),
        OurClock::Locked(gm, domain) => Some(
            reference
                .and_then(|r| crate::clock::grandmaster_mismatch(r, Some(&(gm.clone(), *domain))))
                .is_none(),
        ),
    }
}

/// Follows our PTP clock for the clock rule; owned by the supervisor.
#[derive(Debug, Default)]
pub struct ClockRules {
    ever_synchronized: bool,
}

impl ClockRules {
    /// Judges every failover input's main stream; call it at each status period.
    pub fn update(&mut self, running: &Running) {
        if !running.routes.iter().any(|r| {
            r.config
                .failover
                .as_ref()
                .is_some_and(|f| f.get_ref().clock_unlocked_after.is_some())
        }) {
            return;
        }
        let ours = self.our_clock();
        for route in &running.routes {
            let reference = match &route.state {
                RouteState::Receiving { sdp: Some(sdp), .. } => sdp
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("a=ts-refclk:")),
                _ => None,
            };
            route.clock_gate.set(verdict(&ours, reference));
        }
    }

    fn our_clock(&mut self) -> OurClock {
        let status = crate::clock::clock_status();
        if status.ptp.as_ref().is_none_or(|p| p.state == "failed") {
            return OurClock::None;
        }
        if let Some((gm, domain)) = crate::clock::locked_grandmaster() {
            self.ever_synchronized = true;
            return OurClock::Locked(gm, domain);
        }
        if self.ever_synchronized {
            OurClock::Lost
        } else {
            OurClock::Acquiring
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GM: &str = "00-1D-C1-FF-FE-12-34-56";

    #[test]
    fn verdicts() {
        let locked = OurClock::Locked(GM.into(), 0);
        let same = format!("ptp=IEEE1588-2008:{GM}:0");
        assert_eq!(verdict(&locked, Some(&same)), Some(true));
        assert_eq!(verdict(&locked, None), Some(true));
        assert_eq!(
            verdict(&locked, Some("localmac=00-11-22-33-44-55")),
            Some(true)
        );
        assert_eq!(
            verdict(&locked, Some("ptp=IEEE1588-2008:00-1D-C1-FF-FE-99-99-99:0")),
            Some(false)
        );
        assert_eq!(
            verdict(&locked, Some(&format!("ptp=IEEE1588-2008:{GM}:3"))),
            Some(false)
        );
        assert_eq!(verdict(&OurClock::Lost, Some(&same)), Some(false));
        assert_eq!(verdict(&OurClock::Lost, None), Some(false));
        assert_eq!(verdict(&OurClock::Acquiring, Some(&same)), None);
        assert_eq!(verdict(&OurClock::None, None), None);
        let gate = ClockGate::default();
        for v in [Some(false), Some(true), None] {
            gate.set(v);
            assert_eq!(gate.get(), v);
        }
    }
}
