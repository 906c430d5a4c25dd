//! The results of one run, as a struct that prints as a line of text or as
//! JSON (`--json`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::Outcome;
use crate::proc_stats::ProcStats;

/// How evenly a run served its connections: round trips per connection
/// inside the window.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Fairness {
    pub min: u64,
    pub median: u64,
    pub max: u64,
    /// Jain's fairness index, (Σx)² / (n·Σx²): 1 when every connection got
    /// the same number of round trips, 1/n when one got them all.
    pub jain: f64,
    /// Connections that completed no round trip in the window.
    pub idle: u64,
}

impl Fairness {
    pub fn of(rounds: &[u64]) -> Fairness {
        if rounds.is_empty() {
            return Fairness::default();
        }
        let mut sorted = rounds.to_vec();
        sorted.sort_unstable();
        let sum: f64 = sorted.iter().map(|&x| x as f64).sum();
        let squares: f64 = sorted.iter().map(|&x| (x as f64) * (x as f64)).sum();
        Fairness {
            min: sorted[0],
            median: sorted[sorted.len() / 2],
            max: sorted[sorted.len() - 1],
            jain: if squares > 0.0 {
                sum * sum / (sorted.len() as f64 * squares)
            } else {
                0.0
            },
            idle: sorted.iter().filter(|&&x| x == 0).count() as u64,
        }
    }
}

/// How far a closed-loop run may stray from Little's law before it fails.
pub const LITTLE_TOLERANCE: f64 = 0.10;

/// A closed-loop (or open-loop) load run.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub connections: usize,
    pub size: usize,
    pub seconds: f64,
    /// Every round trip completed, inside the window or not.
    pub round_trips: u64,
    /// Round trips answered inside the window.
    pub answered: u64,
    /// Rounds unanswered when the window closed, recorded at their age.
    pub unanswered: u64,
    /// Open loop: sends the schedule asked for in the window.
    pub scheduled: u64,
    /// Open loop: the offered rate, round trips per second.
    pub offered_per_sec: Option<f64>,
    pub round_trips_per_sec: f64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Closed loop: mean latency × the rate of recorded rounds (answered,
    /// and unanswered at the end), which Little's law says is the number of
    /// connections: each has one round in flight at all times.
    pub little_connections: f64,
    pub fairness: Fairness,
    pub failed: u64,
    /// Connections that failed before the window closed.
    pub failed_in_window: u64,
    pub mismatches: u64,
    pub failures: BTreeMap<String, u64>,
}

impl LoadReport {
    pub fn new(connections: usize, size: usize, outcome: &Outcome) -> LoadReport {
        let seconds = outcome.measured.as_secs_f64();
        let rate = if seconds > 0.0 {
            outcome.measured_round_trips as f64 / seconds
        } else {
            0.0
        };
        let quantile = |q: f64| {
            if outcome.latency.is_empty() {
                0
            } else {
                outcome.latency.value_at_quantile(q)
            }
        };
        let mean_us = outcome.latency.mean();
        LoadReport {
            connections,
            size,
            seconds,
            round_trips: outcome.round_trips,
            answered: outcome.measured_round_trips,
            unanswered: outcome.unanswered,
            scheduled: outcome.scheduled,
            offered_per_sec: None,
            round_trips_per_sec: rate,
            mean_us,
            p50_us: quantile(0.5),
            p99_us: quantile(0.99),
            p999_us: quantile(0.999),
            max_us: outcome.latency.max(),
            little_connections: if seconds > 0.0 {
                mean_us / 1e6 * (outcome.measured_round_trips + outcome.unanswered) as f64 / seconds
            } else {
                0.0
            },
            fairness: Fairness::of(&outcome.rounds_per_connection),
            failed: outcome.failed(),
            failed_in_window: outcome.failed_in_window,
            mismatches: outcome.mismatches,
            failures: outcome.failures.clone(),
        }
    }

    /// Little's law for a closed loop: with every connection always waiting
    /// for exactly one echo, mean latency × throughput = connections. Over a
    /// window of T seconds, the throughput that makes this exact counts
    /// every round the window saw, answered or still in flight at its end
    /// ((answered + unanswered) / T); it differs from the answered rate by
    /// about one round per connection. A report that breaks the law has
    /// lost rounds (or time) somewhere.
    pub fn little_holds(&self) -> bool {
        let expected = self.in_flight();
        (self.little_connections - expected).abs() <= LITTLE_TOLERANCE * expected
    }

    /// Connections that had a round in flight all through the window: the
    /// ones that did not fail before it closed (a failed one stops waiting).
    pub fn in_flight(&self) -> f64 {
        self.connections
            .saturating_sub(self.failed_in_window as usize) as f64
    }

    /// The error a closed-loop run fails with when Little's law does not hold.
    pub fn little_error(&self) -> String {
        format!(
            "Little's law does not hold: mean latency {:.0} µs × {:.0} rounds/s (answered and unanswered) = {:.1} connections in flight, but {} were open (tolerance {:.0}%): rounds or time went uncounted",
            self.mean_us,
            (self.answered + self.unanswered) as f64 / self.seconds.max(1e-9),
            self.little_connections,
            self.in_flight(),
            LITTLE_TOLERANCE * 100.0
        )
    }

    pub fn line(&self) -> String {
        let offered = self
            .offered_per_sec
            .map_or_else(String::new, |rate| format!("offered {rate:.0}/s, "));
        format!(
            "{:>5} conns × {:>4} B: {offered}{:>7.0} round trips/s, mean {:.0} µs, p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs; W×λ {:.1}; rounds/conn min {} median {} max {}, Jain {:.3}, {} idle; {} unanswered at the end, {} failed, {} mismatched bytes{}",
            self.connections,
            self.size,
            self.round_trips_per_sec,
            self.mean_us,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.little_connections,
            self.fairness.min,
            self.fairness.median,
            self.fairness.max,
            self.fairness.jain,
            self.fairness.idle,
            self.unanswered,
            self.failed,
            self.mismatches,
            failures_note(&self.failures)
        )
    }
}

/// Connections held open.
#[derive(Clone, Debug, Serialize)]
pub struct HoldReport {
    pub connections: usize,
    pub served: u64,
    pub failed: u64,
    pub mismatches: u64,
    /// From the first connect until every connection had its echo.
    pub all_served_secs: f64,
    pub server: Option<ProcStats>,
    pub failures: BTreeMap<String, u64>,
}

impl HoldReport {
    pub fn line(&self) -> String {
        let server = self.server.map_or_else(String::new, |stats| {
            format!(
                "; server: {:.1} MiB resident, {} threads, {} open descriptors",
                stats.rss_kib as f64 / 1024.0,
                stats.threads,
                stats.open_fds
            )
        });
        format!(
            "hold {} connections: {} served, {} failed, the last settled after {:.2} s, {} mismatched bytes{server}{}",
            self.connections,
            self.served,
            self.failed,
            self.all_served_secs,
            self.mismatches,
            failures_note(&self.failures)
        )
    }
}

/// Connect–echo–close cycles.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnReport {
    pub cycles: u64,
    pub concurrency: usize,
    pub served: u64,
    pub failed: u64,
    pub mismatches: u64,
    pub seconds: f64,
    pub before: Option<ProcStats>,
    pub after: Option<ProcStats>,
    pub failures: BTreeMap<String, u64>,
}

impl ChurnReport {
    pub fn line(&self) -> String {
        let server = match (self.before, self.after) {
            (Some(before), Some(after)) => format!(
                "; server descriptors {} → {}, threads {} → {}",
                before.open_fds, after.open_fds, before.threads, after.threads
            ),
            _ => String::new(),
        };
        format!(
            "churn {} cycles ({} at a time) in {:.2} s: {} served, {} failed, {} mismatched bytes{server}{}",
            self.cycles,
            self.concurrency,
            self.seconds,
            self.served,
            self.failed,
            self.mismatches,
            failures_note(&self.failures)
        )
    }
}

fn failures_note(failures: &BTreeMap<String, u64>) -> String {
    if failures.is_empty() {
        return String::new();
    }
    let list: Vec<String> = failures
        .iter()
        .map(|(reason, count)| format!("{count}× {reason}"))
        .collect();
    format!(" ({})", list.join(", "))
}
