//! Lesson 4's server behaves as lesson 3's in everything but SO_REUSEADDR:
//! same arguments, same echo, same errors (with a hint of its own on EADDRINUSE).

use std::net::SocketAddr;

use predicates::prelude::*;
use testkit::LOCALHOST;
use testkit::cli::{self, run, usage_error};
use testkit::tcp::{assert_echo, connect, start_server, start_server_expecting_failure};

const SERVER: &str = "lesson4-server";

#[test]
fn bad_arguments_exit_2_with_usage() {
    usage_error(SERVER, &["--no-such-flag"], "Usage:");
    for args in [["--bind", "localhost:8890"], ["--backlog", "0"]] {
        usage_error(SERVER, &args, &format!("invalid value '{}'", args[1]));
    }
}

#[test]
fn help_says_how_to_listen_on_all_interfaces() {
    run(SERVER, &["--help"])
        .success()
        .stdout(predicate::str::contains("--bind 0.0.0.0:8890"));
}

#[test]
fn echoes_like_lesson_3() {
    let (server, addr) = start_server(SERVER, SocketAddr::new(LOCALHOST, 0), &[]);
    let stream = connect(addr);
    let me = stream.local_addr().unwrap();
    assert_echo(&stream, b"hello, lesson 4\n");
    server.expect_stdout_line(&format!("recv from {me}: hello, lesson 4"));
}

#[test]
fn a_port_another_server_listens_on_fails_with_a_hint_naming_the_holders() {
    // SO_REUSEADDR never lets two sockets listen on one port.
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
        hint.starts_with(&format!(
            "hint: {addr} is held by a server still listening on it, or by connections"
        )),
        "{stderr}"
    );
    assert_eq!(lines.next(), None, "{stderr}");
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
