//! What every test in the course shares.
//!
//! The lessons are interactive programs that talk over real sockets, so their
//! tests need the same few things again and again: a free port on loopback, a
//! running binary whose output can be *waited on* (with a deadline, so nothing
//! hangs), a way to type into it and to signal it, a look at the kernel's TCP
//! table, and a way to store what a run printed so the book can show it.
//! Each of those lives here once; the lesson crates stay free of test plumbing.

/// Helpers for every lesson's command-line tests: usage and runtime errors.
pub mod cli;
mod generated;
mod process;
/// Helpers for the TCP lessons (3, 4 and 5): servers, clients, echoes, TCP states.
pub mod tcp;
mod tcp_table;
/// The post's TIME_WAIT reproduction (lesson 4's test and `just timewait`).
pub mod timewait;
pub mod udp;

pub use generated::{check_generated, normalize};
pub use process::{Output, Running};
pub use tcp_table::{SocketTimer, TcpSocket, TcpState, ss_line, tcp_sockets};
/// The workspace's top folder (one definition, in `workspace-bin`).
pub use workspace_bin::workspace_root;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long any single wait in a test may take before the test fails.
///
/// Generous, because CI machines are small and tests run in parallel; a
/// passing test never waits this long, it waits for a printed line.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// IPv4 loopback, the only address (with `::1`) the tests ever use.
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A UDP port on `ip` that was free a moment ago.
///
/// The kernel picks it (bind to port 0), and the socket is closed again so
/// that the program under test can bind it. Another test could in principle
/// grab the same port in between; the kernel hands out ephemeral ports in a
/// rotating order, which makes that very unlikely.
pub fn free_udp_addr(ip: IpAddr) -> SocketAddr {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind a UDP socket to port 0");
    socket.local_addr().expect("local address of a UDP socket")
}

/// A TCP port on `ip` that was free a moment ago (see [`free_udp_addr`]).
pub fn free_tcp_addr(ip: IpAddr) -> SocketAddr {
    let listener =
        TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind a TCP listener to port 0");
    listener
        .local_addr()
        .expect("local address of a TCP listener")
}

/// The first `IP:PORT` (or `[IPv6]:PORT`) in `text`.
///
/// The lessons print the address they actually bound; tests read it back with
/// this, which is what lets every test bind port 0.
pub fn find_socket_addr(text: &str) -> Option<SocketAddr> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(' || c == ')')
        .map(|word| word.trim_end_matches(['.', ':']))
        .find_map(|word| word.parse().ok())
}

/// A port below `net.ipv4.ip_unprivileged_port_start`, which only a
/// privileged process may bind, or why there is none to test with.
///
/// The sysctl is 1024 by default, but many containers set it to 0, and then
/// every port is open to everyone: no EACCES to show.
pub fn privileged_port() -> Result<u16, String> {
    const SYSCTL: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let start: u32 = std::fs::read_to_string(SYSCTL)
        .map_err(|err| format!("cannot read {SYSCTL}: {err}"))?
        .trim()
        .parse()
        .map_err(|err| format!("{SYSCTL} is not a number: {err}"))?;
    match start {
        0 | 1 => Err(format!(
            "net.ipv4.ip_unprivileged_port_start is {start}: any user may bind any port here"
        )),
        // The highest privileged port: the limit itself is read, not assumed.
        start => Ok(u16::try_from(start - 1).unwrap_or(u16::MAX)),
    }
}

/// Makes `command` run without privileges: as user and group `nobody`
/// (65534) when the tests run as root, unchanged otherwise. (Starting it
/// fails where root cannot switch users, e.g. in some user namespaces.)
pub fn unprivileged(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if nix::unistd::geteuid().is_root() {
        command.uid(65534).gid(65534);
    }
    command
}

/// The environment variable that points [`bin`] at another build of the
/// lesson programs (a learner's in `practice/`, or a broken copy).
pub const PRACTICE_BIN_DIR: &str = "PRACTICE_BIN_DIR";

/// The path of a binary of this workspace, rebuilt by cargo if it is stale.
///
/// A test may run a binary of its own package (cargo built it just now) or of
/// another lesson, e.g. lesson 4's tests start lesson 3's server. Cargo is
/// asked for the latter every time (see the `workspace-bin` crate), so a test
/// never runs an old build, and `CARGO_TARGET_DIR` and `--release` are
/// honoured.
///
/// With `PRACTICE_BIN_DIR` set (the practice checker sets it), the binary is
/// `$PRACTICE_BIN_DIR/<name>` instead: the same tests then check a learner's
/// program, or a broken one, without knowing it.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(PRACTICE_BIN_DIR) {
        let path = PathBuf::from(dir).join(name);
        assert!(
            path.is_file(),
            "{PRACTICE_BIN_DIR} is set but holds no program {name}: {} is missing",
            path.display()
        );
        return path;
    }
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return path.into();
    }
    workspace_bin::path(name, workspace_bin::Profile::current())
        .unwrap_or_else(|err| panic!("{err:#}"))
}

/// A [`Command`] for a workspace binary with `args`.
pub fn command(name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin(name));
    cmd.args(args);
    cmd
}
