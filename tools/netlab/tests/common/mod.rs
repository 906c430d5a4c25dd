//! What the lab's tests share: a lab of the post's two machines, lesson
//! binaries started inside a host, `ss` and the kernel's counters read
//! inside a host, and a capture rendered for the book.

#![allow(dead_code)] // Each test file uses its own part of this.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netlab::{Capture, Lab, Topology};
use testkit::Running;

#[allow(unused_imports)] // Not every test file uses every one.
pub use netlab::{ECHO_PORT, PORT_A, PORT_B, VM1, VM2};

/// The lab of the first post for test `test` (see `netlab::lab_for_test`:
/// `None` means the test was skipped, or ran inside a user namespace).
pub fn two_vms(test: &str) -> Option<Lab> {
    netlab::lab_for_test(&Topology::two_vms(), test)
}

pub fn vm1(port: u16) -> SocketAddr {
    SocketAddr::from((VM1, port))
}

pub fn vm2(port: u16) -> SocketAddr {
    SocketAddr::from((VM2, port))
}

/// Starts workspace binary `bin` with `args` inside `host`.
pub fn start_in(lab: &Lab, host: &str, label: &str, bin: &str, args: &[&str]) -> Running {
    let mut command = lab.command(host, testkit::bin(bin));
    command.args(args);
    Running::start(label, command)
}

/// The echo server's `--bind` in the lab: every address of its host, as the
/// post's INADDR_ANY.
pub const ECHO_BIND: [&str; 2] = ["--bind", "0.0.0.0:8890"];

/// Starts echo server `bin` (`lesson3-server`, `lesson4-server`) in `host`
/// bound to [`ECHO_BIND`] and waits for its `listening on 0.0.0.0:8890`.
pub fn start_server_in(lab: &Lab, host: &str, label: &str, bin: &str) -> Running {
    let server = start_in(lab, host, label, bin, &ECHO_BIND);
    server.expect_stdout_line(&format!("listening on 0.0.0.0:{ECHO_PORT}"));
    server
}

/// Starts `lesson3-client` in `host` toward the echo server on vm1 and
/// waits for its `connected to` line.
pub fn start_client_in(lab: &Lab, host: &str, label: &str) -> Running {
    let target = vm1(ECHO_PORT).to_string();
    let client = start_in(lab, host, label, "lesson3-client", &["--server", &target]);
    client.expect_stdout_line(&format!("connected to {target}"));
    client
}

/// Starts chat binary `bin` in `host` with `--bind bind --peer peer` and a
/// short receive timeout (`testkit::udp::FAST`); waits for its `bound to`
/// line and for it to be ready for a line (`testkit::udp::ready_text`).
pub fn start_peer_in(
    lab: &Lab,
    host: &str,
    label: &str,
    bin: &str,
    bind: SocketAddr,
    peer: SocketAddr,
) -> Running {
    let (bind, peer) = (bind.to_string(), peer.to_string());
    let args = [&["--bind", &bind, "--peer", &peer][..], testkit::udp::FAST].concat();
    let running = start_in(lab, host, label, bin, &args);
    running.expect_stdout_line(&format!("bound to {bind}"));
    running.expect_stdout(testkit::udp::ready_text(bin));
    running
}

/// Peer A of chat binary `bin` on vm1 (port [`PORT_A`]) and peer B on vm2
/// (port [`PORT_B`]), each sending to the other, both at their prompt.
pub fn start_peers_on_both_vms(lab: &Lab, bin: &str) -> (Running, Running) {
    let (a, b) = (vm1(PORT_A), vm2(PORT_B));
    let peer_a = start_peer_in(lab, "vm1", "peer A", bin, a, b);
    let peer_b = start_peer_in(lab, "vm2", "peer B", bin, b, a);
    (peer_a, peer_b)
}

/// Turns off delayed ACKs (see [`quick_acks`]) and starts tcpdump on vm1's
/// link for the echo server's port: the captures of a TCP connection.
pub fn capture_echo_port(lab: &Lab) -> Capture {
    quick_acks(lab);
    lab.capture("vm1", "eth0", &[], &format!("tcp port {ECHO_PORT}"))
        .expect("start tcpdump on vm1")
}

/// A TCP connection from vm2 to a plain listener on vm1's echo port,
/// established (the handshake's last ACK seen by `capture`): returns vm2's
/// end and vm1's accepted end.
pub fn connection_vm2_to_vm1(lab: &Lab, capture: &Capture) -> (TcpStream, TcpStream) {
    let listener = lab.in_host("vm1", || {
        TcpListener::bind(vm1(ECHO_PORT)).expect("listen on vm1")
    });
    let client = lab.in_host("vm2", || {
        TcpStream::connect(vm1(ECHO_PORT)).expect("connect from vm2")
    });
    let (accepted, _) = listener.accept().expect("accept on vm1");
    capture
        .wait_for("Flags [.], ack 1,")
        .expect("the handshake's last ACK");
    (client, accepted)
}

/// `ss -tan` inside `host`, only the sockets whose local or remote port is
/// `port`, without the header: one line per socket.
pub fn ss_tcp(lab: &Lab, host: &str, port: u16) -> Vec<String> {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    lab.run(host, &["ss", "-tanH", "state", "all", &filter])
        .expect("ss inside the host")
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Waits (bounded) until a socket of `host` on `port` is in `state`
/// (`ss`'s name: FIN-WAIT-2, TIME-WAIT…); returns its `ss` line.
pub fn wait_for_state(lab: &Lab, host: &str, port: u16, state: &str) -> String {
    let deadline = Instant::now() + testkit::DEADLINE;
    loop {
        let sockets = ss_tcp(lab, host, port);
        if let Some(line) = sockets.iter().find(|line| line.starts_with(state)) {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no socket on port {port} in {host} reached {state}; ss shows:\n{}",
            sockets.join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A counter of the kernel's TCP statistics (`RetransSegs`, `OutSegs`…)
/// inside `host`, from /proc/net/snmp as seen from that namespace: a fresh
/// namespace starts at zero, so this is the test's own count.
pub fn tcp_counter(lab: &Lab, host: &str, name: &str) -> u64 {
    snmp_counter(lab, host, "Tcp", name)
}

/// A counter of /proc/net/snmp's `protocol` lines (`Tcp`, `Udp`…) inside
/// `host`.
pub fn snmp_counter(lab: &Lab, host: &str, protocol: &str, name: &str) -> u64 {
    let snmp = lab
        .run(host, &["cat", "/proc/net/snmp"])
        .expect("read /proc/net/snmp");
    let prefix = format!("{protocol}:");
    let mut lines = snmp.lines().filter(|line| line.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        panic!("no {protocol} lines in /proc/net/snmp:\n{snmp}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no {protocol} counter {name} in /proc/net/snmp"))
}

/// Turns off delayed ACKs on both hosts' link route (`quickack 1`): every
/// ACK goes out at once, as a packet of its own, so a capture shows the same
/// packets in the same order on every run.
pub fn quick_acks(lab: &Lab) {
    for (host, address) in [("vm1", VM1), ("vm2", VM2)] {
        let src = address.to_string();
        #[rustfmt::skip]
        lab.run(host, &[
            "ip", "route", "change", "192.168.126.0/24", "dev", "eth0", "proto", "kernel",
            "scope", "link", "src", &src, "quickack", "1",
        ])
        .expect("turn off delayed ACKs");
    }
}

/// Stops `capture` and renders it for the book: `header` (the command
/// line), then each packet and note.
pub fn render(capture: Capture, header: &str) -> String {
    let lines = capture.finish().expect("stop tcpdump");
    format!(
        "{header}\n{}",
        lines
            .iter()
            .map(|line| format!("{line}\n"))
            .collect::<String>()
    )
}
