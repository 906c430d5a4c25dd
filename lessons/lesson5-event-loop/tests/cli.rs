//! What the user gets wrong — bad arguments, no server, a busy port — gets
//! a clear message and a non-zero exit from all three programs, never a
//! panic.

mod common;

use std::net::{SocketAddr, UdpSocket};

use assert_cmd::Command;
use common::{CHAT, CLIENT, SERVER, start_server};
use predicates::prelude::*;
use testkit::{DEADLINE, LOCALHOST, Running, command};

fn run(name: &str, args: &[&str]) -> assert_cmd::assert::Assert {
    Command::new(testkit::bin(name))
        .args(args)
        .write_stdin("")
        .timeout(DEADLINE)
        .assert()
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for name in [CHAT, SERVER, CLIENT] {
        run(name, &["--no-such-flag"]).code(2).stderr(
            predicate::str::contains("Usage:").and(predicate::str::contains("panicked").not()),
        );
    }
    for (name, args) in [
        (SERVER, ["--bind", "localhost:8890"]),
        (SERVER, ["--backlog", "0"]),
        (CLIENT, ["--server", "127.0.0.1:99999"]),
        (CHAT, ["--bind", "127.0.0.1"]),
        (CHAT, ["--peer", "256.0.0.1:5"]),
    ] {
        run(name, &args).code(2).stderr(
            predicate::str::contains(format!("invalid value '{}'", args[1]))
                .and(predicate::str::contains("panicked").not()),
        );
    }
    run(CHAT, &["--bind", "127.0.0.1:0", "--peer", "[::1]:55577"])
        .code(2)
        .stderr(predicate::str::contains("must both be IPv4 or both IPv6"));
    // Lesson 2's receive timeout has no job left here (nothing waits with
    // a timeout), so the flag is gone.
    run(CHAT, &["--recv-timeout-ms", "100"])
        .code(2)
        .stderr(predicate::str::contains(
            "unexpected argument '--recv-timeout-ms'",
        ));
}

#[test]
fn the_client_reports_connection_refused_in_one_line() {
    let addr = testkit::free_tcp_addr(LOCALHOST).to_string();
    run(CLIENT, &["--server", &addr]).code(1).stderr(format!(
        "error: cannot connect to {addr}: ECONNREFUSED: Connection refused; is the server running?\n"
    ));
}

#[test]
fn a_busy_port_fails_in_one_line() {
    let (_server, addr) = start_server(SocketAddr::new(LOCALHOST, 0), &[]);
    let mut second = Running::start("second", command(SERVER, &["--bind", &addr.to_string()]));
    assert_eq!(second.wait_exit().code(), Some(1), "{}", second.describe());
    assert_eq!(
        second.stderr(),
        format!("error: cannot bind TCP socket to {addr}: EADDRINUSE: Address already in use\n")
    );

    let taken = UdpSocket::bind(SocketAddr::new(LOCALHOST, 0)).unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    run(CHAT, &["--bind", &addr]).code(1).stderr(format!(
        "error: cannot bind UDP socket to {addr}: EADDRINUSE: Address already in use\n"
    ));
}
