//! What the suite writes for the book: the Markdown tables of
//! docs/src/generated/bench.md, the summary sentences the chapter opens
//! with (bench-summary.md), and the charts (bench-*.svg).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::charts::{self, Chart, Series};
use crate::limits;
use crate::memory::Cost;
use crate::report::{ChurnReport, HoldReport, LoadReport};
use crate::servers::{FORK, LESSON4, LESSON5, Peer, TOKIO};
use crate::suite::{Point, Scale, TARGET_CONNECTIONS, TARGET_SIZE, mib, target_point};

pub fn limits_table(limits: &[limits::Limit]) -> String {
    let mut md = String::from(
        "## Limits on threads and processes of this machine\n\nA server that spends a thread (or a process) per client stops at the one that leaves the least room once what is in use is taken off; they were read from this machine, not assumed.\n\n| limit | read from | value | in use | what it bounds |\n|---|---|---:|---:|---|\n",
    );
    for limit in limits {
        let _ = writeln!(
            md,
            "| `{}` | `{}` | {} | {} | {} |",
            limit.name, limit.source, limit.value_text, limit.in_use_text, limit.meaning
        );
    }
    md
}

pub fn closed_loop_table(scale: &Scale, points: &[Point]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Closed loop (median of {} runs of {} s each)\n\nEach connection sends a message, waits for its whole echo and sends the next. Every round counts: one still unanswered when the window closes is recorded at its age. *W×λ* is mean latency × throughput, which Little's law says must equal the connections (each always has one round in flight); a run more than 10% off fails. Over a finite window the law is exact when the throughput counts every round the window saw, the ones still unanswered at its end too; that is about one round per connection more than the answered rounds the *round trips/s* column counts. A round sent before the window opened counts from the opening (what comes before is warm-up). Fairness: round trips per connection in the window (min / median / max), Jain's index (1 = all equal), and connections that completed none.\n",
        scale.repeats, scale.seconds
    );
    md.push_str("| server | conns | msg | round trips/s | mean µs | p50 µs | p99 µs | p99.9 µs | W×λ | rounds/conn min / med / max | Jain | idle | failed | mismatched bytes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for point in points {
        let r = &point.report;
        let _ = writeln!(
            md,
            "| {} | {} | {} B | {:.0} | {:.0} | {} | {} | {} | {:.1}{} | {} / {} / {} | {:.3} | {} | {} | {} |",
            point.peer.label,
            r.connections,
            r.size,
            r.round_trips_per_sec,
            r.mean_us,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.little_connections,
            if point.little_ok { "" } else { " ✗" },
            r.fairness.min,
            r.fairness.median,
            r.fairness.max,
            r.fairness.jain,
            r.fairness.idle,
            r.failed,
            r.mismatches
        );
    }
    md
}

pub fn open_loop_table(scale: &Scale, open: &[(Peer, LoadReport)]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Open loop: {} connections, {} B, {} s per offered rate\n\nMessages go out on a fixed schedule whatever the server does (wrk2-style); a send that must wait for the previous echo goes out late, and its latency counts from when it was due, so a stall is charged to every message it delayed (coordinated omission corrected). *Unanswered* counts sends due in the window whose echo had not come back when it closed, recorded at their age.\n",
        scale.open_connections, TARGET_SIZE, scale.open_seconds
    );
    md.push_str("| server | offered/s | answered/s | mean µs | p50 µs | p99 µs | p99.9 µs | max µs | unanswered | failed | mismatched bytes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (peer, r) in open {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            peer.label,
            r.offered_per_sec.unwrap_or(0.0),
            r.round_trips_per_sec,
            r.mean_us,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.unanswered,
            r.failed,
            r.mismatches
        );
    }
    md
}

pub fn memory_table(costs: &[(Peer, Cost)]) -> String {
    let mut md = String::from(
        "## What a held connection costs\n\nA fresh server, then N connections opened and echoed once each, then held. The differences before → after: the server's memory (PSS summed over its processes, so pages a forking server shares count once), kernel stacks (`KernelStack` in /proc/meminfo: one per thread, which no RSS includes), page tables (`PageTables`: one set per process, in no RSS or PSS either), and TCP socket buffers (`mem` in /proc/net/sockstat, both ends: the load generator's sockets are on this machine too, so half is charged to the server). *Per connection* is their total over the connections the server served and holds, not the ones opened: a server that serves only some of the connections opened (ncat here) is not made cheaper by the ones it never served. Not in the total: the kernel's slab objects for each task (task_struct, mm_struct, files, sighand …) and each socket; the *slab* column is the change in `SUnreclaim` of /proc/meminfo, which holds them, but machine-wide and for both ends' sockets. Machine-wide readings include whatever else ran meanwhile. Median of the runs by cost per connection.\n\n| server | opened | served (held) | memory | kernel stacks | page tables | socket buffers (both ends) | per connection | slab (not in it) | main process RSS | threads | processes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut any_fell = false;
    for (peer, cost) in costs {
        let [stacks, tables, buffers, slab] = cost.fell();
        any_fell |= stacks || tables || buffers || slab;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} MiB | {} | {} | {} | **{:.1} KiB** | {} | {:.1} MiB | {} | {} |",
            peer.label,
            cost.connections,
            cost.served,
            cost.user_kib() / 1024.0,
            machine_wide_mib(cost.kernel_stack_kib(), stacks),
            machine_wide_mib(cost.page_tables_kib(), tables),
            machine_wide_mib(cost.tcp_buffers_kib(), buffers),
            cost.per_connection_kib(),
            machine_wide_mib(cost.slab_kib(), slab),
            mib(cost.after.rss_kib),
            cost.after.threads,
            cost.after.processes
        );
    }
    if any_fell {
        md.push_str(FELL_NOTE);
    }
    md
}

/// Explains a machine-wide reading shown as 0 because it fell.
const FELL_NOTE: &str = "\n† This machine-wide reading was lower after the connections than before: other programs (or the kernel, reclaiming what an earlier run left) freed more meanwhile than the held connections took. A fall says nothing about the server, so it is shown as 0, and counts as 0 in the total where the total includes it.\n";

/// A machine-wide change in MiB, marked † when the reading fell (then 0).
fn machine_wide_mib(kib: f64, fell: bool) -> String {
    let mark = if fell { " †" } else { "" };
    format!("{:.1} MiB{mark}", kib / 1024.0)
}

pub fn backlog_table(scale: &Scale, backlogs: &[(u32, HoldReport)]) -> String {
    if backlogs.is_empty() {
        return String::new();
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Lesson 4's original backlog of 10: {} clients connecting at once\n\nA client counts as failed when it got no echo within {} s.\n\n| backlog | served | failed | last client served or given up after |\n|---:|---:|---:|---:|",
        scale.backlog_clients, scale.backlog_patience
    );
    for (backlog, report) in backlogs {
        let _ = writeln!(
            md,
            "| {backlog} | {} | {} | {:.2} s |",
            report.served, report.failed, report.all_served_secs
        );
    }
    md
}

pub fn churn_table(scale: &Scale, churns: &[(Peer, ChurnReport)]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Churn: {} connect–echo–close cycles, 50 at a time\n\n| server | seconds | failed | mismatched bytes | descriptors before → after | threads before → after |\n|---|---:|---:|---:|---:|---:|",
        scale.churn
    );
    for (peer, churn) in churns {
        let (fds, threads) = match (churn.before, churn.after) {
            (Some(b), Some(a)) => (
                format!("{} → {}", b.open_fds, a.open_fds),
                format!("{} → {}", b.threads, a.threads),
            ),
            _ => (String::new(), String::new()),
        };
        let _ = writeln!(
            md,
            "| {} | {:.2} | {} | {} | {fds} | {threads} |",
            peer.label, churn.seconds, churn.failed, churn.mismatches
        );
    }
    md
}

pub fn draw_charts(
    out_dir: &Path,
    scale: &Scale,
    points: &[Point],
    open: &[(Peer, LoadReport)],
) -> Result<()> {
    let mut peers: Vec<Peer> = points.iter().map(|p| p.peer).collect();
    peers.dedup();
    let mut throughput = Vec::new();
    let mut p99 = Vec::new();
    for &peer in &peers {
        for &size in scale.sizes {
            let at = || {
                points
                    .iter()
                    .filter(move |p| p.peer == peer && p.report.size == size)
            };
            let label = format!("{} · {size} B", peer.short());
            throughput.push(Series {
                label: label.clone(),
                points: at()
                    .map(|p| (p.report.connections as f64, p.report.round_trips_per_sec))
                    .collect(),
            });
            p99.push(Series {
                label,
                points: at()
                    .map(|p| (p.report.connections as f64, p.report.p99_us as f64))
                    .collect(),
            });
        }
    }
    charts::draw(
        &out_dir.join("bench-throughput.svg"),
        &Chart {
            title: "Closed loop: round trips per second",
            x_label: "connections (log scale)",
            y_label: "round trips/s",
            log_x: true,
            log_y: false,
        },
        &throughput,
    )?;
    charts::draw(
        &out_dir.join("bench-p99.svg"),
        &Chart {
            title: "Closed loop: p99 latency (every round counted)",
            x_label: "connections (log scale)",
            y_label: "p99 latency, µs (log scale)",
            log_x: true,
            log_y: true,
        },
        &p99,
    )?;
    for &peer in &peers {
        let at = || open.iter().filter(move |(p, _)| *p == peer);
        let series = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)]
            .into_iter()
            .map(|(name, q)| Series {
                label: name.into(),
                points: at()
                    .map(|(_, r)| {
                        let value = match q {
                            0.5 => r.p50_us,
                            0.99 => r.p99_us,
                            0.999 => r.p999_us,
                            _ => r.max_us,
                        };
                        (r.offered_per_sec.unwrap_or(0.0), value as f64)
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        let title = format!("Open loop: {}", peer.label);
        charts::draw(
            &out_dir.join(format!("bench-open-{}.svg", peer.key)),
            &Chart {
                title: &title,
                x_label: "offered round trips/s",
                y_label: "latency from the due time, µs (log scale)",
                log_x: false,
                log_y: true,
            },
            &series,
        )?;
    }
    Ok(())
}

/// The chapter's answer to "how far does thread-per-client go?", in
/// sentences whose figures come from this run.
pub fn summary(
    scale: &Scale,
    points: &[Point],
    costs: &[(Peer, Cost)],
    limits: &[limits::Limit],
) -> String {
    let mut md = String::new();
    let most = *scale.holds.last().unwrap_or(&0);
    let cost = |peer: Peer| {
        costs
            .iter()
            .find(|(p, c)| *p == peer && c.connections == most)
            .map(|(_, c)| *c)
    };
    let at = |peer: Peer| target_point(points, peer);
    if let Some(four) = cost(LESSON4) {
        let _ = writeln!(
            md,
            "- **Lesson 4 (a thread per client)** held {} connections ({} opened) with {} threads. Each connection cost {:.1} KiB: {:.1} KiB of the server's own memory, {:.1} KiB of kernel stack, {:.1} KiB of page tables and {:.1} KiB of socket buffers (its half), besides the kernel's slab objects per thread and socket, which this total leaves out.",
            four.served,
            four.connections,
            four.after.threads,
            four.per_connection_kib(),
            four.user_kib() / four.held(),
            four.kernel_stack_kib() / four.held(),
            four.page_tables_kib() / four.held(),
            four.tcp_buffers_kib() / 2.0 / four.held()
        );
    }
    if let Some(five) = cost(LESSON5) {
        let _ = writeln!(
            md,
            "- **Lesson 5 (epoll, one thread)** held {} connections ({} opened) in {:.1} MiB resident with {} thread: {:.1} KiB per connection, of which {:.1} KiB are socket buffers.",
            five.served,
            five.connections,
            mib(five.after.rss_kib),
            five.after.threads,
            five.per_connection_kib(),
            five.tcp_buffers_kib() / 2.0 / five.held()
        );
    }
    if let Some(fork) = cost(FORK) {
        let _ = writeln!(
            md,
            "- **A process per client** (fork) held {} connections ({} opened) with {} processes: {:.1} KiB per connection.",
            fork.served,
            fork.connections,
            fork.after.processes,
            fork.per_connection_kib()
        );
    }
    for peer in [LESSON4, LESSON5, TOKIO] {
        if let Some(r) = at(peer) {
            let _ = writeln!(
                md,
                "- At {TARGET_CONNECTIONS} busy connections × {TARGET_SIZE} B, **{}** made {:.0} round trips/s with a mean latency of {:.1} ms (p99 {:.1} ms); the least-served connection completed {} round trips, the most-served {} (Jain's index {:.3}, {} connections with none).",
                peer.label,
                r.round_trips_per_sec,
                r.mean_us / 1000.0,
                r.p99_us as f64 / 1000.0,
                r.fairness.min,
                r.fairness.max,
                r.fairness.jain,
                r.fairness.idle
            );
        }
    }
    let nofile = limits
        .iter()
        .find(|limit| limit.name.starts_with("RLIMIT_NOFILE"))
        .map_or("unknown", |limit| limit.value_text.as_str());
    if let Some((limit, threads)) = limits::lowest(limits) {
        let _ = writeln!(
            md,
            "- Where thread-per-client stops on this machine: at most {threads} threads, set by `{}` ({}{}), the limit that leaves the least room. Every design that keeps its clients' sockets in one process (lessons 4 and 5, tokio) also stops at {nofile} open descriptors (`RLIMIT_NOFILE`, hard limit), one per client; the fork server and ncat do not, since their parent closes each client's socket once a child holds it.",
            limit.name,
            limit.meaning,
            if limit.in_use_text.is_empty() {
                String::new()
            } else {
                format!("; {} in use when read", limit.in_use_text)
            }
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Snapshot;

    #[test]
    fn a_machine_wide_reading_that_fell_shows_as_zero_with_a_note() {
        let before = Snapshot {
            tcp_buffers_kib: 2048,
            kernel_stack_kib: 100,
            ..Snapshot::default()
        };
        let after = Snapshot {
            tcp_buffers_kib: 1024,
            kernel_stack_kib: 100 + 16 * 1000,
            threads: 1001,
            processes: 1,
            ..Snapshot::default()
        };
        let cost = Cost {
            connections: 1000,
            served: 1000,
            failed: 0,
            before,
            after,
        };
        let table = memory_table(&[(LESSON4, cost)]);
        assert!(!table.contains("-1.0"), "{table}");
        assert!(table.contains("| 0.0 MiB † |"), "{table}");
        assert!(table.contains("† This machine-wide reading"), "{table}");
        assert_eq!(cost.tcp_buffers_kib(), 0.0);
        assert_eq!(cost.per_connection_kib(), 16.0);
        let calm = Cost {
            after: Snapshot {
                tcp_buffers_kib: 4096,
                ..after
            },
            ..cost
        };
        assert!(!memory_table(&[(LESSON4, calm)]).contains('†'));
    }
}
