//! The NAT matrix: lesson 7's peers across every pair of NAT kinds, at 0%
//! and 10% loss, each trial in a lab of its own; and the birthday curve,
//! measured with plain sockets through a narrowed symmetric NAT.
//!
//! A trial starts `lesson7-rendezvous` and two `lesson7-peer`s in a fresh
//! [`Topology::p2p_scene`], reads each peer's `path: direct|birthday|relay`
//! line, types a line into the first peer (again each second, as a person
//! would, since the chat is plain UDP) and times its arrival at the other
//! (`[from NAME] …`). Trials run concurrently, in separate labs.
//!
//! `lab matrix` writes docs/src/generated/matrix.md and the charts beside
//! it; `lab matrix quick` writes the same under the target directory.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use plotters::prelude::*;
use testkit::Running;

use crate::p2p::{
    Behaviour, NARROW_BASE, Nat, PEER_PORT, RENDEZVOUS_IP, RENDEZVOUS_PORT, SITE1_PUBLIC,
    SITE2_PUBLIC,
};
use crate::{Lab, Topology};

/// How long one trial may take, all ways tried (the peers' own bounds are
/// seconds: direct, then birthday, then relay).
pub const TRIAL_DEADLINE: Duration = Duration::from_secs(60);
/// The loss rates of the matrix, in percent, on every link into the
/// internet router (so once per crossing of the internet).
pub const LOSSES: [u32; 2] = [0, 10];

/// Which way the peers found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Way {
    Direct,
    Birthday,
    Relay,
}

impl Way {
    fn parse(word: &str) -> Option<Way> {
        match word {
            "direct" => Some(Way::Direct),
            "birthday" => Some(Way::Birthday),
            "relay" => Some(Way::Relay),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Way::Direct => "direct",
            Way::Birthday => "birthday",
            Way::Relay => "relay",
        }
    }
}

/// A pair of NATs (and whether both peers sit behind the first one), with
/// what RFC 4787 predicts the peers can do.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    pub nat1: &'static str,
    pub nat2: &'static str,
    /// alice and carol, neighbours behind `nat1`, instead of alice and bob.
    pub neighbours: bool,
    pub predicted: Way,
    pub why: &'static str,
}

/// The cells of the matrix.
pub const CELLS: &[Cell] = &[
    Cell {
        nat1: "none",
        nat2: "none",
        neighbours: false,
        predicted: Way::Direct,
        why: "no NAT: every endpoint is public",
    },
    Cell {
        nat1: "eim-eif",
        nat2: "eim-eif",
        neighbours: false,
        predicted: Way::Direct,
        why: "one public port per socket, and anyone may use it",
    },
    Cell {
        nat1: "eim-adf",
        nat2: "eim-adf",
        neighbours: false,
        predicted: Way::Direct,
        why: "one public port per socket; a probe opens the way for the other's address",
    },
    Cell {
        nat1: "eim-apdf",
        nat2: "eim-apdf",
        neighbours: false,
        predicted: Way::Direct,
        why: "one public port per socket; each side's probe opens the way for the other's endpoint",
    },
    Cell {
        nat1: "eim-eif",
        nat2: "apdm-apdf+ports=1024",
        neighbours: false,
        predicted: Way::Direct,
        why: "the symmetric side's probe comes from a new port, but full-cone filtering admits it",
    },
    Cell {
        nat1: "eim-adf",
        nat2: "apdm-apdf+ports=1024",
        neighbours: false,
        predicted: Way::Direct,
        why: "the symmetric side's new port is on the address already sent to: address-dependent filtering admits it",
    },
    Cell {
        nat1: "eim-apdf",
        nat2: "apdm-apdf+ports=1024",
        neighbours: false,
        predicted: Way::Birthday,
        why: "the symmetric side's port is unknown and the easy side admits only endpoints it sent to: guess (birthday)",
    },
    Cell {
        nat1: "apdm-apdf+ports=1024",
        nat2: "apdm-apdf+ports=1024",
        neighbours: false,
        predicted: Way::Relay,
        why: "both sides' ports are unknown: nothing to aim at",
    },
    Cell {
        nat1: "no-firewall",
        nat2: "no-firewall",
        neighbours: false,
        predicted: Way::Direct,
        why: "endpoint-independent mapping; first probes that expire between the NATs keep an unsolicited probe from moving the mapping",
    },
    Cell {
        nat1: "eim-apdf+hairpin",
        nat2: "none",
        neighbours: true,
        predicted: Way::Direct,
        why: "one NAT: the private endpoints reach each other, and so do the public ones (hairpinning)",
    },
    Cell {
        nat1: "eim-apdf",
        nat2: "none",
        neighbours: true,
        predicted: Way::Direct,
        why: "one NAT without hairpinning: the public endpoints do not work, the private ones do",
    },
    Cell {
        nat1: "cgnat",
        nat2: "cgnat",
        neighbours: false,
        predicted: Way::Direct,
        why: "two layers, each endpoint-independent: the outer public endpoint works like a single NAT's",
    },
];

impl Cell {
    /// `eim-apdf × apdm-apdf+ports=1024`, or `eim-apdf (one NAT)`.
    pub fn label(&self) -> String {
        if self.neighbours {
            format!("{} (both behind it)", self.nat1)
        } else {
            format!("{} × {}", self.nat1, self.nat2)
        }
    }

    fn nats(&self) -> Result<(Nat, Nat)> {
        Ok((self.nat1.parse()?, self.nat2.parse()?))
    }

    /// Lesson 7's scene with this cell's NATs.
    pub fn topology(&self) -> Result<Topology> {
        let (nat1, nat2) = self.nats()?;
        Ok(Topology::p2p_scene(nat1, nat2))
    }
}

/// What a trial saw.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The way both peers printed (`None`: they disagreed or none came).
    pub way: Option<Way>,
    /// From the peers' start until the first chat message arrived.
    pub first_message: Option<Duration>,
    /// Why the trial did not connect.
    pub failure: Option<String>,
    /// Both peers' transcripts, once they connected.
    pub story: Option<String>,
}

/// The binaries a trial runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub rendezvous: PathBuf,
    pub peer: PathBuf,
}

/// The public port range of a site's NAT, as lesson7-peer's
/// `--port-range` takes it.
fn port_range(nat: Nat) -> String {
    match nat {
        Nat::Home(Behaviour { ports: Some(n), .. }) => {
            format!("{NARROW_BASE}-{}", NARROW_BASE + (n - 1))
        }
        _ => "1024-65535".to_owned(),
    }
}

/// One trial of `cell` at `loss` %, in a lab of its own.
pub fn trial(cell: &Cell, loss: u32, bins: &Binaries) -> Result<Outcome> {
    let lab = Lab::up(&cell.topology()?)?;
    let outcome = trial_in(&lab, cell, loss, bins);
    lab.down()?;
    outcome
}

/// One trial of `cell` at `loss` % in `lab`, freshly built from
/// [`Cell::topology`].
pub fn trial_in(lab: &Lab, cell: &Cell, loss: u32, bins: &Binaries) -> Result<Outcome> {
    let (nat1, nat2) = cell.nats()?;
    if loss > 0 {
        for interface in ["site1", "site2", "srv"] {
            lab.add_loss("internet", interface, loss)?;
        }
    }
    let rendezvous = SocketAddr::from((RENDEZVOUS_IP, RENDEZVOUS_PORT)).to_string();
    let mut command = lab.command("rendezvous", &bins.rendezvous);
    command.args(["--bind", &rendezvous]);
    let server = Running::try_start("rendezvous", command)?;
    server
        .wait_until(Duration::from_secs(10), |out| {
            String::from_utf8_lossy(out.stdout).contains("listening on")
        })
        .map_err(|log| anyhow!("the rendezvous did not start:\n{log}"))?;
    let (a, b) = if cell.neighbours {
        (("alice", nat1), ("carol", nat1))
    } else {
        (("alice", nat1), ("bob", nat2))
    };
    let start = Instant::now();
    let peer = |(name, _): (&str, Nat), (other, other_nat): (&str, Nat)| {
        let mut command = lab.command(name, &bins.peer);
        #[rustfmt::skip]
        command.args([
            "--bind", &format!("0.0.0.0:{PEER_PORT}"), "--rendezvous", &rendezvous,
            "--name", name, "--peer-name", other, "--port-range", &port_range(other_nat),
        ]);
        Running::try_start(name, command)
    };
    let mut first = peer(a, b)?;
    let second = peer(b, a)?;
    let outcome = chat(&mut first, &second, start);
    drop((first, second, server));
    Ok(outcome)
}

/// The way a peer printed (`path: WAY …`), if it did.
fn way_of(stdout: &[u8]) -> Option<Option<Way>> {
    let text = String::from_utf8_lossy(stdout);
    text.lines().find_map(|line| {
        line.strip_prefix("path: ")
            .map(|rest| Way::parse(rest.split_whitespace().next().unwrap_or_default()))
    })
}

/// A peer's last word, for the report: its last line on stderr, else on
/// stdout.
fn last_line(peer: &Running) -> String {
    let last = |text: String| {
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_owned)
    };
    match (last(peer.stderr()), last(peer.stdout())) {
        (Some(line), _) => format!("last on stderr: {line}"),
        (None, Some(line)) => format!("last on stdout: {line}"),
        (None, None) => "it printed nothing".to_owned(),
    }
}

/// Waits for both peers' ways, then types into `first` until `second`
/// prints the line.
fn chat(first: &mut Running, second: &Running, start: Instant) -> Outcome {
    let deadline = start + TRIAL_DEADLINE;
    let fail = |why: String| Outcome {
        way: None,
        first_message: None,
        failure: Some(why),
        story: None,
    };
    let mut ways = [None, None];
    for (index, peer) in [&*first, second].into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let waited = peer.wait_until(left, |out| way_of(out.stdout).is_some());
        if let Err(log) = waited {
            return fail(format!("no path line; {}\n{log}", last_line(peer)));
        }
        ways[index] = way_of(peer.stdout().as_bytes()).flatten();
    }
    // Both peers should name the same way; if they do not, the trial
    // still counts as connected when the message arrives, its way as mixed.
    let way = match ways {
        [Some(a), Some(b)] if a == b => Some(a),
        _ => None,
    };
    let mixed = way.is_none().then(|| {
        let names = ways.map(|way| way.map_or("none", Way::name));
        format!("the peers disagree: {} and {}", names[0], names[1])
    });
    let left = deadline.saturating_duration_since(Instant::now());
    if first
        .wait_until(left, |out| {
            String::from_utf8_lossy(out.stdout).contains("Ready:")
        })
        .is_err()
    {
        return fail("alice never became ready".into());
    }
    let message = "hello through the NATs";
    loop {
        first.type_line(message);
        let arrived = second.wait_until(Duration::from_secs(1), |out| {
            String::from_utf8_lossy(out.stdout).contains(&format!("] {message}"))
        });
        if arrived.is_ok() {
            return Outcome {
                way,
                first_message: Some(start.elapsed()),
                failure: mixed,
                story: Some(format!("{}\n{}", first.describe(), second.describe())),
            };
        }
        if Instant::now() >= deadline {
            return Outcome {
                way,
                first_message: None,
                failure: Some(format!(
                    "the chat message never arrived:\n{}",
                    second.describe()
                )),
                story: None,
            };
        }
    }
}

/// The birthday curve's set-up: k open ports of the hard side among N.
pub const BIRTHDAY_K: u32 = 32;
pub const BIRTHDAY_N: u32 = 1024;
/// Probes per trial: the curve's last point.
pub const BIRTHDAY_PROBES: u32 = 128;

/// Birthday trials in one lab (eim-apdf × apdm-apdf+ports=N): each time
/// bob opens k fresh sockets toward alice's public endpoint (k new public
/// ports at his symmetric NAT), and alice probes random ports of his
/// public address; the index of her first probe that reached bob, if any.
pub fn birthday_trials(trials: usize) -> Result<Vec<Option<u32>>> {
    let nat2 = format!("apdm-apdf+ports={BIRTHDAY_N}");
    let lab = Lab::up(&Topology::p2p_scene("eim-apdf".parse()?, nat2.parse()?))?;
    let any = |port| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    let server = lab.in_host("rendezvous", || {
        UdpSocket::bind(SocketAddr::from((RENDEZVOUS_IP, 7001)))
    })?;
    server.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut results = Vec::new();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ (std::process::id() as u64) << 32;
    for index in 0..trials {
        // A new private port each trial: old conntrack entries never match.
        let alice = lab.in_host("alice", || UdpSocket::bind(any(30000 + index as u16)))?;
        alice.send_to(b"where am I", server.local_addr()?)?;
        let mut buf = [0u8; 64];
        let (_, public) = server
            .recv_from(&mut buf)
            .context("alice's public endpoint")?;
        if public.ip() != SITE1_PUBLIC {
            bail!("alice's public endpoint is {public}");
        }
        let bob: Vec<UdpSocket> = (0..BIRTHDAY_K)
            .map(|_| lab.in_host("bob", || UdpSocket::bind(any(0))))
            .collect::<std::io::Result<_>>()?;
        for sock in &bob {
            sock.send_to(b"open", public)?;
            sock.set_nonblocking(true)?;
        }
        std::thread::sleep(Duration::from_millis(20));
        for probe in 1..=BIRTHDAY_PROBES {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let port = NARROW_BASE as u32 + ((seed >> 33) as u32 % BIRTHDAY_N);
            let target = SocketAddr::from((SITE2_PUBLIC, port as u16));
            alice.send_to(&probe.to_be_bytes(), target)?;
            std::thread::sleep(Duration::from_micros(300));
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut first = None::<u32>;
        for sock in &bob {
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                if n == 4 {
                    let probe = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    first = Some(first.map_or(probe, |f| f.min(probe)));
                }
            }
        }
        results.push(first);
    }
    lab.down()?;
    Ok(results)
}

/// P = 1 − (1 − k/N)^n.
pub fn birthday_formula(k: u32, big_n: u32, n: u32) -> f64 {
    1.0 - (1.0 - k as f64 / big_n as f64).powi(n as i32)
}

/// How a run is sized, and where it writes.
pub struct Plan {
    pub quick: bool,
    pub trials: usize,
    pub birthday_trials: usize,
    pub jobs: usize,
}

/// Runs the whole matrix and the birthday curve; writes the report.
pub fn run(plan: &Plan, bins: &Binaries) -> Result<PathBuf> {
    let root = workspace_bin::workspace_root();
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let out_dir = if plan.quick {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("matrix-quick")
    } else {
        root.join("docs/src/generated")
    };
    std::fs::create_dir_all(&out_dir)?;
    let (machine, load_at_start) = (machine(), machine::load_average(1));
    let began = Instant::now();
    let mut queue = VecDeque::new();
    for (cell_index, _) in CELLS.iter().enumerate() {
        for loss in LOSSES {
            for _ in 0..plan.trials {
                queue.push_back((cell_index, loss));
            }
        }
    }
    let total = queue.len();
    let queue = Mutex::new(queue);
    let results = Mutex::new(Vec::new());
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let Some((cell, loss)) =
                        queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                    else {
                        break;
                    };
                    let outcome = trial(&CELLS[cell], loss, bins).unwrap_or_else(|err| Outcome {
                        way: None,
                        first_message: None,
                        failure: Some(format!("{err:#}")),
                        story: None,
                    });
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n.is_multiple_of(25) || n == total {
                        eprintln!("matrix: {n}/{total} trials ({:.0?})", began.elapsed());
                    }
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((cell, loss, outcome));
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let per_lab = plan.birthday_trials.div_ceil(plan.jobs.max(1));
    let birthday: Vec<Option<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..plan.jobs.max(1))
            .map(|job| {
                let count = per_lab.min(plan.birthday_trials.saturating_sub(job * per_lab));
                scope.spawn(move || birthday_trials(count))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<_>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    // How busy the machine was: the times in the table are only as good.
    let machine = format!(
        "{machine} (load average {load_at_start} at the start, {} at the end)",
        machine::load_average(1)
    );
    let md = report(plan, &machine, &results, &birthday, began.elapsed())?;
    // The whole story of every trial that failed, or took another way than
    // predicted, for whoever reads the table.
    let log_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let mut log = String::new();
    for (cell, loss, outcome) in &results {
        let cell = &CELLS[*cell];
        if let Some(why) = &outcome.failure {
            // A trial that connected (peers that disagree) has its story too.
            let story = outcome.story.as_deref().unwrap_or_default();
            let _ = writeln!(log, "=== {} at {loss}%\n{why}\n{story}\n", cell.label());
        } else if let (Some(way), Some(story)) = (outcome.way, &outcome.story)
            && way != cell.predicted
        {
            let (label, predicted) = (cell.label(), cell.predicted.name());
            let _ = writeln!(
                log,
                "=== {label} at {loss}%: {} instead of {predicted}\n{story}\n",
                way.name()
            );
        }
    }
    std::fs::create_dir_all(&log_dir)?;
    std::fs::write(log_dir.join("matrix-failures.log"), log)?;
    std::fs::write(out_dir.join("matrix.md"), md)?;
    birthday_chart(&out_dir.join("matrix-birthday.svg"), &birthday)?;
    Ok(out_dir)
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn show(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// The report: the table per cell and loss, failures, the birthday curve.
pub fn report(
    plan: &Plan,
    machine: &str,
    results: &[(usize, u32, Outcome)],
    birthday: &[Option<u32>],
    took: Duration,
) -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "Measured on {machine} by `just lab matrix{}`: {} trials per cell and loss, {} at a time, each in a lab of its own; {} birthday trials; {:.0} s in all.\n",
        if plan.quick { " quick" } else { "" },
        plan.trials,
        plan.jobs,
        birthday.len(),
        took.as_secs_f64()
    )?;
    writeln!(
        md,
        "Loss: each datagram entering the internet router (from either home or the rendezvous) is dropped with the given probability. *Direct*, *birthday*, *relay*: the share of trials whose two peers both printed that `path:`; *mixed*: connected, but the two peers named different ways; *connected*: the share whose first chat message arrived within {} s; time: from the peers' start to that message's arrival (p50, p95).\n",
        TRIAL_DEADLINE.as_secs()
    )?;
    writeln!(
        md,
        "| NATs | predicted | loss | trials | direct | birthday | relay | mixed | connected | first message p50 | p95 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    let mut failures = Vec::new();
    for (index, cell) in CELLS.iter().enumerate() {
        for loss in LOSSES {
            let runs: Vec<&Outcome> = results
                .iter()
                .filter(|(c, l, _)| *c == index && *l == loss)
                .map(|(_, _, o)| o)
                .collect();
            let count = runs.len().max(1) as f64;
            let share = |way: Way| {
                let n = runs.iter().filter(|o| o.way == Some(way)).count();
                format!("{:.0}%", 100.0 * n as f64 / count)
            };
            let mixed = || {
                let n = runs
                    .iter()
                    .filter(|o| o.way.is_none() && o.first_message.is_some())
                    .count();
                format!("{:.0}%", 100.0 * n as f64 / count)
            };
            let mut times: Vec<Duration> = runs.iter().filter_map(|o| o.first_message).collect();
            times.sort();
            writeln!(
                md,
                "| {} | {} | {loss}% | {} | {} | {} | {} | {} | {:.0}% | {} | {} |",
                cell.label(),
                cell.predicted.name(),
                runs.len(),
                share(Way::Direct),
                share(Way::Birthday),
                share(Way::Relay),
                mixed(),
                100.0 * times.len() as f64 / count,
                show(percentile(&times, 50.0)),
                show(percentile(&times, 95.0)),
            )?;
            for run in &runs {
                if let Some(why) = &run.failure {
                    let first = why.lines().next().unwrap_or_default().to_owned();
                    let connected = if run.first_message.is_some() {
                        " (connected)"
                    } else {
                        ""
                    };
                    failures.push(format!("{} at {loss}%{connected}: {first}", cell.label()));
                }
            }
        }
    }
    writeln!(md, "\nWhy each prediction:\n")?;
    for cell in CELLS {
        writeln!(
            md,
            "- {}: {} ({}).",
            cell.label(),
            cell.predicted.name(),
            cell.why
        )?;
    }
    writeln!(
        md,
        "\nEvery trial that failed, or took another way than predicted, is told whole in `matrix-failures.log` in the target directory."
    )?;
    if !failures.is_empty() {
        failures.sort();
        failures.dedup();
        writeln!(md, "\nWhat went wrong, once per kind:\n")?;
        for failure in failures.iter().take(20) {
            writeln!(md, "- {failure}")?;
        }
    }
    writeln!(
        md,
        "\n## The birthday curve\n\nk = {BIRTHDAY_K} open ports of the symmetric side among N = {BIRTHDAY_N}; the share of {} trials in which one of the first n probes met one, beside P = 1 − (1 − k/N)^n.\n\n| n | measured | formula | difference |\n|---:|---:|---:|---:|",
        birthday.len()
    )?;
    for (n, measured, formula) in birthday_points(birthday) {
        // Rounded to a tenth first: a difference of -0.04 is "0.0", not "-0.0".
        let difference = (1000.0 * (measured - formula)).round() / 10.0;
        let difference = if difference == 0.0 {
            "0.0".to_owned()
        } else {
            format!("{difference:+.1}")
        };
        writeln!(
            md,
            "| {n} | {:.1}% | {:.1}% | {difference} |",
            100.0 * measured,
            100.0 * formula,
        )?;
    }
    Ok(md)
}

/// `(n, measured share, formula)` at the curve's points.
pub fn birthday_points(birthday: &[Option<u32>]) -> Vec<(u32, f64, f64)> {
    let count = birthday.len().max(1) as f64;
    [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128]
        .into_iter()
        .filter(|n| *n <= BIRTHDAY_PROBES)
        .map(|n| {
            let met = birthday
                .iter()
                .filter(|f| f.is_some_and(|f| f <= n))
                .count();
            (
                n,
                met as f64 / count,
                birthday_formula(BIRTHDAY_K, BIRTHDAY_N, n),
            )
        })
        .collect()
}

fn birthday_chart(path: &Path, birthday: &[Option<u32>]) -> Result<()> {
    let measured: Vec<(f64, f64)> = birthday_points(birthday)
        .into_iter()
        .map(|(n, m, _)| (n as f64, 100.0 * m))
        .collect();
    let formula: Vec<(f64, f64)> = (1..=BIRTHDAY_PROBES)
        .map(|n| {
            (
                n as f64,
                100.0 * birthday_formula(BIRTHDAY_K, BIRTHDAY_N, n),
            )
        })
        .collect();
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Birthday punch: k = {BIRTHDAY_K} of N = {BIRTHDAY_N} ports"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..BIRTHDAY_PROBES as f64 * 1.02, 0.0..105.0)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("probes sent (n)")
        .y_desc("success (%)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let blue = Palette99::pick(0).to_rgba();
    let red = Palette99::pick(1).to_rgba();
    chart
        .draw_series(LineSeries::new(formula, red.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?
        .label("P = 1 − (1 − k/N)^n")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
    chart
        .draw_series(measured.iter().map(|p| Circle::new(*p, 4, blue.filled())))
        .map_err(|e| anyhow!("{e}"))?
        .label("measured")
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, blue.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// The CPU, cores, kernel and the date (UTC).
pub fn machine() -> String {
    format!(
        "{}, {} cores, Linux {}, on {}",
        machine::cpu_model(),
        machine::cores(),
        machine::kernel(),
        machine::utc_date()
    )
}
