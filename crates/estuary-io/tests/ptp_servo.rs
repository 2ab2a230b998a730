//! Deterministic servo tests: the embedded follower's servo (statime's Kalman filter with
//! the configuration `estuary_io::ptp` uses, steering an overlay clock) driven by a
//! simulated master in virtual time. No sockets, no threads, no real clock: the local
//! oscillator, the path delays, the jitter and the losses are all scripted, so every run
//! gives the same figures.
//!
//! What is checked: the time to lock (the daemon's rule: [`LOCK_SAMPLES`] consecutive
//! estimates within [`LOCK_THRESHOLD_NS`], no step in between), the true residual error
//! once locked, that a delay asymmetry shifts the clock by exactly half of it (PTP cannot
//! see it), and that lost packets and a silent master do not unlock a locked follower.

use std::cell::Cell;
use std::rc::Rc;

use rand08::{Rng, SeedableRng, rngs::StdRng};
use statime::config::TimePropertiesDS;
use statime::filters::{Filter, KalmanConfiguration, KalmanFilter};
use statime::port::Measurement;
use statime::time::{Duration, Time};
use statime::{Clock, OverlayClock};

use estuary_io::ptp::{LOCK_SAMPLES, LOCK_THRESHOLD_NS, UNLOCK_THRESHOLD_NS};

const NS: i64 = 1_000_000_000;
/// AES67 media profile: 8 Sync and 8 Delay_Req per second.
const SYNC_INTERVAL_NS: i64 = NS / 8;

/// The local free-running oscillator: its reading at true time `t` is
/// `t × (1 + drift) + phase`.
#[derive(Debug, Clone)]
struct Oscillator {
    true_ns: Rc<Cell<i64>>,
    drift_ppm: f64,
    phase_ns: i64,
}

impl Oscillator {
    fn reading(&self, true_ns: i64) -> i64 {
        true_ns + (true_ns as f64 * self.drift_ppm * 1e-6) as i64 + self.phase_ns
    }
}

impl Clock for Oscillator {
    type Error = std::convert::Infallible;
    fn now(&self) -> Time {
        Time::from_nanos(self.reading(self.true_ns.get()) as u64)
    }
    fn step_clock(&mut self, _: Duration) -> Result<Time, Self::Error> {
        unreachable!("the overlay never steps its underlying clock")
    }
    fn set_frequency(&mut self, _: f64) -> Result<Time, Self::Error> {
        unreachable!("the overlay never slews its underlying clock")
    }
    fn set_properties(&mut self, _: &TimePropertiesDS) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The overlay clock the servo steers, counting its steps.
struct Follower {
    overlay: OverlayClock<Oscillator>,
    steps: usize,
}

impl Clock for Follower {
    type Error = std::convert::Infallible;
    fn now(&self) -> Time {
        self.overlay.now()
    }
    fn step_clock(&mut self, offset: Duration) -> Result<Time, Self::Error> {
        self.steps += 1;
        self.overlay.step_clock(offset)
    }
    fn set_frequency(&mut self, ppm: f64) -> Result<Time, Self::Error> {
        self.overlay.set_frequency(ppm)
    }
    fn set_properties(&mut self, p: &TimePropertiesDS) -> Result<(), Self::Error> {
        self.overlay.set_properties(p)
    }
}

/// One simulated link and master.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    /// Local oscillator against the master, ppm.
    drift_ppm: f64,
    /// Our clock's error at start, ns.
    initial_offset_ns: i64,
    /// Mean one-way delay, ns.
    delay_ns: i64,
    /// Master → follower minus follower → master delay, ns.
    asymmetry_ns: i64,
    /// Uniform jitter added to each one-way delay, 0..jitter ns.
    jitter_ns: i64,
    /// Probability that a Sync or a Delay_Req (or its response) is lost.
    loss: f64,
    /// The master is silent from this true time for `outage_ns`.
    outage_at_ns: Option<i64>,
    outage_ns: i64,
    seconds: i64,
    seed: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            drift_ppm: 50.0,
            initial_offset_ns: 300_000_000,
            delay_ns: 50_000,
            asymmetry_ns: 0,
            jitter_ns: 2_000,
            loss: 0.0,
            outage_at_ns: None,
            outage_ns: 0,
            seconds: 120,
            seed: 7,
        }
    }
}

/// What a run measured.
#[derive(Debug)]
struct Run {
    /// True time of the first lock, s.
    lock_at_s: Option<f64>,
    /// Lock losses after the first lock.
    lock_losses: usize,
    steps: usize,
    /// Follower − master, ns, at each Sync after the first lock (true error).
    errors_after_lock: Vec<f64>,
    /// The servo's own offset estimate at the end, ns.
    final_estimate_ns: f64,
    syncs_lost: usize,
}

impl Run {
    fn max_abs_error_ns(&self, from: usize) -> f64 {
        self.errors_after_lock
            .iter()
            .skip(from)
            .fold(0.0, |m, e| m.max(e.abs()))
    }
    fn mean_error_ns(&self, from: usize) -> f64 {
        let tail: Vec<f64> = self.errors_after_lock.iter().skip(from).copied().collect();
        tail.iter().sum::<f64>() / tail.len() as f64
    }
}

fn simulate(s: Scenario) -> Run {
    let true_ns = Rc::new(Cell::new(NS));
    let oscillator = Oscillator {
        true_ns: Rc::clone(&true_ns),
        drift_ppm: s.drift_ppm,
        phase_ns: s.initial_offset_ns - (NS as f64 * s.drift_ppm * 1e-6) as i64,
    };
    let mut clock = Follower {
        overlay: OverlayClock::new(oscillator),
        steps: 0,
    };
    let mut filter = KalmanFilter::new(KalmanConfiguration::default());
    let mut rng = StdRng::seed_from_u64(s.seed);
    let mut next_update: Option<i64> = None;
    let (mut in_bound, mut locked, mut steps_seen) = (0usize, false, 0usize);
    let mut run = Run {
        lock_at_s: None,
        lock_losses: 0,
        steps: 0,
        errors_after_lock: Vec::new(),
        final_estimate_ns: 0.0,
        syncs_lost: 0,
    };
    let ts = |c: &Follower| c.now().nanos().to_num::<i128>() as i64;
    let forward = s.delay_ns + s.asymmetry_ns / 2;
    let backward = s.delay_ns - s.asymmetry_ns / 2;
    let mut t = NS;
    while t < NS + s.seconds * NS {
        t += SYNC_INTERVAL_NS;
        // The filter's own timer (end of a steering period) fires before this Sync.
        if let Some(at) = next_update.filter(|&at| at <= t) {
            true_ns.set(at);
            next_update = filter
                .update(&mut clock)
                .next_update
                .map(|d| at + d.as_nanos() as i64);
        }
        let silent = s
            .outage_at_ns
            .is_some_and(|o| (NS + o..NS + o + s.outage_ns).contains(&t));
        let lost = silent || rng.gen_bool(s.loss);
        let mut measured = None;
        if lost {
            run.syncs_lost += 1;
        } else {
            // Sync leaves the master at true time t (master time = true time).
            let t1 = t;
            let arrival = t + forward + rng.gen_range(0..=s.jitter_ns);
            true_ns.set(arrival);
            let t2 = ts(&clock);
            let m = Measurement {
                event_time: clock.now(),
                offset: None,
                delay: None,
                peer_delay: None,
                raw_sync_offset: Some(Duration::from_nanos(t2 - t1)),
                raw_delay_offset: None,
            };
            if let Some(d) = filter.measurement(m, &mut clock).next_update {
                next_update = Some(arrival + d.as_nanos() as i64);
            }
            measured = Some(arrival);
        }
        // Delay_Req half an interval later.
        if !(silent || rng.gen_bool(s.loss)) {
            let sent = t + SYNC_INTERVAL_NS / 2;
            true_ns.set(sent);
            let t3 = ts(&clock);
            let t4 = sent + backward + rng.gen_range(0..=s.jitter_ns);
            let m = Measurement {
                event_time: clock.now(),
                offset: None,
                delay: None,
                peer_delay: None,
                raw_sync_offset: None,
                raw_delay_offset: Some(Duration::from_nanos(t3 - t4)),
            };
            if let Some(d) = filter.measurement(m, &mut clock).next_update {
                next_update = Some(sent + d.as_nanos() as i64);
            }
        }
        // The daemon's lock rule, on the servo's estimate after each Sync.
        if let Some(at) = measured {
            let estimate = filter.current_estimates().offset_from_master.nanos_lossy();
            let stepped = clock.steps != steps_seen;
            steps_seen = clock.steps;
            if stepped {
                in_bound = 0;
            } else if estimate.abs() <= LOCK_THRESHOLD_NS {
                in_bound += 1;
            } else {
                in_bound = 0;
            }
            let now_locked = if locked {
                !stepped && estimate.abs() <= UNLOCK_THRESHOLD_NS
            } else {
                in_bound >= LOCK_SAMPLES
            };
            if locked && !now_locked {
                run.lock_losses += 1;
            }
            if now_locked && run.lock_at_s.is_none() {
                run.lock_at_s = Some((at - NS) as f64 / NS as f64);
            }
            locked = now_locked;
            if run.lock_at_s.is_some() {
                true_ns.set(at);
                run.errors_after_lock.push((ts(&clock) - at) as f64);
            }
        }
    }
    run.steps = clock.steps;
    run.final_estimate_ns = filter.current_estimates().offset_from_master.nanos_lossy();
    run
}

#[test]
fn locks_within_seconds_and_follows_a_drifting_master_to_a_microsecond() {
    let run = simulate(Scenario::default());
    println!(
        "drift 50 ppm, 300 ms initial error: lock at {:?} s, {} steps, residual {} ns",
        run.lock_at_s,
        run.steps,
        run.max_abs_error_ns(8 * 30)
    );
    let lock = run.lock_at_s.expect("never locked");
    assert!(lock < 10.0, "lock after {lock} s");
    assert!(run.steps >= 1, "a 300 ms error is stepped, not slewed");
    assert_eq!(run.lock_losses, 0);
    // After 30 s of lock: within 2 µs of the master (jitter is 0–2 µs per direction).
    let residual = run.max_abs_error_ns(8 * 30);
    assert!(residual < 2_000.0, "residual {residual} ns");
}

#[test]
fn an_asymmetric_path_shifts_the_clock_by_half_the_asymmetry() {
    let run = simulate(Scenario {
        asymmetry_ns: 40_000,
        ..Scenario::default()
    });
    let mean = run.mean_error_ns(8 * 30);
    println!(
        "asymmetry 40 µs: mean error {mean} ns, servo estimate {} ns",
        run.final_estimate_ns
    );
    // The forward path is 20 µs longer than the mean delay: our clock lags by that much,
    // and the servo cannot know it (its own estimate stays near zero).
    assert!((mean + 20_000.0).abs() < 1_500.0, "mean error {mean} ns");
    assert!(
        run.final_estimate_ns.abs() < 2_000.0,
        "{}",
        run.final_estimate_ns
    );
    assert!(run.lock_at_s.is_some() && run.lock_losses == 0);
}

#[test]
fn packet_loss_slows_nothing_down_and_an_outage_does_not_unlock() {
    let lossy = simulate(Scenario {
        loss: 0.3,
        drift_ppm: -80.0,
        seed: 11,
        ..Scenario::default()
    });
    println!(
        "30 % loss: lock at {:?} s, {} Syncs lost, residual {} ns",
        lossy.lock_at_s,
        lossy.syncs_lost,
        lossy.max_abs_error_ns(8 * 30)
    );
    assert!(lossy.syncs_lost > 200, "the loss was simulated");
    assert!(
        lossy.lock_at_s.is_some_and(|l| l < 15.0),
        "{:?}",
        lossy.lock_at_s
    );
    assert_eq!(lossy.lock_losses, 0);
    assert!(lossy.max_abs_error_ns(8 * 30) < 3_000.0);

    // The master goes silent for 10 s after lock: the servo holds the learned frequency,
    // so the error grows by far less than the 80 ppm × 10 s = 800 µs free run.
    let outage = simulate(Scenario {
        drift_ppm: -80.0,
        outage_at_ns: Some(60 * NS),
        outage_ns: 10 * NS,
        ..Scenario::default()
    });
    println!(
        "10 s outage at 80 ppm: largest error from 30 s on (the outage is at 60-70 s) {} ns, \
         lock losses {}",
        outage.max_abs_error_ns(8 * 30),
        outage.lock_losses
    );
    assert_eq!(outage.lock_losses, 0);
    assert!(
        outage.max_abs_error_ns(8 * 30) < 20_000.0,
        "error after the outage {} ns",
        outage.max_abs_error_ns(8 * 30)
    );
}
