//! Hold and churn runs with the server's /proc readings around them: one
//! implementation for the `hold` and `churn` commands and for the suite.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::engine::{self, Mode, Plan};
use crate::proc_stats;
use crate::report::{ChurnReport, HoldReport};

/// Opens `plan.connections` connections, one echo each, and reads the
/// server's stats while they are all still open. The connections are
/// returned open; dropping them closes them.
pub fn hold(
    plan: &Plan,
    server_pid: Option<u32>,
    tick: impl FnMut(u64),
) -> Result<(HoldReport, Vec<OwnedFd>)> {
    let plan = Plan {
        mode: Mode::Hold,
        ..plan.clone()
    };
    let mut outcome = engine::run(&plan, tick)?;
    let server = server_pid.map(proc_stats::read).transpose()?;
    let report = HoldReport {
        connections: plan.connections,
        served: outcome.served,
        failed: outcome.failed(),
        mismatches: outcome.mismatches,
        all_served_secs: outcome.all_served_after.as_secs_f64(),
        server,
        failures: outcome.failures.clone(),
    };
    Ok((report, std::mem::take(&mut outcome.held)))
}

/// `cycles` connect–echo–close cycles, `plan.connections` at a time, with
/// the server's stats before and after (each once they stopped changing:
/// a server's threads exit a moment after their clients leave).
pub fn churn(
    plan: &Plan,
    cycles: u64,
    server_pid: Option<u32>,
    tick: impl FnMut(u64),
) -> Result<ChurnReport> {
    let settled = |pid| proc_stats::settled(pid, Duration::from_secs(3));
    let before = server_pid.map(settled).transpose()?;
    let started = Instant::now();
    let outcome = engine::run(
        &Plan {
            mode: Mode::Churn { cycles },
            ..plan.clone()
        },
        tick,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let after = server_pid.map(settled).transpose()?;
    Ok(ChurnReport {
        cycles,
        concurrency: plan.connections,
        served: outcome.served,
        failed: outcome.failed(),
        mismatches: outcome.mismatches,
        seconds,
        before,
        after,
        failures: outcome.failures.clone(),
    })
}
