//! `just bench`: the whole measurement, end to end.
//!
//! Starts every server design in turn (lesson 4, lesson 5, the
//! fork-per-client and tokio servers of tools/, and ncat), each on a free
//! loopback port and pinned to the load generator's CPU, and measures:
//! closed-loop round trips at every load point (median of several runs,
//! each checked against Little's law), fairness per point, an open-loop
//! sweep of offered rates (latency from each send's due time), and what a
//! held connection costs in memory, kernel stacks, page tables and socket buffers. Then
//! lesson 4's original backlog of 10 against a burst of clients, and churn.
//! It prints the tables, writes them into the book's generated files (quick
//! mode writes under the target directory instead), and exits non-zero when
//! a target of the issue does not hold.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::unistd::Pid;

use crate::engine::{self, Accounting, Mode, Plan};
use crate::limits;
use crate::memory::{self, Cost};
use crate::report::{ChurnReport, HoldReport, LoadReport};
use crate::runs;
use crate::servers::{self, LESSON4, LESSON5, Peer, Server};
use crate::targets::targets;
use crate::writeup::{
    backlog_table, churn_table, closed_loop_table, draw_charts, limits_table, memory_table,
    open_loop_table, summary,
};

/// What one run of the suite covers.
pub struct Scale {
    pub connections: &'static [usize],
    pub sizes: &'static [usize],
    pub repeats: usize,
    pub seconds: f64,
    /// Open loop: offered round trips per second, on `open_connections`.
    pub rates: &'static [f64],
    pub open_connections: usize,
    pub open_seconds: f64,
    /// Held connections for the memory table; the last is the target's.
    pub holds: &'static [usize],
    pub backlog_clients: usize,
    /// How long a client of the backlog experiment may wait, in seconds:
    /// long enough that what fails is the kernel's doing, not this limit.
    pub backlog_patience: u64,
    pub churn: u64,
    /// A connection that makes no progress for this long has failed.
    pub stall: Duration,
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
    stall: Duration::from_secs(10),
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
pub const TARGET_CONNECTIONS: usize = 1000;
pub const TARGET_SIZE: usize = 64;

/// A closed-loop point: the median run, and whether every run of it held
/// Little's law.
pub struct Point {
    pub peer: Peer,
    pub report: LoadReport,
    pub little_ok: bool,
}

/// `peer`'s closed-loop point at the targets' load (TARGET_CONNECTIONS ×
/// TARGET_SIZE B), which both the targets and the summary read.
pub fn target_point(points: &[Point], peer: Peer) -> Option<&LoadReport> {
    points
        .iter()
        .find(|p| {
            p.peer == peer
                && p.report.connections == TARGET_CONNECTIONS
                && p.report.size == TARGET_SIZE
        })
        .map(|p| &p.report)
}

/// Runs the suite; returns whether every target held.
pub fn run(quick: bool) -> Result<bool> {
    let scale = if quick { &QUICK } else { &FULL };
    STALL.with(|stall| stall.set(scale.stall));
    let root = workspace_bin::workspace_root();
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let out_dir = if quick {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("bench-quick")
    } else {
        root.join("docs/src/generated")
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let load_before = machine::load_average(3);
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
                "{:<42} hold {held}: {} served, {:.1} KiB per connection (memory {:.0} KiB, kernel stacks {:.0} KiB, page tables {:.0} KiB, socket buffers {:.0} KiB for both ends; slab {:.0} KiB not counted), main process RSS {:.1} MiB, {} threads, {} processes",
                peer.label,
                cost.served,
                cost.per_connection_kib(),
                cost.user_kib(),
                cost.kernel_stack_kib(),
                cost.page_tables_kib(),
                cost.tcp_buffers_kib(),
                cost.slab_kib(),
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
    let load_after = machine::load_average(3);
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

/// "AMD EPYC, 2 cores, 23 GiB of memory, Linux 6.18.44, on" the date.
fn machine() -> String {
    let memory =
        machine::memory_gib().map_or_else(String::new, |gib| format!(", {gib:.0} GiB of memory"));
    format!(
        "{}, {} cores{memory}, Linux {}, on {}",
        machine::cpu_model(),
        machine::cores(),
        machine::kernel(),
        machine::utc_date()
    )
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
