//! The echo servers the benchmark compares, and how it starts them.
//!
//! Each server runs as it ships: no benchmark-only flags. The suite gives
//! the child what the benchmark needs before it runs (`pre_exec`, between
//! fork and exec): a soft RLIMIT_NOFILE raised to the hard limit, so ten
//! thousand clients fit; CPU 0, the load generator's CPU; and a process
//! group of its own, so stopping it also stops every process it forked.
//! Its output goes to /dev/null: a terminal would measure the terminal.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, setpgid};
use workspace_bin::Profile;

/// A server design in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// A short name for tables and file names.
    pub key: &'static str,
    /// What it is, as the tables show it.
    pub label: &'static str,
    pub program: Program,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// A binary of this workspace, with `--bind` and `--backlog`.
    Workspace(&'static str),
    /// `ncat -l -k --exec /bin/cat`.
    Ncat,
}

pub const LESSON4: Peer = Peer {
    key: "lesson4",
    label: "lesson 4 (thread per client)",
    program: Program::Workspace("lesson4-server"),
};
pub const LESSON5: Peer = Peer {
    key: "lesson5",
    label: "lesson 5 (epoll, one thread)",
    program: Program::Workspace("lesson5-server"),
};
pub const FORK: Peer = Peer {
    key: "fork",
    label: "fork per client (tools/fork-echo)",
    program: Program::Workspace("fork-echo-server"),
};
pub const TOKIO: Peer = Peer {
    key: "tokio",
    label: "tokio (tools/tokio-echo)",
    program: Program::Workspace("tokio-echo-server"),
};
pub const NCAT: Peer = Peer {
    key: "ncat",
    label: "ncat --exec cat (relay + cat per client)",
    program: Program::Ncat,
};

pub const ALL: [Peer; 5] = [LESSON4, LESSON5, FORK, TOKIO, NCAT];

impl Peer {
    /// The label without its parenthesis, for chart legends.
    pub fn short(&self) -> &'static str {
        self.label.split(" (").next().unwrap_or(self.label)
    }

    /// Finds (building it if needed) the program; an error says why the
    /// peer cannot run here.
    pub fn locate(&self) -> Result<PathBuf> {
        match self.program {
            Program::Workspace(bin) => workspace_bin::path(bin, Profile::Release)
                .with_context(|| format!("{bin} is not a binary of this workspace (yet)")),
            Program::Ncat => which::which("ncat")
                .ok()
                .context("ncat is not installed (apt-get install ncat)"),
        }
    }
}

/// A running server; dropping it stops its whole process group.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A forking server's children end when their clients leave, and
        // the server reaps them. Killed with their parent instead, they
        // would be left for PID 1 to reap (some containers' PID 1 does so
        // late), each holding a process id meanwhile: give them a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while crate::memory::tree(self.child.id()).len() > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left of the group (a forking server's children) goes
        // too, and the next measurement waits until every one is gone: the
        // kernel stacks of ten thousand exiting processes would otherwise
        // still show in its machine-wide readings.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(15);
        while killpg(group, None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `peer` (found at `path`) on a free loopback port and waits until
/// it accepts connections.
pub fn start(peer: &Peer, path: &Path, backlog: u32) -> Result<Server> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("cannot find a free loopback port")?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = Command::new(path);
    match peer.program {
        Program::Workspace(_) => {
            command.args([
                "--bind",
                &addr.to_string(),
                "--backlog",
                &backlog.to_string(),
            ]);
        }
        Program::Ncat => {
            // ncat has no backlog option: it listens with a backlog of 10.
            command.args([
                "-l",
                "-k",
                "--max-conns",
                "20000",
                "--exec",
                "/bin/cat",
                "127.0.0.1",
                &port.to_string(),
            ]);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the child may only make
    // async-signal-safe calls; setrlimit, sched_setaffinity and setpgid are
    // plain system calls that allocate nothing.
    unsafe {
        command.pre_exec(|| {
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
            setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
            let mut cpus = CpuSet::new();
            cpus.set(0)?;
            // Not allowed in some containers: the run says so (see `pin`).
            let _ = sched_setaffinity(Pid::from_raw(0), &cpus);
            setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{} exited ({status}) before accepting on {addr}",
                peer.label
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not accept connections on {addr} within 10 s",
                peer.label
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Server { child, addr })
}

/// Pins `pid` (0: this process) to CPU 0; false when not allowed.
pub fn pin(pid: Pid) -> bool {
    let mut cpus = CpuSet::new();
    cpus.set(0).is_ok() && sched_setaffinity(pid, &cpus).is_ok()
}
