//! The targets, checked against what the suite measured: they are
//! `just bench`'s exit status, and the last table of the results.

use crate::memory::Cost;
use crate::report::{ChurnReport, LoadReport};
use crate::servers::{LESSON4, LESSON5, Peer, TOKIO};
use crate::suite::{Point, Scale, TARGET_CONNECTIONS, TARGET_SIZE, mib, target_point};

/// One target of the issue: what, what was measured, whether it held.
pub struct Target {
    pub what: String,
    pub measured: String,
    pub pass: bool,
}

/// The targets, each with what was measured and whether it held.
/// A target whose server could not run fails: nothing was shown.
pub fn targets(
    scale: &Scale,
    points: &[Point],
    open: &[(Peer, LoadReport)],
    costs: &[(Peer, Cost)],
    churns: &[(Peer, ChurnReport)],
) -> Vec<Target> {
    let mut targets = Vec::new();
    let most = *scale.holds.last().unwrap_or(&0);
    let cost = |peer: Peer, held: usize| {
        costs
            .iter()
            .find(|(p, c)| *p == peer && c.connections == held)
            .map(|(_, c)| *c)
    };
    let held5 = cost(LESSON5, most);
    targets.push(Target {
        what: format!("lesson 5 holds {most} connections, all served, server RSS < 30 MiB"),
        measured: held5.map_or("not measured".into(), |c| {
            format!(
                "{} of {} served, {} failed, {:.1} MiB",
                c.served,
                c.connections,
                c.failed,
                mib(c.after.rss_kib)
            )
        }),
        pass: held5.is_some_and(|c| {
            c.served as usize == most && c.failed == 0 && c.after.rss_kib < 30 * 1024
        }),
    });
    for &held in scale.holds {
        let (four, five) = (cost(LESSON4, held), cost(LESSON5, held));
        targets.push(Target {
            what: format!(
                "memory per connection at {held} held: lesson 5 ≤ 1/5 of lesson 4 (memory + kernel stacks + page tables + socket buffers)"
            ),
            measured: match (four, five) {
                (Some(four), Some(five)) => format!(
                    "{:.1} KiB vs {:.1} KiB",
                    five.per_connection_kib(),
                    four.per_connection_kib()
                ),
                _ => "not measured".into(),
            },
            pass: matches!((four, five), (Some(four), Some(five))
                if five.per_connection_kib() * 5.0 <= four.per_connection_kib()),
        });
    }
    let at = |peer: Peer| target_point(points, peer);
    let rate = |peer| at(peer).map(|r| r.round_trips_per_sec);
    for other in [LESSON4, TOKIO] {
        targets.push(Target {
            what: format!(
                "closed loop, {TARGET_SIZE} B, {TARGET_CONNECTIONS} connections: lesson 5 ≥ {} in round trips/s",
                other.short()
            ),
            measured: match (rate(LESSON5), rate(other)) {
                (Some(five), Some(them)) => format!("{five:.0} vs {them:.0}"),
                _ => "not measured".into(),
            },
            pass: matches!((rate(LESSON5), rate(other)), (Some(five), Some(them)) if five >= them),
        });
    }
    let jain = at(LESSON5).map(|r| r.fairness.jain);
    targets.push(Target {
        what: format!(
            "closed loop, {TARGET_SIZE} B, {TARGET_CONNECTIONS} connections: Jain's index ≥ 0.9 for lesson 5"
        ),
        measured: jain.map_or("not measured".into(), |j| format!("{j:.3}")),
        pass: jain.is_some_and(|j| j >= 0.9),
    });
    for peer in [LESSON4, LESSON5] {
        let reports: Vec<&LoadReport> = points
            .iter()
            .filter(|p| p.peer == peer)
            .map(|p| &p.report)
            .chain(open.iter().filter(|(p, _)| *p == peer).map(|(_, r)| r))
            .collect();
        let failed: u64 = reports.iter().map(|r| r.failed).sum();
        let mismatched: u64 = reports.iter().map(|r| r.mismatches).sum();
        targets.push(Target {
            what: format!(
                "{}: 0 failed connections, 0 mismatched bytes at every point (closed and open loop)",
                peer.short()
            ),
            measured: if reports.is_empty() {
                "not measured".into()
            } else {
                format!(
                    "{failed} failed, {mismatched} mismatched bytes over {} points",
                    reports.len()
                )
            },
            pass: !reports.is_empty() && failed == 0 && mismatched == 0,
        });
    }
    let broken: Vec<String> = points
        .iter()
        .filter(|p| !p.little_ok)
        .map(|p| {
            format!(
                "{} at {} × {} B",
                p.peer.short(),
                p.report.connections,
                p.report.size
            )
        })
        .collect();
    targets.push(Target {
        what: "Little's law (mean latency × throughput = connections ± 10%) holds in every closed-loop run".into(),
        measured: if broken.is_empty() {
            format!("{} points × {} runs checked", points.len(), scale.repeats)
        } else {
            format!("off at {}", broken.join(", "))
        },
        pass: broken.is_empty() && !points.is_empty(),
    });
    for (peer, churn) in churns {
        if let (Some(before), Some(after)) = (churn.before, churn.after) {
            targets.push(Target {
                what: format!(
                    "{}: after {} churn cycles, descriptors and threads back to the start (±2), none failed",
                    peer.short(),
                    churn.cycles
                ),
                measured: format!(
                    "descriptors {} → {}, threads {} → {}, {} failed",
                    before.open_fds, after.open_fds, before.threads, after.threads, churn.failed
                ),
                pass: after.open_fds.abs_diff(before.open_fds) <= 2
                    && after.threads.abs_diff(before.threads) <= 2
                    && churn.failed == 0,
            });
        }
    }
    targets
}
