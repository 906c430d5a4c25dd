//! The TIME_WAIT restart bug of lesson 3 and the SO_REUSEADDR fix of
//! lesson 4, reproduced on loopback as the post does: stop the server while
//! a client is connected, let the client quit, start the server again.
//!
//! These tests live in lesson 4 because they compare the two servers (and
//! test d runs both); lesson 4's tests may start lesson 3's binary, not the
//! other way round.
//!
//! Whichever side closes a connection first keeps its end in TIME_WAIT for
//! 60 s, and on Linux a socket may bind a port held by a TIME-WAIT socket
//! only if both have set SO_REUSEADDR.

use std::net::SocketAddr;

use testkit::tcp::{
    client_chat, sockets_on_port, start_client, start_server, start_server_expecting_failure,
    try_start_server, wait_for_socket,
};
use testkit::timewait::{Reproduction, ctrl_c};
use testkit::{LOCALHOST, Running, TcpSocket, TcpState, check_generated, find_socket_addr};

fn any_port() -> SocketAddr {
    SocketAddr::new(LOCALHOST, 0)
}

/// Types `exit` into a client: it quits (closing its socket) without
/// sending anything more.
fn quit(client: &mut Running) {
    client.type_line("exit");
    assert!(client.wait_exit().success(), "{}", client.describe());
}

/// A server of `name` on a fresh port, a client that chatted with it, then
/// the post's order: the server is stopped first, then the client quits.
/// Returns the port's address and the server side's TIME-WAIT socket.
fn stop_server_before_client(name: &str) -> (SocketAddr, TcpSocket) {
    let (mut server, addr) = start_server(name, any_port(), &[]);
    let mut client = start_client("client", addr);
    client_chat(&mut client, "hello");
    ctrl_c(&mut server);
    quit(&mut client);
    let time_wait = wait_for_socket("TIME-WAIT socket on the server's port", addr.port(), |s| {
        s.state == TcpState::TimeWait && s.local == addr
    });
    (addr, time_wait)
}

/// Checks that `failed` (a server that could not start on `addr`) printed
/// the address and EADDRINUSE on its first stderr line; `context` goes into
/// the failure message.
fn assert_address_in_use(failed: &Running, addr: SocketAddr, context: &str) {
    let stderr = failed.stderr();
    assert_eq!(
        stderr.lines().next(),
        Some(
            format!("error: cannot bind TCP socket to {addr}: EADDRINUSE: Address already in use")
                .as_str()
        ),
        "{context}\n{}",
        failed.describe()
    );
}

#[test]
fn a_lesson3_server_stopped_before_its_client_cannot_restart() {
    let (addr, time_wait) = stop_server_before_client("lesson3-server");
    let restarted = start_server_expecting_failure("lesson3-server", addr);
    let context = format!("the port is held by the TIME-WAIT socket `{time_wait}`");
    assert_address_in_use(&restarted, addr, &context);
    let hint = restarted
        .stderr()
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    assert!(
        hint.starts_with("hint: ") && hint.contains("TIME_WAIT"),
        "{context}\n{}",
        restarted.describe()
    );
}

#[test]
fn a_lesson4_server_stopped_before_its_client_restarts_and_echoes() {
    let (addr, time_wait) = stop_server_before_client("lesson4-server");
    let (_restarted, bound) = try_start_server("lesson4-server", addr).unwrap_or_else(|failed| {
        panic!(
            "stopped lesson4-server on {addr} before its client quit, then started it again: \
             expected it to listen at once despite the TIME-WAIT socket `{time_wait}`, \
             but it exited\n{}",
            failed.describe()
        )
    });
    assert_eq!(
        bound, addr,
        "restarted despite the TIME-WAIT socket `{time_wait}`"
    );
    let mut client = start_client("client after restart", addr);
    client_chat(&mut client, "hello again");
}

#[test]
fn when_the_client_quits_first_time_wait_is_on_its_side_and_lesson3_restarts() {
    let (mut server, addr) = start_server("lesson3-server", any_port(), &[]);
    let mut client = start_client("client", addr);
    let client_addr =
        find_socket_addr(&server.expect_stdout_line("connected")).expect("client address");
    client_chat(&mut client, "hello");
    quit(&mut client);
    server.expect_stdout_line(&format!("client {client_addr} left"));
    ctrl_c(&mut server);

    let time_wait = wait_for_socket("TIME-WAIT socket on the client's side", addr.port(), |s| {
        s.state == TcpState::TimeWait && s.local == client_addr && s.remote == addr
    });
    let server_side: Vec<TcpSocket> = testkit::tcp_sockets()
        .into_iter()
        .filter(|s| s.local == addr)
        .collect();
    assert!(
        server_side.is_empty(),
        "the server's port should be free, but holds {server_side:?}"
    );
    let (_restarted, bound) = start_server("lesson3-server", addr, &[]);
    assert_eq!(
        bound, addr,
        "TIME-WAIT socket `{time_wait}` is the client's"
    );
    let mut client = start_client("client after restart", addr);
    client_chat(&mut client, "hello again");
}

/// TIME-WAIT is not the only state that holds the port. Killed while a
/// client stays connected, the server's end has sent its FIN and waits in
/// FIN-WAIT-2 for the client's; it holds the port as long as the client
/// keeps the connection open, and lesson 3 cannot restart meanwhile.
#[test]
fn server_sockets_in_fin_wait_2_hold_the_port() {
    let (mut server, addr) = start_server("lesson3-server", any_port(), &[]);
    let mut client = start_client("client", addr);
    client_chat(&mut client, "hello");
    ctrl_c(&mut server);
    let fin_wait_2 = wait_for_socket("FIN-WAIT-2 socket on the server's port", addr.port(), |s| {
        s.state == TcpState::FinWait2 && s.local == addr
    });
    let restarted = start_server_expecting_failure("lesson3-server", addr);
    assert_address_in_use(
        &restarted,
        addr,
        &format!("the port is held by the FIN-WAIT-2 socket `{fin_wait_2}`"),
    );
    // Nothing in TIME-WAIT yet: FIN-WAIT-2 alone held the port.
    assert!(
        !testkit::tcp_sockets()
            .iter()
            .any(|s| s.local == addr && s.state == TcpState::TimeWait),
        "{}",
        sockets_on_port(addr.port())
    );
    quit(&mut client);
}

#[test]
fn a_lesson4_server_cannot_take_the_port_of_a_killed_lesson3_server_either() {
    // Both sockets must have set SO_REUSEADDR; the old one, lesson 3's, has not.
    let (mut server, addr) = start_server("lesson3-server", any_port(), &[]);
    let mut client = start_client("client", addr);
    client_chat(&mut client, "hello");
    ctrl_c(&mut server);

    // The client is still attached: the server's end waits in FIN-WAIT-2.
    let attached = start_server_expecting_failure("lesson4-server", addr);
    let sockets = sockets_on_port(addr.port());
    assert_address_in_use(
        &attached,
        addr,
        &format!("client still attached; sockets:\n{sockets}"),
    );

    // Once the client quits, the server's end sits in TIME-WAIT: still no.
    quit(&mut client);
    let time_wait = wait_for_socket("TIME-WAIT socket on the server's port", addr.port(), |s| {
        s.state == TcpState::TimeWait && s.local == addr
    });
    let after = start_server_expecting_failure("lesson4-server", addr);
    assert_address_in_use(
        &after,
        addr,
        &format!("lesson 3's TIME-WAIT socket `{time_wait}`"),
    );
}

/// The trap the chapter defuses: a learner stops lesson 3 (its client still
/// attached, then gone) and starts lesson 4 on the same port. SO_REUSEADDR
/// cannot pass lesson 3's leftovers, so lesson 4 must say what holds the port.
#[test]
fn lesson4_started_over_lesson3s_leftovers_names_what_holds_the_port() {
    let (mut server, addr) = start_server("lesson3-server", any_port(), &[]);
    let mut client = start_client("client", addr);
    client_chat(&mut client, "hello");
    ctrl_c(&mut server);
    let expected = format!(
        "error: cannot bind TCP socket to {addr}: EADDRINUSE: Address already in use\n\
         hint: {addr} is held by a server still listening on it, or by connections of a server \
         that did not set SO_REUSEADDR (lesson 3) lingering in FIN-WAIT-2 or TIME_WAIT for up \
         to about two minutes; see them with: ss -tan 'sport = :{}'\n",
        addr.port()
    );
    let fin_wait_2 = wait_for_socket("FIN-WAIT-2 socket on the server's port", addr.port(), |s| {
        s.state == TcpState::FinWait2 && s.local == addr
    });
    let attached = start_server_expecting_failure("lesson4-server", addr);
    assert_eq!(attached.stderr(), expected, "held by `{fin_wait_2}`");

    quit(&mut client);
    let time_wait = wait_for_socket("TIME-WAIT socket on the server's port", addr.port(), |s| {
        s.state == TcpState::TimeWait && s.local == addr
    });
    let after = start_server_expecting_failure("lesson4-server", addr);
    assert_eq!(after.stderr(), expected, "held by `{time_wait}`");
}

/// The reproduction `just timewait` narrates (testkit's `Reproduction`),
/// checked step by step as it runs; the book shows what it printed.
#[test]
fn the_posts_reproduction_for_the_book() {
    let reproduction = Reproduction::run(&mut |_| {});
    check_generated("timewait.txt", &reproduction.for_the_book());
}
