//! echo-bench: a load generator for TCP echo servers.
//!
//! `load` runs closed-loop round trips on N connections, `open` offers a
//! fixed rate (open loop, wrk2-style), `hold` opens N connections and keeps
//! them, `churn` connects, echoes and closes again and again, and `suite`
//! is what `just bench` runs: every server design at every load point, into
//! the book's tables and charts, with the targets as its exit status. One
//! thread and one epoll loop drive every connection.

mod charts;
mod engine;
mod limits;
mod memory;
mod proc_stats;
mod report;
mod runs;
mod servers;
mod suite;
mod targets;
mod writeup;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use engine::{Accounting, Mode, Plan};
use report::LoadReport;

#[derive(Parser, Debug)]
#[command(
    name = "echo-bench",
    version,
    about = "A load generator for TCP echo servers (loopback only)"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Closed loop: each connection sends a message, waits for its whole
    /// echo, checks every byte, and sends the next.
    Load {
        #[command(flatten)]
        common: Common,
        /// Message size in bytes.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
        size: u64,
        /// How long to measure, in seconds (from the moment all connections are up).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Instead of a duration: exactly this many round trips per connection.
        #[arg(long)]
        rounds: Option<u64>,
        /// Count only the rounds answered inside the window, as this tool
        /// once did: the Little's-law check then fails on a server that
        /// starves connections (kept to show what the check catches).
        #[arg(long, hide = true)]
        answered_only: bool,
    },
    /// Open loop, wrk2-style: sends at a fixed rate whatever the server
    /// does, and counts each round's latency from when its send was due.
    Open {
        #[command(flatten)]
        common: Common,
        /// Message size in bytes.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
        size: u64,
        /// Round trips per second offered, over all connections.
        #[arg(long)]
        rate: f64,
        /// How long to measure, in seconds (from the moment all connections are up).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Opens the connections, checks that each is served (one echo), holds
    /// them, and reports the server's memory and threads.
    Hold {
        #[command(flatten)]
        common: Common,
        /// The server's process id, to read its memory and threads from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// How long to hold the connections before closing them, in seconds.
        #[arg(long, default_value_t = 0.0)]
        hold_seconds: f64,
    },
    /// Connect, echo, close, CYCLES times, CONNECTIONS at a time; reports the
    /// server's descriptors and threads before and after.
    Churn {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        cycles: u64,
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// The whole benchmark of `just bench`: starts the servers itself.
    Suite {
        /// A short run (under a minute) that writes to target/bench-quick/.
        #[arg(long)]
        quick: bool,
    },
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The echo server's address.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8890")]
    addr: SocketAddr,
    /// Connections open at the same time.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    connections: u64,
    /// A connection that makes no progress for this many seconds has failed.
    #[arg(long, default_value_t = 10.0)]
    stall_seconds: f64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    raise_open_files_limit();
    match command {
        Command::Load {
            common,
            size,
            seconds,
            rounds,
            answered_only,
        } => {
            let mode = match rounds {
                Some(rounds) => Mode::Rounds { rounds },
                None => Mode::Load {
                    duration: Duration::from_secs_f64(seconds.max(0.01)),
                },
            };
            let mut plan = plan(&common, size as usize, mode);
            if answered_only {
                plan.accounting = Accounting::AnsweredOnly;
            }
            let outcome = engine::run(&plan, progress(&common))?;
            let mut report = LoadReport::new(common.connections as usize, size as usize, &outcome);
            if rounds.is_some() {
                // No time window: every round trip counts, and there is no rate.
                report.seconds = 0.0;
                report.round_trips_per_sec = 0.0;
                report.little_connections = 0.0;
                return print(&common, &report, &report.line());
            }
            print(&common, &report, &report.line())?;
            if !report.little_holds() {
                bail!("{}", report.little_error());
            }
            Ok(())
        }
        Command::Open {
            common,
            size,
            rate,
            seconds,
        } => {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number of round trips per second, not {rate}");
            }
            let mode = Mode::Open {
                rate,
                duration: Duration::from_secs_f64(seconds.max(0.01)),
            };
            let outcome = engine::run(&plan(&common, size as usize, mode), progress(&common))?;
            let mut report = LoadReport::new(common.connections as usize, size as usize, &outcome);
            report.offered_per_sec = Some(rate);
            report.little_connections = 0.0;
            print(&common, &report, &report.line())
        }
        Command::Hold {
            common,
            server_pid,
            hold_seconds,
        } => {
            let (report, held) = runs::hold(
                &plan(&common, 64, Mode::Hold),
                server_pid,
                progress(&common),
            )?;
            std::thread::sleep(Duration::from_secs_f64(hold_seconds.max(0.0)));
            drop(held);
            print(&common, &report, &report.line())
        }
        Command::Churn {
            common,
            cycles,
            server_pid,
        } => {
            let report = runs::churn(
                &plan(&common, 64, Mode::Churn { cycles }),
                cycles,
                server_pid,
                progress(&common),
            )?;
            print(&common, &report, &report.line())
        }
        Command::Suite { quick } => {
            if suite::run(quick)? {
                Ok(())
            } else {
                bail!("a target of the benchmark does not hold (see FAIL above)")
            }
        }
    }
}

fn plan(common: &Common, size: usize, mode: Mode) -> Plan {
    Plan {
        addr: common.addr,
        connections: common.connections as usize,
        size,
        mode,
        stall_timeout: Duration::from_secs_f64(common.stall_seconds.max(0.1)),
        accounting: Accounting::EveryRound,
    }
}

/// A progress callback: a spinner with the round trips so far on a
/// terminal, nothing otherwise (or with --json).
fn progress(common: &Common) -> impl FnMut(u64) {
    let bar = if common.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    };
    move |round_trips| {
        bar.set_message(format!("{round_trips} round trips"));
        bar.tick();
    }
}

fn print(common: &Common, report: &impl serde::Serialize, line: &str) -> Result<()> {
    if common.json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{line}");
    }
    Ok(())
}

/// Raises the soft open-files limit to the hard one: each connection is a
/// descriptor, and the usual soft limit of 1024 would stop a run early.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
