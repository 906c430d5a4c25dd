//! What the user gets wrong: bad arguments, no server, a busy port. Each
//! gets a clear message and a non-zero exit, never a panic.

use std::net::SocketAddr;

use assert_cmd::Command;
use predicates::prelude::*;
use testkit::LOCALHOST;

const SERVER: &str = "lesson3-server";
use testkit::tcp::{start_server, start_server_expecting_failure};

fn run(name: &str, args: &[&str]) -> assert_cmd::assert::Assert {
    Command::new(testkit::bin(name))
        .args(args)
        .timeout(testkit::DEADLINE)
        .assert()
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for name in ["lesson3-server", "lesson3-client"] {
        run(name, &["--no-such-flag"]).code(2).stderr(
            predicate::str::contains("Usage:").and(predicate::str::contains("panicked").not()),
        );
    }
    for (name, args) in [
        ("lesson3-server", ["--bind", "localhost"]),
        ("lesson3-server", ["--bind", "127.0.0.1"]),
        ("lesson3-server", ["--backlog", "0"]),
        ("lesson3-server", ["--backlog", "many"]),
        ("lesson3-client", ["--server", "127.0.0.1:99999"]),
    ] {
        run(name, &args).code(2).stderr(
            predicate::str::contains(format!("invalid value '{}'", args[1]))
                .and(predicate::str::contains("panicked").not()),
        );
    }
}

#[test]
fn help_says_how_to_listen_on_all_interfaces() {
    run("lesson3-server", &["--help"])
        .success()
        .stdout(predicate::str::contains("--bind 0.0.0.0:8890"));
}

#[test]
fn the_client_reports_connection_refused_in_one_line() {
    // A port nobody listens on: a listener's port, closed again.
    let addr = testkit::free_tcp_addr(LOCALHOST).to_string();
    let output = run("lesson3-client", &["--server", &addr])
        .code(1)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr,
        format!(
            "error: cannot connect to {addr}: ECONNREFUSED: Connection refused; is the server running?\n"
        )
    );
}

#[test]
fn a_busy_port_fails_with_the_address_the_error_and_a_hint() {
    let (_server, addr) = start_server("lesson3-server", SocketAddr::new(LOCALHOST, 0), &[]);
    let second = start_server_expecting_failure("lesson3-server", addr);
    let stderr = second.stderr();
    let mut lines = stderr.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!("error: cannot bind TCP socket to {addr}: EADDRINUSE: Address already in use")
                .as_str()
        )
    );
    let hint = lines.next().unwrap_or_default();
    assert!(
        hint.starts_with("hint: ") && hint.contains("TIME_WAIT") && hint.contains("lesson 4"),
        "{stderr}"
    );
    assert_eq!(lines.next(), None, "{stderr}");
}

/// Ports below `net.ipv4.ip_unprivileged_port_start` (1024 unless changed;
/// 0 in many containers) need privileges: without them, bind fails with
/// EACCES, reported in one line. As root the server runs as user nobody.
#[test]
fn a_privileged_port_fails_with_permission_denied() {
    let port = match testkit::privileged_port() {
        Ok(port) => port,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let bind = format!("127.0.0.1:{port}");
    let mut command = testkit::command(SERVER, &["--bind", &bind]);
    let output = match testkit::unprivileged(&mut command).output() {
        Ok(output) => output,
        Err(err) => {
            println!("skipped: cannot start the server without privileges: {err}");
            return;
        }
    };
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("error: cannot bind TCP socket to {bind}: EACCES: Permission denied\n")
    );
}
