//! Lesson 1's command line: what cannot be parsed is a usage error (status
//! 2), what the kernel refuses is one `error:` line (status 1), never a
//! panic; a flag given twice takes its last value.

use testkit::cli::{self, runtime_error};
use testkit::udp::{self, PROMPT};
use testkit::{LOCALHOST, command};

const BIN: &str = "lesson1-chat";

/// `args` are a usage error whose message contains `wanted`.
fn usage_error(args: &[&str], wanted: &str) {
    cli::usage_error(BIN, args, wanted);
}

/// What cannot be parsed is a usage error; what the kernel refuses (a port
/// in use, an address of no interface here) is one `error:` line.
#[test]
fn bad_input_gets_a_one_line_error() {
    usage_error(
        &["--bind", "127.0.0.1"],
        "invalid value '127.0.0.1' for '--bind <IP:PORT>'",
    );
    usage_error(
        &["--bind", "localhost:55566"],
        "invalid value 'localhost:55566'",
    );
    usage_error(
        &["--peer", "127.0.0.1:70000"],
        "invalid value '127.0.0.1:70000' for '--peer <IP:PORT>'",
    );
    usage_error(&["--peer", "256.0.0.1:5"], "invalid value '256.0.0.1:5'");
    usage_error(
        &["--recv-timeout-ms", "0"],
        "invalid value '0' for '--recv-timeout-ms <MS>'",
    );
    usage_error(
        &["--bind", "127.0.0.1:0", "--peer", "[::1]:55577"],
        "must both be IPv4 or both IPv6",
    );

    // The port is taken by another socket.
    let taken = udp::bound_socket(LOCALHOST);
    let addr = taken.local_addr().unwrap().to_string();
    runtime_error(
        command(BIN, &["--bind", &addr]),
        &format!("error: cannot bind UDP socket to {addr}: EADDRINUSE: Address already in use\n"),
    );
    // An address that belongs to no interface of this machine (TEST-NET-1,
    // reserved for documentation): bind fails locally, nothing is sent.
    runtime_error(
        command(BIN, &["--bind", "192.0.2.1:55566"]),
        "error: cannot bind UDP socket to 192.0.2.1:55566: EADDRNOTAVAIL: Cannot assign requested address\n",
    );
}

/// Ports below `net.ipv4.ip_unprivileged_port_start` (1024 unless changed;
/// 0 in many containers) need privileges: without them, bind fails with
/// EACCES. As root the program runs as user nobody.
#[test]
fn a_privileged_port_fails_with_permission_denied() {
    let Some((bind, output)) = cli::bind_privileged_port(BIN) else {
        return;
    };
    assert_eq!(
        output.status.code(),
        Some(1),
        "ran {BIN} --bind {bind} as an unprivileged user: expected status 1 and one error line; got {}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("error: cannot bind UDP socket to {bind}: EACCES: Permission denied\n")
    );
}

/// `just lesson1 a --peer IP:PORT` appends the user's --peer after the
/// recipe's own: the last one wins.
#[test]
fn a_flag_given_twice_takes_its_last_value() {
    let peer = udp::bound_socket(LOCALHOST);
    let peer_addr = peer.local_addr().unwrap().to_string();
    let mut app = testkit::Running::start(
        "peer A",
        command(
            BIN,
            &[
                "--bind",
                "127.0.0.1:55566",
                "--peer",
                "127.0.0.1:55577",
                "--bind",
                "127.0.0.1:0",
                "--peer",
                &peer_addr,
            ],
        ),
    );
    app.expect_stdout_line(&format!("sending to {peer_addr}"));
    app.expect_stdout(PROMPT);
    app.type_line("hello");
    udp::assert_same_bytes(
        &format!("typed \"hello\" with the last --peer {peer_addr}: it arrives there"),
        b"hello",
        &udp::receive(&peer),
    );
    app.type_line("quit");
    assert!(app.wait_exit().success(), "{}", app.describe());
}

/// The original's `inet_pton(…) < 0` lets a typo in the peer's address
/// through as 0.0.0.0. Linux routes a datagram to 0.0.0.0 to this machine
/// over loopback: a socket on 127.0.0.1 with that port receives it.
#[test]
fn a_peer_of_0_0_0_0_is_this_machine() {
    let here = udp::bound_socket(LOCALHOST);
    let port = here.local_addr().unwrap().port();
    let peer = format!("0.0.0.0:{port}");
    let mut app = testkit::Running::start(
        "peer A",
        command(BIN, &["--bind", "127.0.0.1:0", "--peer", &peer]),
    );
    app.expect_stdout(PROMPT);
    app.type_line("to nowhere?");
    udp::assert_same_bytes(
        &format!("typed \"to nowhere?\" with --peer {peer}: it arrives at 127.0.0.1:{port}"),
        b"to nowhere?",
        &udp::receive(&here),
    );
    app.type_line("quit");
    assert!(app.wait_exit().success(), "{}", app.describe());
}
