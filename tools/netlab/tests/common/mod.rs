//! What the lab's tests share: a lab of the post's two machines, lesson
//! binaries started inside a host, `ss` and the kernel's counters read
//! inside a host, and a capture rendered for the book.

#![allow(dead_code)] // Each test file uses its own part of this.

use std::net::SocketAddr;
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
