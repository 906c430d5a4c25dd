//! `just bench`: the whole measurement, end to end.
//!
//! Starts lesson 4's server (and, when `ncat` is installed, a
//! process-per-connection echo server: `ncat --exec /bin/cat` forks one `cat`
//! per client, the design that came before thread-per-client), runs every
//! load point several times and keeps the median, then holds 10,000
//! connections, shows what the original backlog of 10 does to 1,000 clients
//! connecting at once, and churns 10,000 connections. It prints the tables
//! and writes them, with the targets checked, into the book's
//! generated files (quick mode writes to target/bench-quick/ instead).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::charts::{self, Series};
use crate::engine::{self, Mode, Plan};
use crate::proc_stats::{self, ProcStats};
use crate::report::{ChurnReport, HoldReport, LoadReport};
use crate::runs;

/// What one run of the suite covers.
struct Scale {
    connections: &'static [usize],
    sizes: &'static [usize],
    repeats: usize,
    seconds: f64,
    hold: usize,
    backlog_clients: usize,
    /// How long a client of the backlog experiment may wait, in seconds:
    /// long enough that what fails is the kernel's doing, not this limit.
    backlog_patience: u64,
    churn: u64,
}

const FULL: Scale = Scale {
    connections: &[1, 10, 100, 1000],
    sizes: &[64, 4096],
    repeats: 3,
    seconds: 2.0,
    hold: 10_000,
    backlog_clients: 1000,
    backlog_patience: 70,
    churn: 10_000,
};

const QUICK: Scale = Scale {
    connections: &[1, 100],
    sizes: &[64],
    repeats: 1,
    seconds: 0.5,
    hold: 1000,
    backlog_clients: 100,
    backlog_patience: 10,
    churn: 1000,
};

/// An echo server under test.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

pub fn run(quick: bool) -> Result<()> {
    let scale = if quick { &QUICK } else { &FULL };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf();
    let out_dir = if quick {
        root.join("target/bench-quick")
    } else {
        root.join("docs/src/generated")
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let lesson4 = root.join("target/release/lesson4-server");
    if !lesson4.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p lesson4-tcp-reuseaddr` (`just bench` does)",
            lesson4.display()
        );
    }
    let machine = machine();
    let pinned = pin(Pid::from_raw(0));
    let mut md = String::new();
    writeln!(
        md,
        "Measured on {} by `just bench{}`.\n",
        machine,
        if quick { " quick" } else { "" }
    )?;
    if pinned {
        writeln!(
            md,
            "Server and load generator were pinned to the same CPU (CPU 0): on a small virtual machine, wake-ups that cross CPUs swing loopback figures by 2× or more from run to run.\n"
        )?;
    } else {
        writeln!(
            md,
            "Pinning to one CPU was not allowed here; figures may vary more between runs.\n"
        )?;
    }
    println!("{}", md.trim_end());

    let ncat = which("ncat");
    let mut kinds: Vec<&'static str> = vec!["lesson 4 (thread per client)"];
    if ncat.is_some() {
        kinds.push("ncat --exec cat (process per connection)");
    } else {
        let note = "ncat is not installed: the process-per-connection peer is skipped (`apt-get install ncat`).";
        println!("{note}");
        writeln!(md, "{note}\n")?;
    }

    // ---- closed-loop load ----
    let mut results: Vec<(&str, LoadReport)> = Vec::new();
    for &kind in &kinds {
        let server = start(kind, &lesson4, ncat.as_deref(), 4096)?;
        for &size in scale.sizes {
            for &connections in scale.connections {
                let mut runs = Vec::new();
                for _ in 0..scale.repeats {
                    let plan = plan(
                        server.addr,
                        connections,
                        size,
                        Mode::Load {
                            duration: Duration::from_secs_f64(scale.seconds),
                        },
                    );
                    let outcome = engine::run(&plan, |_| {})?;
                    runs.push(LoadReport::new(connections, size, &outcome));
                }
                let report = median(runs);
                println!("{kind:<42} {}", report.line());
                results.push((kind, report));
            }
        }
    }
    writeln!(
        md,
        "## Closed-loop round trips (median of {} runs of {} s each)\n",
        scale.repeats, scale.seconds
    )?;
    writeln!(
        md,
        "| server | connections | message | round trips/s | p50 µs | p99 µs | p99.9 µs | failed | mismatched bytes |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for (kind, r) in &results {
        writeln!(
            md,
            "| {kind} | {} | {} B | {:.0} | {} | {} | {} | {} | {} |",
            r.connections,
            r.size,
            r.round_trips_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.failed,
            r.mismatches
        )?;
    }

    // ---- hold, backlog, churn: lesson 4 only ----
    let server = start(kinds[0], &lesson4, None, 4096)?;
    let pid = server.child.id();
    let idle = proc_stats::read(pid)?;
    let held = hold(server.addr, scale.hold, Some(pid), Duration::from_secs(15))?;
    println!("lesson 4, --backlog 4096: {}", held.line());
    drop(server);

    let server = start(kinds[0], &lesson4, None, 10)?;
    let patience = Duration::from_secs(scale.backlog_patience);
    let backlog10 = hold(server.addr, scale.backlog_clients, None, patience)?;
    println!("lesson 4, --backlog 10:   {}", backlog10.line());
    drop(server);
    let server = start(kinds[0], &lesson4, None, 4096)?;
    let backlog4096 = hold(server.addr, scale.backlog_clients, None, patience)?;
    println!("lesson 4, --backlog 4096: {}", backlog4096.line());
    drop(server);

    let server = start(kinds[0], &lesson4, None, 4096)?;
    let churn = churn(server.addr, scale.churn, server.child.id())?;
    println!("lesson 4: {}", churn.line());
    drop(server);

    writeln!(md, "\n## Holding connections (lesson 4)\n")?;
    writeln!(
        md,
        "| | connections | served | failed | all served after | server resident memory | server threads |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    writeln!(
        md,
        "| idle server | 0 | | | | {:.1} MiB | {} |",
        mib(idle.rss_kib),
        idle.threads
    )?;
    if let Some(stats) = held.server {
        writeln!(
            md,
            "| `--backlog 4096` | {} | {} | {} | {:.2} s | {:.1} MiB | {} |",
            held.connections,
            held.served,
            held.failed,
            held.all_served_secs,
            mib(stats.rss_kib),
            stats.threads
        )?;
    }
    writeln!(
        md,
        "\n## The original backlog of 10: {} clients connecting at once\n\nA client counts as failed when it got no echo within {} s.\n",
        scale.backlog_clients, scale.backlog_patience
    )?;
    writeln!(
        md,
        "| backlog | served | failed | last client served or given up after |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|")?;
    for (backlog, report) in [(10, &backlog10), (4096, &backlog4096)] {
        writeln!(
            md,
            "| {backlog} | {} | {} | {:.2} s |",
            report.served, report.failed, report.all_served_secs
        )?;
    }
    writeln!(
        md,
        "\n## Churn: {} connect–echo–close cycles, {} at a time (lesson 4)\n",
        churn.cycles, churn.concurrency
    )?;
    writeln!(md, "| | open descriptors | threads |")?;
    writeln!(md, "|---|---:|---:|")?;
    if let (Some(before), Some(after)) = (churn.before, churn.after) {
        writeln!(md, "| before | {} | {} |", before.open_fds, before.threads)?;
        writeln!(md, "| after | {} | {} |", after.open_fds, after.threads)?;
    }
    writeln!(
        md,
        "\n{} cycles in {:.2} s, {} failed, {} mismatched bytes.",
        churn.served, churn.seconds, churn.failed, churn.mismatches
    )?;

    // ---- targets ----
    let targets = targets(scale, &results, &held, &churn, kinds.len() > 1);
    writeln!(md, "\n## Targets\n")?;
    writeln!(md, "| target | measured | |")?;
    writeln!(md, "|---|---|---|")?;
    println!("\nTargets:");
    for (target, measured, pass) in &targets {
        let verdict = if *pass { "PASS" } else { "FAIL" };
        writeln!(md, "| {target} | {measured} | **{verdict}** |")?;
        println!("  {verdict}  {target}: {measured}");
    }

    // ---- charts ----
    let mut throughput = Vec::new();
    let mut p99 = Vec::new();
    for &kind in &kinds {
        for &size in scale.sizes {
            let points = results.iter().filter(|(k, r)| *k == kind && r.size == size);
            let label = format!("{} · {size} B", kind.split(" (").next().unwrap_or(kind));
            throughput.push(Series {
                label: label.clone(),
                points: points
                    .clone()
                    .map(|(_, r)| (r.connections as f64, r.round_trips_per_sec))
                    .collect(),
            });
            p99.push(Series {
                label,
                points: points
                    .map(|(_, r)| (r.connections as f64, r.p99_us as f64))
                    .collect(),
            });
        }
    }
    charts::draw(
        &out_dir.join("bench-throughput.svg"),
        "Round trips per second",
        "round trips/s",
        &throughput,
    )?;
    charts::draw(
        &out_dir.join("bench-p99.svg"),
        "p99 latency",
        "p99 latency (µs)",
        &p99,
    )?;
    let md_path = out_dir.join("bench.md");
    std::fs::write(&md_path, md).with_context(|| format!("cannot write {}", md_path.display()))?;
    println!(
        "\nwrote {}, bench-throughput.svg and bench-p99.svg in {}",
        md_path.display(),
        out_dir.display()
    );
    Ok(())
}

fn plan(addr: SocketAddr, connections: usize, size: usize, mode: Mode) -> Plan {
    Plan {
        addr,
        connections,
        size,
        mode,
        stall_timeout: Duration::from_secs(15),
    }
}

/// Holds `connections` connections; a client that waits longer than
/// `patience` for its echo counts as failed.
fn hold(
    addr: SocketAddr,
    connections: usize,
    pid: Option<u32>,
    patience: Duration,
) -> Result<HoldReport> {
    let plan = Plan {
        stall_timeout: patience,
        ..plan(addr, connections, 64, Mode::Hold)
    };
    Ok(runs::hold(&plan, pid, |_| {})?.0)
}

fn churn(addr: SocketAddr, cycles: u64, pid: u32) -> Result<ChurnReport> {
    runs::churn(
        &plan(addr, 50, 64, Mode::Churn { cycles }),
        cycles,
        Some(pid),
        |_| {},
    )
}

/// The targets, each with what was measured and whether it held.
fn targets(
    scale: &Scale,
    results: &[(&str, LoadReport)],
    hold: &HoldReport,
    churn: &ChurnReport,
    with_peer: bool,
) -> Vec<(String, String, bool)> {
    let mut targets = Vec::new();
    let rss = hold
        .server
        .map_or(u64::MAX, |stats: ProcStats| stats.rss_kib);
    targets.push((
        format!(
            "{} connections held, each served, server under 200 MiB resident",
            scale.hold
        ),
        format!(
            "{} of {} served, {:.1} MiB",
            hold.served,
            hold.connections,
            mib(rss)
        ),
        hold.served as usize == scale.hold && hold.failed == 0 && rss < 200 * 1024,
    ));
    if let (Some(before), Some(after)) = (churn.before, churn.after) {
        targets.push((
            format!(
                "after {} churn cycles, descriptors and threads back to the start (±2)",
                churn.cycles
            ),
            format!(
                "descriptors {} → {}, threads {} → {}",
                before.open_fds, after.open_fds, before.threads, after.threads
            ),
            after.open_fds.abs_diff(before.open_fds) <= 2
                && after.threads.abs_diff(before.threads) <= 2
                && churn.failed == 0,
        ));
    }
    // The targets are the lesson's; the peer's failures show in the table.
    let lesson4 = || {
        results
            .iter()
            .filter(|(kind, _)| kind.starts_with("lesson 4"))
    };
    let failed: u64 = lesson4().map(|(_, r)| r.failed).sum();
    let mismatched: u64 = lesson4().map(|(_, r)| r.mismatches).sum();
    targets.push((
        "lesson 4: zero failed connections and zero byte mismatches at every load point".into(),
        format!("{failed} failed, {mismatched} mismatched bytes"),
        failed == 0 && mismatched == 0,
    ));
    if with_peer {
        for &size in scale.sizes {
            let rate = |kind_prefix: &str| {
                results
                    .iter()
                    .find(|(kind, r)| {
                        kind.starts_with(kind_prefix) && r.connections == 100 && r.size == size
                    })
                    .map_or(0.0, |(_, r)| r.round_trips_per_sec)
            };
            let (threads, processes) = (rate("lesson 4"), rate("ncat"));
            targets.push((
                format!("lesson 4 at least as fast as process-per-connection at 100 connections, {size} B"),
                format!("{threads:.0} vs {processes:.0} round trips/s"),
                threads >= processes,
            ));
        }
    }
    targets
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

/// Starts server `kind` on a free loopback port and waits until it accepts.
fn start(kind: &'static str, lesson4: &Path, ncat: Option<&Path>, backlog: u32) -> Result<Server> {
    let (mut child, addr) = if kind.starts_with("lesson 4") {
        let mut child = Command::new(lesson4)
            .args([
                "--bind",
                "127.0.0.1:0",
                "--backlog",
                &backlog.to_string(),
                "--quiet",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", lesson4.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            bail!("lesson4-server printed {line:?}, not its address")
        };
        (child, addr)
    } else {
        let ncat = ncat.context("ncat is not installed")?;
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(ncat)
            .args([
                "-l",
                "-k",
                "--max-conns",
                "20000",
                "--exec",
                "/bin/cat",
                "127.0.0.1",
                &addr.port().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", ncat.display()))?;
        (child, addr)
    };
    pin(Pid::from_raw(child.id() as i32));
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{kind} did not accept connections on {addr} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Server { child, addr })
}

/// Pins `pid` (0: this process) to CPU 0; false when not allowed.
fn pin(pid: Pid) -> bool {
    let mut cpus = CpuSet::new();
    cpus.set(0).is_ok() && sched_setaffinity(pid, &cpus).is_ok()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
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
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}, on {date}", kernel.trim())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
