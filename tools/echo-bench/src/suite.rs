//! `just bench`: the whole measurement, end to end.
//!
//! Starts every server design in turn (lesson 4, lesson 5, the
//! fork-per-client and tokio servers of tools/, and ncat), each on a free
//! loopback port and pinned to the load generator's CPU, and measures:
//! closed-loop round trips at every load point (median of several runs,
//! each checked against Little's law), fairness per point, an open-loop
//! sweep of offered rates (latency from each send's due time), and what a
//! held connection costs in memory, kernel stacks and socket buffers. Then
//! lesson 4's original backlog of 10 against a burst of clients, and churn.
//! It prints the tables, writes them into the book's generated files (quick
//! mode writes under the target directory instead), and exits non-zero when
//! a target of the issue does not hold.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::unistd::Pid;

use crate::charts::{self, Chart, Series};
use crate::engine::{self, Accounting, Mode, Plan};
use crate::limits;
use crate::memory::{self, Cost};
use crate::report::{ChurnReport, HoldReport, LoadReport};
use crate::runs;
use crate::servers::{self, FORK, LESSON4, LESSON5, Peer, Server, TOKIO};

/// What one run of the suite covers.
struct Scale {
    connections: &'static [usize],
    sizes: &'static [usize],
    repeats: usize,
    seconds: f64,
    /// Open loop: offered round trips per second, on `open_connections`.
    rates: &'static [f64],
    open_connections: usize,
    open_seconds: f64,
    /// Held connections for the memory table; the last is the target's.
    holds: &'static [usize],
    backlog_clients: usize,
    /// How long a client of the backlog experiment may wait, in seconds:
    /// long enough that what fails is the kernel's doing, not this limit.
    backlog_patience: u64,
    churn: u64,
    /// A connection that makes no progress for this long has failed.
    stall: Duration,
}

const FULL: Scale = Scale {
    connections: &[1, 10, 100, 1000],
    sizes: &[64, 4096],
    repeats: 3,
    seconds: 2.0,
    rates: &[2_000.0, 5_000.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0],
    open_connections: 100,
    open_seconds: 2.0,
    holds: &[1000, 10_000],
    backlog_clients: 1000,
    backlog_patience: 70,
    churn: 10_000,
    stall: Duration::from_secs(15),
};

const QUICK: Scale = Scale {
    connections: &[10, 1000],
    sizes: &[64],
    repeats: 1,
    seconds: 1.0,
    rates: &[5_000.0, 20_000.0],
    open_connections: 100,
    open_seconds: 0.5,
    holds: &[1000],
    backlog_clients: 100,
    backlog_patience: 5,
    churn: 1000,
    stall: Duration::from_secs(4),
};

/// The closed-loop point the speed and fairness targets name.
const TARGET_CONNECTIONS: usize = 1000;
const TARGET_SIZE: usize = 64;

/// A closed-loop point: the median run, and whether every run of it held
/// Little's law.
struct Point {
    peer: Peer,
    report: LoadReport,
    little_ok: bool,
}

/// One target of the issue: what, what was measured, whether it held.
struct Target {
    what: String,
    measured: String,
    pass: bool,
}

/// Runs the suite; returns whether every target held.
pub fn run(quick: bool) -> Result<bool> {
    let scale = if quick { &QUICK } else { &FULL };
    STALL.with(|stall| stall.set(scale.stall));
    let root = workspace_bin::workspace_root().to_path_buf();
    let out_dir = if quick {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("bench-quick")
    } else {
        root.join("docs/src/generated")
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let load_before = loadavg();
    // Read before pinning: pinned, this process sees one CPU.
    let machine = machine();
    let pinned = servers::pin(Pid::from_raw(0));
    let mut md = String::new();
    writeln!(
        md,
        "Measured on {machine} by `just bench{}`.\n",
        if quick { " quick" } else { "" }
    )?;
    if pinned {
        writeln!(
            md,
            "Every server and the load generator ran on the same CPU (CPU 0): on a small virtual machine, wake-ups that cross CPUs swing loopback figures by 2× or more from run to run, and one CPU makes the designs share the same budget. The tokio runtime, started on one CPU, runs one worker thread.\n"
        )?;
    } else {
        writeln!(
            md,
            "Pinning to one CPU was not allowed here; figures may vary more between runs.\n"
        )?;
    }
    println!("{}", md.trim_end());

    // ---- which servers can run here ----
    let mut peers: Vec<(Peer, PathBuf)> = Vec::new();
    for peer in servers::ALL {
        match peer.locate() {
            Ok(path) => peers.push((peer, path)),
            Err(err) => {
                let note = format!("{} is skipped: {err:#}.", peer.label);
                println!("{note}");
                writeln!(md, "{note}\n")?;
            }
        }
    }
    let limits = limits::thread_limits();
    let table = limits_table(&limits);
    println!("\n{}", table.trim_end());
    writeln!(md, "{table}")?;

    // ---- closed loop ----
    let mut points: Vec<Point> = Vec::new();
    for (peer, path) in &peers {
        let server = servers::start(peer, path, 4096)?;
        for &size in scale.sizes {
            for &connections in scale.connections {
                let mut runs = Vec::new();
                let mut little_ok = true;
                for _ in 0..scale.repeats {
                    let plan = plan(
                        server.addr,
                        connections,
                        size,
                        Mode::Load {
                            duration: Duration::from_secs_f64(scale.seconds),
                        },
                    );
                    let report = LoadReport::new(connections, size, &engine::run(&plan, |_| {})?);
                    if !report.little_holds() {
                        little_ok = false;
                        println!("  {}: {}", peer.short(), report.little_error());
                    }
                    runs.push(report);
                }
                let report = median(runs);
                println!("{:<42} {}", peer.label, report.line());
                points.push(Point {
                    peer: *peer,
                    report,
                    little_ok,
                });
            }
        }
    }
    writeln!(md, "{}", closed_loop_table(scale, &points))?;

    // ---- open loop ----
    let mut open: Vec<(Peer, LoadReport)> = Vec::new();
    for (peer, path) in &peers {
        let server = servers::start(peer, path, 4096)?;
        for &rate in scale.rates {
            let mode = Mode::Open {
                rate,
                duration: Duration::from_secs_f64(scale.open_seconds),
            };
            let plan = plan(server.addr, scale.open_connections, TARGET_SIZE, mode);
            let mut report = LoadReport::new(
                scale.open_connections,
                TARGET_SIZE,
                &engine::run(&plan, |_| {})?,
            );
            report.offered_per_sec = Some(rate);
            println!("{:<42} {}", peer.label, report.line());
            open.push((*peer, report));
        }
    }
    writeln!(md, "{}", open_loop_table(scale, &open))?;

    // ---- memory per held connection ----
    let mut costs: Vec<(Peer, Cost)> = Vec::new();
    for (peer, path) in &peers {
        for &held in scale.holds {
            let mut runs = Vec::new();
            for _ in 0..scale.repeats {
                runs.push(hold_cost(peer, path, held)?);
            }
            runs.sort_by(|a, b| a.per_connection_kib().total_cmp(&b.per_connection_kib()));
            let cost = runs.swap_remove(runs.len() / 2);
            println!(
                "{:<42} hold {held}: {} served, {:.1} KiB per connection (memory {:.0} KiB, kernel stacks {:.0} KiB, socket buffers {:.0} KiB for both ends), main process RSS {:.1} MiB, {} threads, {} processes",
                peer.label,
                cost.served,
                cost.per_connection_kib(),
                cost.user_kib(),
                cost.kernel_stack_kib(),
                cost.tcp_buffers_kib(),
                mib(cost.after.rss_kib),
                cost.after.threads,
                cost.after.processes
            );
            costs.push((*peer, cost));
        }
    }
    writeln!(md, "{}", memory_table(&costs))?;

    // ---- lesson 4's backlog, churn ----
    let mut churns: Vec<(Peer, ChurnReport)> = Vec::new();
    let mut backlogs: Vec<(u32, HoldReport)> = Vec::new();
    for (peer, path) in &peers {
        if *peer == LESSON4 {
            let patience = Duration::from_secs(scale.backlog_patience);
            for backlog in [10, 4096] {
                let server = servers::start(peer, path, backlog)?;
                let report = hold(server.addr, scale.backlog_clients, patience)?;
                println!("lesson 4, --backlog {backlog}: {}", report.line());
                backlogs.push((backlog, report));
            }
        }
        if *peer == LESSON4 || *peer == LESSON5 {
            let server = servers::start(peer, path, 4096)?;
            let report = churn(&server, scale.churn)?;
            println!("{}: {}", peer.label, report.line());
            churns.push((*peer, report));
        }
    }
    writeln!(md, "{}", backlog_table(scale, &backlogs))?;
    writeln!(md, "{}", churn_table(scale, &churns))?;

    // ---- targets ----
    let targets = targets(scale, &points, &open, &costs, &churns);
    writeln!(md, "## Targets\n")?;
    writeln!(
        md,
        "These are the suite's exit status: `just bench` fails when one does not hold.\n"
    )?;
    writeln!(md, "| target | measured | |")?;
    writeln!(md, "|---|---|---|")?;
    println!("\nTargets:");
    for target in &targets {
        let verdict = if target.pass { "PASS" } else { "FAIL" };
        writeln!(
            md,
            "| {} | {} | **{verdict}** |",
            target.what, target.measured
        )?;
        println!("  {verdict}  {}: {}", target.what, target.measured);
    }
    let load_after = loadavg();
    writeln!(
        md,
        "\nHow quiet the machine was: load average {load_before} at the start, {load_after} at the end (1, 5 and 15 minutes; /proc/loadavg)."
    )?;

    // ---- charts and files ----
    draw_charts(&out_dir, scale, &points, &open)?;
    let md_path = out_dir.join("bench.md");
    std::fs::write(&md_path, md).with_context(|| format!("cannot write {}", md_path.display()))?;
    let summary_path = out_dir.join("bench-summary.md");
    std::fs::write(&summary_path, summary(scale, &points, &costs, &limits))
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    println!(
        "\nwrote bench.md, bench-summary.md and the charts (bench-*.svg) in {}",
        out_dir.display()
    );
    Ok(targets.iter().all(|target| target.pass))
}

fn plan(addr: std::net::SocketAddr, connections: usize, size: usize, mode: Mode) -> Plan {
    Plan {
        addr,
        connections,
        size,
        mode,
        stall_timeout: STALL.with(|stall| stall.get()),
        accounting: Accounting::EveryRound,
    }
}

thread_local! {
    /// The scale's stall timeout, for every plan of the run.
    static STALL: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::from_secs(15)) };
}

/// Holds `connections` connections; a client that waits longer than
/// `patience` for its echo counts as failed.
fn hold(addr: std::net::SocketAddr, connections: usize, patience: Duration) -> Result<HoldReport> {
    let plan = Plan {
        stall_timeout: patience,
        ..plan(addr, connections, 64, Mode::Hold)
    };
    Ok(runs::hold(&plan, None, |_| {})?.0)
}

/// Starts a fresh `peer`, holds `held` connections (one echo each) and
/// reads what they cost.
fn hold_cost(peer: &Peer, path: &Path, held: usize) -> Result<Cost> {
    let server = servers::start(peer, path, 4096)?;
    // Sockets of the runs before (closing, in TIME-WAIT) free their buffers
    // over a moment; the machine-wide readings wait for that.
    let before = settled_snapshot(server.pid())?;
    let plan = plan(server.addr, held, 64, Mode::Hold);
    let (report, connections) = runs::hold(&plan, None, |_| {})?;
    let after = settled_snapshot(server.pid())?;
    drop(connections);
    drop(server);
    Ok(Cost {
        connections: held,
        served: report.served,
        failed: report.failed,
        before,
        after,
    })
}

/// A snapshot taken once the server's threads and processes and the
/// machine's TCP buffers stop changing (a forking server's last children
/// start a moment after their accept; closed sockets free their buffers a
/// moment after the close).
fn settled_snapshot(pid: u32) -> Result<memory::Snapshot> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut last = memory::snapshot(pid)?;
    let mut steady = 0;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = memory::snapshot(pid)?;
        let same = (now.threads, now.processes, now.tcp_buffers_kib)
            == (last.threads, last.processes, last.tcp_buffers_kib);
        steady = if same { steady + 1 } else { 0 };
        if steady >= 2 || std::time::Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

fn churn(server: &Server, cycles: u64) -> Result<ChurnReport> {
    runs::churn(
        &plan(server.addr, 50, 64, Mode::Churn { cycles }),
        cycles,
        Some(server.pid()),
        |_| {},
    )
}

/// The run with the median round-trip rate; failures and mismatches of
/// all runs are added up, so none is hidden by the median.
fn median(mut runs: Vec<LoadReport>) -> LoadReport {
    let failed = runs.iter().map(|r| r.failed).sum();
    let mismatches = runs.iter().map(|r| r.mismatches).sum();
    runs.sort_by(|a, b| a.round_trips_per_sec.total_cmp(&b.round_trips_per_sec));
    let mut middle = runs.swap_remove(runs.len() / 2);
    middle.failed = failed;
    middle.mismatches = mismatches;
    middle
}

fn limits_table(limits: &[limits::Limit]) -> String {
    let mut md = String::from(
        "## Limits on threads and processes of this machine\n\nA server that spends a thread (or a process) per client stops at the lowest of these; they were read from this machine, not assumed.\n\n| limit | read from | value | what it bounds |\n|---|---|---:|---|\n",
    );
    for limit in limits {
        let _ = writeln!(
            md,
            "| `{}` | `{}` | {} | {} |",
            limit.name, limit.source, limit.value_text, limit.meaning
        );
    }
    md
}

fn closed_loop_table(scale: &Scale, points: &[Point]) -> String {
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

fn open_loop_table(scale: &Scale, open: &[(Peer, LoadReport)]) -> String {
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

fn memory_table(costs: &[(Peer, Cost)]) -> String {
    let mut md = String::from(
        "## What a held connection costs\n\nA fresh server, then N connections opened and echoed once each, then held. The differences before → after: the server's memory (PSS summed over its processes, so pages a forking server shares count once), kernel stacks (`KernelStack` in /proc/meminfo: one per thread, which no RSS includes), and TCP socket buffers (`mem` in /proc/net/sockstat, both ends: the load generator's sockets are on this machine too, so half is charged to the server). Machine-wide readings include whatever else ran meanwhile. Median of the runs by cost per connection.\n\n| server | held | served | memory | kernel stacks | socket buffers (both ends) | per connection | main process RSS | threads | processes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (peer, cost) in costs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | **{:.1} KiB** | {:.1} MiB | {} | {} |",
            peer.label,
            cost.connections,
            cost.served,
            cost.user_kib() / 1024.0,
            cost.kernel_stack_kib() / 1024.0,
            cost.tcp_buffers_kib() / 1024.0,
            cost.per_connection_kib(),
            mib(cost.after.rss_kib),
            cost.after.threads,
            cost.after.processes
        );
    }
    md
}

fn backlog_table(scale: &Scale, backlogs: &[(u32, HoldReport)]) -> String {
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

fn churn_table(scale: &Scale, churns: &[(Peer, ChurnReport)]) -> String {
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

/// The targets, each with what was measured and whether it held.
/// A target whose server could not run fails: nothing was shown.
fn targets(
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
                "memory per connection at {held} held: lesson 5 ≤ 1/5 of lesson 4 (memory + kernel stacks + socket buffers)"
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
    let at = |peer: Peer| {
        points
            .iter()
            .find(|p| {
                p.peer == peer
                    && p.report.connections == TARGET_CONNECTIONS
                    && p.report.size == TARGET_SIZE
            })
            .map(|p| &p.report)
    };
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

fn draw_charts(
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
fn summary(
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
    let at = |peer: Peer| {
        points
            .iter()
            .find(|p| {
                p.peer == peer
                    && p.report.connections == TARGET_CONNECTIONS
                    && p.report.size == TARGET_SIZE
            })
            .map(|p| &p.report)
    };
    if let Some(four) = cost(LESSON4) {
        let _ = writeln!(
            md,
            "- **Lesson 4 (a thread per client)** held {} connections ({} served) with {} threads. Each connection cost {:.1} KiB: {:.1} KiB of the server's own memory, {:.1} KiB of kernel stack and {:.1} KiB of socket buffers (its half).",
            four.connections,
            four.served,
            four.after.threads,
            four.per_connection_kib(),
            four.user_kib() / four.connections as f64,
            four.kernel_stack_kib() / four.connections as f64,
            four.tcp_buffers_kib() / 2.0 / four.connections as f64
        );
    }
    if let Some(five) = cost(LESSON5) {
        let _ = writeln!(
            md,
            "- **Lesson 5 (epoll, one thread)** held {} connections ({} served) in {:.1} MiB resident with {} thread: {:.1} KiB per connection, of which {:.1} KiB are socket buffers.",
            five.connections,
            five.served,
            mib(five.after.rss_kib),
            five.after.threads,
            five.per_connection_kib(),
            five.tcp_buffers_kib() / 2.0 / five.connections as f64
        );
    }
    if let Some(fork) = cost(FORK) {
        let _ = writeln!(
            md,
            "- **A process per client** (fork) held {} connections ({} served) with {} processes: {:.1} KiB per connection.",
            fork.connections,
            fork.served,
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
            "- Where thread-per-client stops on this machine: at most {threads} threads, set by `{}` ({}), less what is already in use; and at {nofile} open descriptors per process (`RLIMIT_NOFILE`, hard limit), one per client, which binds every design here, lesson 5's too.",
            limit.name, limit.meaning
        );
    }
    md
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into())
}

/// "AMD EPYC, 2 cores, Linux 6.18.44" and the date.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB of memory", kib as f64 / 1024.0 / 1024.0)
        });
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{model}, {cores} cores{memory}, Linux {}, on {date}",
        kernel.trim()
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
