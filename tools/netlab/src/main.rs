//! `lab`: the first post's two machines on this one, for `just lab`.
//!
//! `lab up` builds `vm1` (192.168.126.129) and `vm2` (192.168.126.128) as
//! network namespaces on one link; `lab down` removes them. `lab chat N`
//! runs lesson N's two chat peers in tmux, peer A in vm1 and peer B in vm2,
//! with the post's addresses and ports; `lab echo N` runs lesson N's echo
//! server in vm1 and two clients in vm2; `lab p2p` opens lesson 6's NAT
//! scene. Any shell can join a host by hand:
//! `sudo ip netns exec vm1 bash`.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use netlab::p2p::Nat;
use netlab::{Access, ECHO_PORT, Lab, PORT_A, PORT_B, Topology, VM1, VM2, access};

/// The network lab: the post's VM1 and VM2 as network namespaces.
#[derive(Parser, Debug)]
#[command(name = "lab", version)]
struct Args {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Build vm1 and vm2 (it stays up until `lab down`).
    Up,
    /// Remove vm1 and vm2, and whatever runs inside them.
    Down,
    /// Show the hosts, their addresses and what runs inside them.
    Status,
    /// Lesson 1, 2 or 5's chat: peer A in vm1, peer B in vm2, in tmux.
    Chat {
        #[arg(value_parser = ["1", "2", "5"])]
        lesson: String,
    },
    /// Lesson 3, 4 or 5's echo server in vm1 and two clients in vm2, in tmux.
    Echo {
        #[arg(value_parser = ["3", "4", "5"])]
        lesson: String,
    },
    /// Lesson 6's scene: alice and bob behind two NAT routers, the
    /// rendezvous on the internet between them, all three in tmux
    /// (`lab p2p down` removes the scene).
    P2p {
        /// `down` removes the scene instead.
        #[arg(value_parser = ["down"])]
        action: Option<String>,
        /// bob's router maps each destination to a new port (a symmetric
        /// NAT): watch the punch fail.
        #[arg(long, conflicts_with_all = ["nat1", "nat2"])]
        symmetric: bool,
        /// Lesson 7's scene instead, with this NAT at alice's site (see `lab
        /// nat`): `lesson7-rendezvous` and two `lesson7-peer`s.
        #[arg(long, value_name = "KIND")]
        nat1: Option<Nat>,
        /// Lesson 7's scene, with this NAT at bob's site.
        #[arg(long, value_name = "KIND")]
        nat2: Option<Nat>,
        /// Lesson 7's scene with alice's neighbour carol as the other peer
        /// (both behind --nat1) instead of bob.
        #[arg(long)]
        neighbours: bool,
    },
    /// Print the nftables ruleset of a NAT kind and which RFC 4787
    /// behaviour it gives; without KIND, list the kinds.
    Nat {
        /// none, no-firewall, eim-eif, eim-adf, eim-apdf, apdm-apdf or cgnat,
        /// with +hairpin, +no-pp (no port preservation), +ports=N.
        kind: Option<Nat>,
    },
    /// Lesson 7's peers across every pair of NAT kinds at 0% and 10% loss,
    /// and the birthday curve. A full run REWRITES docs/src/generated/
    /// matrix.md and matrix-birthday.svg; `lab matrix quick` writes under
    /// the target directory.
    Matrix {
        #[arg(value_parser = ["quick", "full"], default_value = "full")]
        mode: String,
        /// Trials per cell and loss (default: 50, quick: 2).
        #[arg(long)]
        trials: Option<usize>,
        /// Birthday trials (default: 1000, quick: 100).
        #[arg(long)]
        birthday_trials: Option<usize>,
        /// Trials run at once, each in a lab of its own.
        #[arg(long, default_value_t = 8)]
        jobs: usize,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lab: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(action: Action) -> Result<()> {
    // `lab nat` only prints: it needs no root.
    if let Action::Nat { kind } = &action {
        return nat(*kind);
    }
    match access() {
        Ok(Access::Root) => {}
        Ok(Access::UserNamespace) => bail!(
            "the lab needs root: run `sudo -E env \"PATH=$PATH\" just lab …` (without root, the \
             lab's tests still run, each inside a user namespace of its own)"
        ),
        Err(reason) => bail!("{reason}"),
    }
    match &action {
        Action::P2p {
            action,
            symmetric,
            nat1,
            nat2,
            neighbours,
        } => {
            if nat1.is_some() || nat2.is_some() || *neighbours {
                let nat1 = nat1.unwrap_or(Nat::Home(Default::default()));
                let nat2 = nat2.unwrap_or(Nat::Home(Default::default()));
                return p2p7(action.is_some(), nat1, nat2, *neighbours);
            }
            if action.is_some() && remove_scene7()? {
                // `lab p2p down` removes whichever scene is up.
                return Ok(());
            }
            return p2p(action.is_some(), *symmetric);
        }
        Action::Matrix {
            mode,
            trials,
            birthday_trials,
            jobs,
        } => return matrix(mode == "quick", *trials, *birthday_trials, *jobs),
        _ => {}
    }
    let topology = Topology::two_vms();
    match action {
        Action::Up => {
            if Lab::attach_named(&topology).is_some() {
                println!("the lab is already up: vm1 {VM1}, vm2 {VM2}");
                return Ok(());
            }
            Lab::up_named(&topology)?;
            println!("the lab is up: vm1 {VM1} and vm2 {VM2} on one link, MTU 1500");
            println!("enter a host with `sudo ip netns exec vm1 bash`; `just lab down` removes it");
            Ok(())
        }
        Action::Down => {
            let removed = Lab::remove_named(&topology)?;
            if removed == 0 {
                println!("the lab was not up");
            } else {
                println!("the lab is down ({removed} hosts removed)");
            }
            Ok(())
        }
        Action::Status => status(&topology),
        Action::Chat { lesson } => {
            let bin = match lesson.as_str() {
                "1" => "lesson1-chat",
                "2" => "lesson2-chat",
                _ => "lesson5-chat",
            };
            let bin = binary(bin)?;
            let a = format!("{VM1}:{PORT_A}");
            let b = format!("{VM2}:{PORT_B}");
            let panes = [
                Pane::new("vm1", &bin, &["--bind", &a, "--peer", &b]),
                Pane::new("vm2", &bin, &["--bind", &b, "--peer", &a]),
            ];
            in_tmux(&topology, &format!("chat{lesson}"), &panes)
        }
        Action::Echo { lesson } => {
            let (server, client) = match lesson.as_str() {
                "3" => ("lesson3-server", "lesson3-client"),
                "4" => ("lesson4-server", "lesson3-client"),
                _ => ("lesson5-server", "lesson5-client"),
            };
            let (server, client) = (binary(server)?, binary(client)?);
            // The post's server binds INADDR_ANY: every address of vm1.
            let bind = format!("0.0.0.0:{ECHO_PORT}");
            let target = format!("{VM1}:{ECHO_PORT}");
            let client_pane = Pane::new("vm2", &client, &["--server", &target]);
            let panes = [
                Pane::new("vm1", &server, &["--bind", &bind]),
                client_pane.clone(),
                client_pane,
            ];
            in_tmux(&topology, &format!("echo{lesson}"), &panes)
        }
        Action::P2p { .. } | Action::Nat { .. } | Action::Matrix { .. } => {
            unreachable!("handled above")
        }
    }
}

/// `lab p2p`: lesson 6's NAT scene (see netlab's `nat` module) with the
/// rendezvous server and both peers in tmux; `lab p2p down` removes it.
fn p2p(down: bool, symmetric: bool) -> Result<()> {
    use netlab::nat::{
        Mapping, PEER_PORT, RENDEZVOUS_IP, RENDEZVOUS_PORT, ROUTER1_WAN, ROUTER2_WAN,
    };
    let router2 = if symmetric {
        Mapping::Symmetric
    } else {
        Mapping::EndpointIndependent
    };
    let topology = Topology::nat_scene(Mapping::EndpointIndependent, router2);
    if down {
        let removed = Lab::remove_named(&topology)?;
        println!("the NAT scene is down ({removed} hosts removed)");
        return Ok(());
    }
    match Lab::attach_named(&topology) {
        Some(lab) => {
            let rules = lab.run("router2", &["nft", "list", "table", "ip", "nat"])?;
            if rules.contains("random") != symmetric {
                bail!(
                    "the NAT scene is up with router2 {}: `just lab p2p down` first",
                    if symmetric {
                        "not symmetric"
                    } else {
                        "symmetric"
                    }
                );
            }
        }
        None => {
            Lab::up_named(&topology)?;
            println!(
                "the NAT scene is up: rendezvous {RENDEZVOUS_IP}; alice 192.168.1.2 behind router1 \
                 {ROUTER1_WAN}, bob 192.168.1.2 behind router2 {ROUTER2_WAN}{}",
                if symmetric { " (symmetric NAT)" } else { "" }
            );
            println!("`just lab p2p down` removes it");
        }
    }
    let rendezvous = format!("{RENDEZVOUS_IP}:{RENDEZVOUS_PORT}");
    let bind = format!("0.0.0.0:{PEER_PORT}");
    let (server, peer) = (binary("lesson6-rendezvous")?, binary("lesson6-peer")?);
    let peer_pane = |host: &'static str, name: &str, other: &str| {
        #[rustfmt::skip]
        let args = ["--bind", &bind, "--rendezvous", &rendezvous, "--name", name, "--peer-name", other];
        Pane::new(host, &peer, &args)
    };
    let panes = [
        Pane::new("rendezvous", &server, &["--bind", &rendezvous]),
        peer_pane("alice", "alice", "bob"),
        peer_pane("bob", "bob", "alice"),
    ];
    in_tmux(&topology, "p2p", &panes)
}

/// `lab nat [KIND]`: the kinds, or one kind's behaviour and rulesets.
fn nat(kind: Option<Nat>) -> Result<()> {
    let Some(kind) = kind else {
        println!("NAT kinds (`just lab nat KIND` shows one):");
        for name in netlab::p2p::KINDS {
            let nat: Nat = name.parse()?;
            println!("  {name:12} {}", nat.summary());
        }
        println!(
            "options: +hairpin, +no-pp (no port preservation, eim-* only), +ports=N (N public ports from {})",
            netlab::p2p::NARROW_BASE
        );
        return Ok(());
    };
    println!("{kind}: {}, in RFC 4787's terms:", kind.summary());
    for line in kind.describe() {
        println!("  {line}");
    }
    let rulesets = kind.rulesets(1);
    if rulesets.is_empty() {
        println!("\nno ruleset: router1 only routes (net.ipv4.ip_forward=1)");
    }
    for (host, ruleset) in rulesets {
        println!("\n# {host} (nft -f), wan {}:", netlab::p2p::SITE1_PUBLIC);
        print!("{ruleset}");
    }
    Ok(())
}

/// Where `lab p2p --nat1 … --nat2 …` notes which kinds its scene has
/// (one file per namespace prefix, as the scene's names).
fn scene7_state() -> String {
    let prefix = std::env::var(netlab::NAMED_PREFIX_VAR).unwrap_or_default();
    format!("/run/netlab-p2p7{prefix}")
}

/// The topology of lesson 7's scene now up, if any.
fn scene7() -> Option<Topology> {
    let text = std::fs::read_to_string(scene7_state()).ok()?;
    let mut words = text.split_whitespace();
    let nat1: Nat = words.next()?.parse().ok()?;
    let nat2: Nat = words.next()?.parse().ok()?;
    Some(Topology::p2p_scene(nat1, nat2))
}

/// Removes lesson 7's scene if it is up; whether it was.
fn remove_scene7() -> Result<bool> {
    let Some(topology) = scene7() else {
        return Ok(false);
    };
    let removed = Lab::remove_named(&topology)?;
    let _ = std::fs::remove_file(scene7_state());
    println!("lesson 7's NAT scene is down ({removed} hosts removed)");
    Ok(true)
}

/// `lab p2p --nat1 KIND --nat2 KIND`: lesson 7's scene (netlab's `p2p`
/// module) with the rendezvous (and relay) and both peers in tmux.
fn p2p7(down: bool, nat1: Nat, nat2: Nat, neighbours: bool) -> Result<()> {
    use netlab::p2p::{PEER_PORT, RENDEZVOUS_IP, RENDEZVOUS_PORT};
    if down {
        if !remove_scene7()? {
            println!("lesson 7's NAT scene was not up");
        }
        return Ok(());
    }
    let wanted = format!("{nat1} {nat2}");
    let topology = Topology::p2p_scene(nat1, nat2);
    match std::fs::read_to_string(scene7_state()) {
        Ok(up) if up.trim() == wanted && Lab::attach_named(&topology).is_some() => {}
        Ok(up) => bail!(
            "lesson 7's scene is up with NATs {}: `just lab p2p down` first",
            up.trim()
        ),
        Err(_) => {
            if Lab::attach_named(&Topology::nat_scene(
                netlab::nat::Mapping::EndpointIndependent,
                netlab::nat::Mapping::EndpointIndependent,
            ))
            .is_some()
            {
                bail!("lesson 6's scene is up: `just lab p2p down` first");
            }
            Lab::up_named(&topology)?;
            std::fs::write(scene7_state(), &wanted)?;
            println!(
                "lesson 7's scene is up: rendezvous {RENDEZVOUS_IP}; alice and carol behind {nat1}, bob behind {nat2}; \
                 `just lab nat KIND` explains a kind, `just lab p2p down` removes the scene"
            );
        }
    }
    let rendezvous = format!("{RENDEZVOUS_IP}:{RENDEZVOUS_PORT}");
    let bind = format!("0.0.0.0:{PEER_PORT}");
    let (server, peer) = (binary("lesson7-rendezvous")?, binary("lesson7-peer")?);
    let (other, other_nat) = if neighbours {
        ("carol", nat1)
    } else {
        ("bob", nat2)
    };
    let range = |nat: Nat| match nat {
        Nat::Home(b) => b.ports.map_or("1024-65535".to_owned(), |n| {
            format!(
                "{}-{}",
                netlab::p2p::NARROW_BASE,
                netlab::p2p::NARROW_BASE + (n - 1)
            )
        }),
        _ => "1024-65535".to_owned(),
    };
    let (range_of_other, range_of_alice) = (range(other_nat), range(nat1));
    let peer_pane = |host: &'static str, other: &str, range: &str| {
        #[rustfmt::skip]
        let args = ["--bind", &bind, "--rendezvous", &rendezvous, "--name", host, "--peer-name", other, "--port-range", range];
        Pane::new(host, &peer, &args)
    };
    let panes = [
        Pane::new("rendezvous", &server, &["--bind", &rendezvous]),
        peer_pane("alice", other, &range_of_other),
        peer_pane(
            if neighbours { "carol" } else { "bob" },
            "alice",
            &range_of_alice,
        ),
    ];
    in_tmux(&topology, "p2p7", &panes)
}

/// `lab matrix [quick]`: see netlab's `matrix` module.
fn matrix(quick: bool, trials: Option<usize>, birthday: Option<usize>, jobs: usize) -> Result<()> {
    if quick {
        println!("just lab matrix quick: results go under the target directory (matrix-quick/).");
    } else {
        println!(
            "just lab matrix: this run rewrites the tracked files docs/src/generated/matrix.md and matrix-birthday.svg."
        );
    }
    let bins = netlab::matrix::Binaries {
        rendezvous: binary("lesson7-rendezvous")?.into(),
        peer: binary("lesson7-peer")?.into(),
    };
    let plan = netlab::matrix::Plan {
        quick,
        trials: trials.unwrap_or(if quick { 2 } else { 50 }),
        birthday_trials: birthday.unwrap_or(if quick { 100 } else { 1000 }),
        jobs,
    };
    let out = netlab::matrix::run(&plan, &bins)?;
    let report = std::fs::read_to_string(out.join("matrix.md"))?;
    println!("{report}");
    println!("written: {}", out.display());
    Ok(())
}

/// Builds `name` (a workspace binary) if it is stale; its path.
fn binary(name: &str) -> Result<String> {
    let path = workspace_bin::path(name, workspace_bin::Profile::Debug).map_err(|err| {
        // Cargo's own report is many lines; its `error:` line says it all.
        let report = format!("{err:#}");
        let reason = report
            .lines()
            .find_map(|line| line.trim().strip_prefix("error: "))
            .unwrap_or(report.lines().next().unwrap_or_default())
            .to_owned();
        anyhow::anyhow!("cannot build {name}: {reason}")
    })?;
    Ok(path.display().to_string())
}

/// A program to run in a host, in a tmux pane of its own.
#[derive(Clone, Debug)]
struct Pane {
    host: &'static str,
    words: Vec<String>,
}

impl Pane {
    fn new(host: &'static str, program: &str, args: &[&str]) -> Pane {
        let words = std::iter::once(program)
            .chain(args.iter().copied())
            .map(shell_quote)
            .collect();
        Pane { host, words }
    }

    /// The command that runs it inside its host's namespace.
    fn command(&self, lab: &Lab) -> String {
        format!(
            "ip netns exec {} {}",
            lab.namespace(self.host),
            self.words.join(" ")
        )
    }

    /// The pane's shell command: a title, the program; once it ends the
    /// pane waits for Enter, so its last lines stay readable.
    fn shell(&self, lab: &Lab) -> String {
        format!(
            "echo '[{}]' {}; {}; printf '\\n[ended: press Enter to close this pane] '; read -r _",
            self.host,
            self.words.join(" "),
            self.command(lab)
        )
    }
}

fn shell_quote(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/.:_-=".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `panes` side by side in a tmux session of its own, building the lab
/// first if it is not up. Without tmux or a terminal, prints the commands.
fn in_tmux(topology: &Topology, session: &str, panes: &[Pane]) -> Result<()> {
    let lab = match Lab::attach_named(topology) {
        Some(lab) => lab,
        None => {
            let lab = Lab::up_named(topology)?;
            println!("the lab is up: vm1 {VM1}, vm2 {VM2} (`just lab down` removes it)");
            lab
        }
    };
    let terminal = nix::unistd::isatty(std::io::stdin()).unwrap_or(false)
        && nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
    let have_tmux = which::which("tmux").is_ok();
    if !terminal || !have_tmux {
        println!("run each of these in a terminal of its own (as root):");
        for pane in panes {
            println!("  {}", pane.command(&lab));
        }
        return Ok(());
    }
    // A tmux server of the lab's own (-L), so that this works from inside
    // another tmux session too.
    let session = format!("lab-{session}-{}", std::process::id());
    let mut tmux = Command::new("tmux");
    tmux.env_remove("TMUX")
        .args(["-L", "netlab", "new-session", "-s", &session])
        .arg(panes[0].shell(&lab));
    // Side by side; a third pane (the second echo client) goes under the
    // second, so that no pane is narrower than half the window.
    for (index, pane) in panes.iter().enumerate().skip(1) {
        let split = if index == 1 { "-h" } else { "-v" };
        tmux.args([";", "split-window", split])
            .arg(pane.shell(&lab));
    }
    tmux.args([";", "select-pane", "-t", "0"]);
    let status = tmux.status().context("cannot start tmux")?;
    drop(lab);
    if !status.success() {
        bail!("tmux failed ({status})");
    }
    Ok(())
}

/// Prints each host's addresses and the processes inside it.
fn status(topology: &Topology) -> Result<()> {
    let Some(lab) = Lab::attach_named(topology) else {
        println!("the lab is not up (`just lab up` builds it)");
        return Ok(());
    };
    for host in &topology.hosts {
        let addresses = lab.run(&host.name, &["ip", "-br", "-4", "addr"])?;
        println!("{}:", host.name);
        for line in addresses.lines() {
            println!("  {line}");
        }
        let pids = lab.pids(&host.name);
        if !pids.is_empty() {
            let list: Vec<String> = pids.iter().map(|pid| pid.to_string()).collect();
            println!("  processes: {}", list.join(" "));
        }
    }
    Ok(())
}
