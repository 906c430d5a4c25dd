//! The [`Lab`] guard: builds a [`Topology`] as network namespaces and veth
//! pairs, runs commands and threads inside its hosts, and removes every
//! namespace again when it is dropped, also when a test panics.
//!
//! Everything goes through iproute2 (`ip netns`, `ip link`, `ip addr`,
//! `ip route`), `sysctl` and `nft`, run inside the host with `ip netns exec`,
//! so a learner can type the same commands by hand.

use std::ffi::OsStr;
use std::fs::File;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::access::{Access, access};
use crate::capture::Capture;
use crate::topology::{DEFAULT_SYSCTLS, Topology};

/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Test labs' namespace names start with this, then the process id and a
/// counter: `nl-4242-3-vm1`.
const TEST_PREFIX: &str = "nl-";

/// The environment variable whose value [`Lab::up_named`] puts in front of
/// its namespaces' names.
pub const NAMED_PREFIX_VAR: &str = "NETLAB_PREFIX";

/// Numbers the labs of one process, so each gets its own names.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A topology brought up as namespaces. Dropping it tears it down.
pub struct Lab {
    topology: Topology,
    /// `(host, namespace)` for every host, in declaration order.
    namespaces: Vec<(String, String)>,
    /// Leave the namespaces in place when dropped (`lab up`).
    keep: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("namespaces", &self.namespaces)
            .finish()
    }
}

impl Lab {
    /// Builds `topology` under names no other lab uses: each host `vm1`
    /// becomes namespace `nl-<pid>-<n>-vm1`, so tests running in parallel
    /// never collide. Namespaces left behind by test processes that died
    /// (killed before their guard could run) are removed first.
    pub fn up(topology: &Topology) -> Result<Lab> {
        require_access()?;
        remove_orphans();
        let prefix = format!(
            "{TEST_PREFIX}{}-{}-",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        Lab::build(topology, &prefix, false)
    }

    /// Builds `topology` with the hosts' own names as namespace names
    /// (`vm1`), to be used by hand: `ip netns exec vm1 bash`. The lab stays
    /// up after this process ends; [`Lab::remove_named`] takes it down.
    /// With [`NAMED_PREFIX_VAR`] set, its value goes in front of every name
    /// (the tests of `lab up` use it, so as not to touch a learner's lab).
    pub fn up_named(topology: &Topology) -> Result<Lab> {
        require_access()?;
        let prefix = named_prefix();
        for host in &topology.hosts {
            let namespace = format!("{prefix}{}", host.name);
            if namespace_exists(&namespace) {
                bail!(
                    "namespace {namespace} already exists: the lab is up (`just lab down` removes it)"
                );
            }
        }
        Lab::build(topology, &prefix, true)
    }

    /// The lab built by [`Lab::up_named`], if its namespaces exist; it is
    /// kept when dropped.
    pub fn attach_named(topology: &Topology) -> Option<Lab> {
        let prefix = named_prefix();
        let namespaces: Vec<(String, String)> = topology
            .hosts
            .iter()
            .map(|host| (host.name.clone(), format!("{prefix}{}", host.name)))
            .collect();
        let all_there = namespaces
            .iter()
            .all(|(_, namespace)| namespace_exists(namespace));
        all_there.then(|| Lab {
            topology: topology.clone(),
            namespaces,
            keep: true,
        })
    }

    /// Removes the namespaces of [`Lab::up_named`]'s lab; returns how many
    /// there were.
    pub fn remove_named(topology: &Topology) -> Result<usize> {
        require_access()?;
        let prefix = named_prefix();
        let mut removed = 0;
        for host in &topology.hosts {
            let namespace = format!("{prefix}{}", host.name);
            if namespace_exists(&namespace) {
                remove_namespace(&namespace)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn build(topology: &Topology, prefix: &str, keep: bool) -> Result<Lab> {
        // The guard exists before the first namespace does: if any step
        // fails, dropping it removes what was already built.
        let mut lab = Lab {
            topology: topology.clone(),
            namespaces: Vec::new(),
            keep: false,
        };
        for host in &topology.hosts {
            let namespace = format!("{prefix}{}", host.name);
            ip(&["netns", "add", &namespace])?;
            lab.namespaces.push((host.name.clone(), namespace));
            lab.run(&host.name, &["ip", "link", "set", "lo", "up"])?;
            for (key, value) in DEFAULT_SYSCTLS {
                lab.sysctl(&host.name, key, value)?;
            }
            for (key, value) in &host.sysctls {
                lab.sysctl(&host.name, key, value)?;
            }
        }
        for link in &topology.links {
            // Both ends are created right inside their namespaces, so the
            // interface names (`eth0` in every host) never meet in this one.
            let mtu = link.mtu.to_string();
            let (ns_a, ns_b) = (lab.namespace(&link.a.host), lab.namespace(&link.b.host));
            #[rustfmt::skip]
            ip(&[
                "link", "add", &link.a.interface, "netns", ns_a, "mtu", &mtu,
                "type", "veth", "peer", "name", &link.b.interface, "netns", ns_b, "mtu", &mtu,
            ])?;
            for end in [&link.a, &link.b] {
                // 0.0.0.0: no address, the interface joins a bridge.
                if !end.address.is_unspecified() {
                    let address = format!("{}/{}", end.address, end.prefix);
                    lab.run(
                        &end.host,
                        &["ip", "addr", "add", &address, "dev", &end.interface],
                    )?;
                }
                lab.run(&end.host, &["ip", "link", "set", &end.interface, "up"])?;
            }
        }
        for host in &topology.hosts {
            for command in &host.commands {
                let args: Vec<&str> = command.iter().map(String::as_str).collect();
                lab.run(&host.name, &args)?;
            }
            for route in &host.routes {
                let mut args = vec!["ip", "route", "add"];
                args.extend(route.split_whitespace());
                lab.run(&host.name, &args)?;
            }
            for ruleset in &host.nft {
                lab.nft(&host.name, ruleset)?;
            }
        }
        lab.keep = keep;
        Ok(lab)
    }

    /// The topology this lab was built from.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The namespace that plays `host`.
    pub fn namespace(&self, host: &str) -> &str {
        self.namespaces
            .iter()
            .find(|(name, _)| name == host)
            .map(|(_, namespace)| namespace.as_str())
            .unwrap_or_else(|| panic!("no host {host} in this lab"))
    }

    /// A command that runs `program` inside `host` (`ip netns exec`); add
    /// arguments and run it as any other.
    pub fn command(&self, host: &str, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.namespace(host)])
            .arg(program);
        command
    }

    /// Runs `args` inside `host`; returns its stdout, or an error naming the
    /// command and holding its stderr when it fails.
    pub fn run(&self, host: &str, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().context("no command to run")?;
        let mut command = self.command(host, program);
        command.args(rest);
        let output = command
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run `ip` for `{}` in {host}", args.join(" ")))?;
        checked(output, &format!("`{}` in {host}", args.join(" ")))
    }

    /// Writes sysctl `key` = `value` (`net.ipv4.tcp_timestamps`, `0`) inside
    /// `host`: network sysctls belong to the namespace, so this changes
    /// nothing outside it. It writes /proc/sys/net/… from a thread inside the
    /// host, as `sysctl -w` would, without needing that tool.
    pub fn sysctl(&self, host: &str, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.in_host(host, || std::fs::write(&path, value))
            .with_context(|| format!("cannot set {key} to {value:?} in {host} ({path})"))
    }

    /// Loads an nftables `ruleset` (`nft -f` syntax) inside `host`.
    pub fn nft(&self, host: &str, ruleset: &str) -> Result<()> {
        let mut child = self
            .command(host, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run nft in {host}: is nftables installed?"))?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().context("nft's stdin")?;
            stdin
                .write_all(ruleset.as_bytes())
                .context("cannot write the ruleset to nft")?;
        }
        let output = child.wait_with_output().context("cannot wait for nft")?;
        checked(output, &format!("nft in {host}")).map(drop)
    }

    /// Drops `percent` % of the IPv4 packets arriving at `host` on
    /// `interface`, chosen at random by nftables (`numgen random mod 100 < N
    /// drop`) at the interface's ingress hook: before the IP layer, so it
    /// works for a router as for an end host. ARP is spared, so the hosts
    /// still find each other's MAC address. Call it on both ends for loss
    /// both ways; [`Lab::remove_loss`] takes it away.
    pub fn add_loss(&self, host: &str, interface: &str, percent: u32) -> Result<()> {
        self.nft(host, &loss_ruleset(interface, percent))
    }

    /// Removes the rule of [`Lab::add_loss`].
    pub fn remove_loss(&self, host: &str, interface: &str) -> Result<()> {
        let table = format!("netlab_loss_{interface}");
        self.run(host, &["nft", "delete", "table", "netdev", &table])
            .map(drop)
    }

    /// Runs `body` on a thread that has entered `host`'s network namespace:
    /// the sockets it creates live in that host (and keep living there when
    /// handed to another thread). Panics in `body` propagate.
    pub fn in_host<T: Send>(&self, host: &str, body: impl FnOnce() -> T + Send) -> T {
        let path = format!("{NETNS_DIR}/{}", self.namespace(host));
        let namespace = File::open(&path).unwrap_or_else(|err| panic!("cannot open {path}: {err}"));
        thread::scope(|scope| {
            let thread = scope.spawn(move || {
                // setns(2) with CLONE_NEWNET moves only the calling thread.
                setns(&namespace, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|err| panic!("cannot enter {path}: {err}"));
                body()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Starts tcpdump on `interface` inside `host`, recording and printing
    /// each packet that matches `filter` (pcap-filter syntax, e.g. `tcp port
    /// 8890`); `extra` adds tcpdump options such as `-v`. Returns once
    /// tcpdump is listening.
    pub fn capture(
        &self,
        host: &str,
        interface: &str,
        extra: &[&str],
        filter: &str,
    ) -> Result<Capture> {
        let mut command = self.command(host, "tcpdump");
        // -n: numbers, not names; -t: no times (they change every run); -S:
        // absolute sequence numbers, which `normalize` makes relative (tcpdump
        // leaves some absolute, such as a bare RST's); -l and
        // --immediate-mode: each packet printed as soon as it is seen. In
        // immediate mode each packet takes a frame of the snapshot length in
        // the capture buffer: 2048 bytes hold any packet at MTU 1500, and 8
        // MiB hold thousands of them, where the defaults (256 KiB packets, 2
        // MiB) would hold 8 and drop a burst of fragments.
        // -w FILE: every packet goes to a pcap file, which `Capture::stop`
        // parses; --print: each is also printed, as without -w; -U: each
        // reaches the file as soon as it is captured.
        let file = Capture::new_file();
        #[rustfmt::skip]
        command
            .args(["-i", interface, "-n", "-t", "-S", "-l", "--immediate-mode", "-s", "2048", "-B", "8192"])
            .arg("-U").arg("-w").arg(&file).arg("--print")
            .args(extra)
            .args(filter.split_whitespace());
        Capture::start(command, &format!("tcpdump on {host} {interface}"), file)
    }

    /// The process ids running inside `host`.
    pub fn pids(&self, host: &str) -> Vec<Pid> {
        namespace_pids(self.namespace(host))
    }

    /// Tears the lab down now, reporting errors (dropping it ignores them).
    pub fn down(mut self) -> Result<()> {
        self.keep = false;
        let result = self.teardown();
        self.namespaces.clear();
        result
    }

    fn teardown(&mut self) -> Result<()> {
        let mut first_error = None;
        for (_, namespace) in self.namespaces.iter().rev() {
            if let Err(err) = remove_namespace(namespace) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.teardown();
        }
    }
}

/// The nftables ruleset of [`Lab::add_loss`].
pub fn loss_ruleset(interface: &str, percent: u32) -> String {
    format!(
        "table netdev netlab_loss_{interface} {{\n\
         \tchain ingress {{\n\
         \t\ttype filter hook ingress device \"{interface}\" priority 0; policy accept;\n\
         \t\tmeta protocol ip numgen random mod 100 < {percent} drop\n\
         \t}}\n\
         }}\n"
    )
}

fn named_prefix() -> String {
    std::env::var(NAMED_PREFIX_VAR).unwrap_or_default()
}

fn require_access() -> Result<()> {
    match access() {
        Ok(Access::Root) => Ok(()),
        Ok(Access::UserNamespace) => Err(anyhow!(
            "the lab needs root here: run it as root (sudo), or inside \
             `unshare --user --map-root-user --net --mount` as the lab's tests do"
        )),
        Err(reason) => Err(anyhow!(reason)),
    }
}

/// Runs `ip ARGS` in this namespace.
fn ip(args: &[&str]) -> Result<String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ip`: is iproute2 installed?")?;
    checked(output, &format!("`ip {}`", args.join(" ")))
}

fn checked(output: Output, what: &str) -> Result<String> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn namespace_exists(namespace: &str) -> bool {
    std::path::Path::new(NETNS_DIR).join(namespace).exists()
}

fn namespace_pids(namespace: &str) -> Vec<Pid> {
    ip(&["netns", "pids", namespace])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// Kills whatever still runs inside `namespace`, then deletes it (its veth
/// ends go with it, and their peers with them).
fn remove_namespace(namespace: &str) -> Result<()> {
    for pid in namespace_pids(namespace) {
        let _ = kill(pid, Signal::SIGKILL);
    }
    ip(&["netns", "delete", namespace]).map(drop)
}

/// Removes test labs' namespaces whose process is gone.
fn remove_orphans() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(TEST_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove_namespace(&name);
        }
    }
}
