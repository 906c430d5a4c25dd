//! What the user gets wrong: bad arguments, no server, a busy port. Each
//! gets a clear message and a non-zero exit, never a panic.

use std::net::SocketAddr;

use predicates::prelude::*;
use testkit::LOCALHOST;
use testkit::cli::{self, run, usage_error};
use testkit::tcp::{start_server, start_server_expecting_failure};

const SERVER: &str = "lesson3-server";
const CLIENT: &str = "lesson3-client";

#[test]
fn bad_arguments_exit_2_with_usage() {
    for name in [SERVER, CLIENT] {
        usage_error(name, &["--no-such-flag"], "Usage:");
    }
    for (name, args) in [
        (SERVER, ["--bind", "localhost"]),
        (SERVER, ["--bind", "127.0.0.1"]),
        (SERVER, ["--backlog", "0"]),
        (SERVER, ["--backlog", "many"]),
        (CLIENT, ["--server", "127.0.0.1:99999"]),
    ] {
        usage_error(name, &args, &format!("invalid value '{}'", args[1]));
    }
}

#[test]
fn help_says_how_to_listen_on_all_interfaces() {
    run(SERVER, &["--help"])
        .success()
        .stdout(predicate::str::contains("--bind 0.0.0.0:8890"));
}

#[test]
fn the_client_reports_connection_refused_in_one_line() {
    // A port nobody listens on: a listener's port, closed again.
    let addr = testkit::free_tcp_addr(LOCALHOST).to_string();
    cli::runtime_error(
        testkit::command(CLIENT, &["--server", &addr]),
        &format!(
            "error: cannot connect to {addr}: ECONNREFUSED: Connection refused; is the server running?\n"
        ),
    );
}

#[test]
fn a_busy_port_fails_with_the_address_the_error_and_a_hint() {
    let (_server, addr) = start_server(SERVER, SocketAddr::new(LOCALHOST, 0), &[]);
    let second = start_server_expecting_failure(SERVER, addr);
    let stderr = second.stderr();
    let mut lines = stderr.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!("error: cannot bind TCP socket to {addr}: EADDRINUSE: Address already in use")
                .as_str()
        ),
        "a second server on {addr}, where the first listens: the first line of its stderr \
         (left) should name the address and the OS error (right)"
    );
    let hint = lines.next().unwrap_or_default();
    assert!(
        hint.starts_with("hint: ") && hint.contains("TIME_WAIT") && hint.contains("lesson 4"),
        "expected a second line `hint: …` naming TIME_WAIT and lesson 4, got:\n{stderr}"
    );
    assert_eq!(lines.next(), None, "expected two lines, got:\n{stderr}");
}

/// Ports below `net.ipv4.ip_unprivileged_port_start` (1024 unless changed;
/// 0 in many containers) need privileges: without them, bind fails with
/// EACCES, reported in one line. As root the server runs as user nobody.
#[test]
fn a_privileged_port_fails_with_permission_denied() {
    let Some((bind, output)) = cli::bind_privileged_port(SERVER) else {
        return;
    };
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("error: cannot bind TCP socket to {bind}: EACCES: Permission denied\n")
    );
}
