//! What the user gets wrong — bad arguments, no server, a busy port — gets
//! a clear message and a non-zero exit from all three programs, never a
//! panic.

mod common;

use std::net::SocketAddr;

use common::{CHAT, CLIENT, SERVER};
use testkit::cli::{self, usage_error};
use testkit::tcp::{start_server, start_server_expecting_failure};
use testkit::{LOCALHOST, command, udp};

#[test]
fn bad_arguments_exit_2_with_usage() {
    for name in [CHAT, SERVER, CLIENT] {
        usage_error(name, &["--no-such-flag"], "Usage:");
    }
    for (name, args) in [
        (SERVER, ["--bind", "localhost:8890"]),
        (SERVER, ["--backlog", "0"]),
        (CLIENT, ["--server", "127.0.0.1:99999"]),
        (CHAT, ["--bind", "127.0.0.1"]),
        (CHAT, ["--peer", "256.0.0.1:5"]),
    ] {
        usage_error(name, &args, &format!("invalid value '{}'", args[1]));
    }
    usage_error(
        CHAT,
        &["--bind", "127.0.0.1:0", "--peer", "[::1]:55577"],
        "must both be IPv4 or both IPv6",
    );
    // Lesson 2's receive timeout has no job left here (nothing waits with
    // a timeout), so the flag is gone.
    usage_error(
        CHAT,
        &["--recv-timeout-ms", "100"],
        "unexpected argument '--recv-timeout-ms'",
    );
}

#[test]
fn the_client_reports_connection_refused_in_one_line() {
    let addr = testkit::free_tcp_addr(LOCALHOST).to_string();
    cli::runtime_error(
        command(CLIENT, &["--server", &addr]),
        &format!(
            "error: cannot connect to {addr}: ECONNREFUSED: Connection refused; is the server running?\n"
        ),
    );
}

#[test]
fn a_busy_port_fails_in_one_line() {
    let (_server, addr) = start_server(SERVER, SocketAddr::new(LOCALHOST, 0), &[]);
    let second = start_server_expecting_failure(SERVER, addr);
    assert_eq!(
        second.stderr(),
        format!("error: cannot bind TCP socket to {addr}: EADDRINUSE: Address already in use\n")
    );

    let taken = udp::bound_socket(LOCALHOST);
    let addr = taken.local_addr().unwrap().to_string();
    cli::runtime_error(
        command(CHAT, &["--bind", &addr]),
        &format!("error: cannot bind UDP socket to {addr}: EADDRINUSE: Address already in use\n"),
    );
}
