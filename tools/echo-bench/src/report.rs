//! The results of one run, as a struct that prints as a line of text or as
//! JSON (`--json`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::Outcome;
use crate::proc_stats::ProcStats;

/// A closed-loop load run.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub connections: usize,
    pub size: usize,
    pub seconds: f64,
    pub round_trips: u64,
    pub round_trips_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub failed: u64,
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
        LoadReport {
            connections,
            size,
            seconds,
            round_trips: outcome.round_trips,
            round_trips_per_sec: rate,
            p50_us: quantile(0.5),
            p99_us: quantile(0.99),
            p999_us: quantile(0.999),
            failed: outcome.failed(),
            mismatches: outcome.mismatches,
            failures: outcome.failures.clone(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{:>5} conns × {:>4} B: {:>9.0} round trips/s, p50 {} µs, p99 {} µs, p99.9 {} µs, {} round trips, {} failed, {} mismatched bytes{}",
            self.connections,
            self.size,
            self.round_trips_per_sec,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.round_trips,
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
