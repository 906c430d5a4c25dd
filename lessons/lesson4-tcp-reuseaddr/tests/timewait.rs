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
use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::Signal;
use testkit::tcp::{
    Terminal, book_replacements, client_chat, command_default_signals, sockets_on_port,
    ss_time_wait, start_client, start_server, start_server_expecting_failure, wait_for_socket,
};
use testkit::{
    LOCALHOST, Running, TcpSocket, TcpState, check_generated, find_socket_addr, normalize,
};

fn any_port() -> SocketAddr {
    SocketAddr::new(LOCALHOST, 0)
}

/// Stops `server` the way Ctrl+C does: SIGINT, no handler, killed by it.
fn ctrl_c(server: &mut Running) {
    server.signal(Signal::SIGINT);
    let status = server.wait_exit();
    assert_eq!(
        status.signal(),
        Some(Signal::SIGINT as i32),
        "{}",
        server.describe()
    );
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
    let (_restarted, bound) = start_server("lesson4-server", addr, &[]);
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

/// One part of the post's reproduction with server `name` on a fresh port:
/// start it, two clients chat, Ctrl+C the server, then the clients, start
/// the server again, list the TIME-WAIT sockets. Appends to `story` what a
/// reader at the terminals would see, and the addresses used to `servers`
/// and `clients`.
fn reproduce(
    name: &str,
    story: &mut String,
    servers: &mut Vec<SocketAddr>,
    clients: &mut Vec<SocketAddr>,
) {
    let (server, addr) = start_server(name, any_port(), &[]);
    servers.push(addr);
    let mut server = Terminal::new(server);
    let mut terminals = Vec::new();
    let mut client_addrs = Vec::new();
    for (i, text) in [
        "hello from the first client",
        "hello from the second client",
    ]
    .iter()
    .enumerate()
    {
        let mut client = start_client(&format!("client {}", i + 1), addr);
        let line = server.running.expect_stdout_line("connected");
        let client_addr = find_socket_addr(&line).expect("client address");
        client_chat(&mut client, text);
        server
            .running
            .expect_stdout_line(&format!("recv from {client_addr}"));
        terminals.push(Terminal::new(client));
        client_addrs.push(client_addr);
    }
    story.push_str(&format!("--- terminal 1: {name} ---\n{}", server.more()));
    for (i, client) in terminals.iter_mut().enumerate() {
        story.push_str(&format!(
            "--- terminal {}: client {} ---\n{}",
            i + 2,
            i + 1,
            client.more()
        ));
    }

    story.push_str("--- terminal 1: Ctrl+C stops the server first ---\n^C\n");
    ctrl_c(&mut server.running);
    for (i, (client, &client_addr)) in terminals.iter_mut().zip(&client_addrs).enumerate() {
        story.push_str(&format!(
            "--- terminal {}: then Ctrl+C stops client {} ---\n^C\n",
            i + 2,
            i + 1
        ));
        client.running.signal(Signal::SIGINT);
        let status = client.running.wait_exit();
        assert_eq!(
            status.signal(),
            Some(Signal::SIGINT as i32),
            "{}",
            client.running.describe()
        );
        wait_for_socket("TIME-WAIT socket of the server", addr.port(), |s| {
            s.state == TcpState::TimeWait && s.local == addr && s.remote == client_addr
        });
    }

    story.push_str("--- terminal 1: start the server again at once ---\n");
    let bind = addr.to_string();
    let restarted = Running::start(name, command_default_signals(name, &["--bind", &bind]));
    let mut restarted = Terminal::new(restarted);
    if name == "lesson3-server" {
        let status = restarted.running.wait_exit();
        assert_eq!(status.code(), Some(1), "{}", restarted.running.describe());
    } else {
        restarted.running.expect_stdout_line("listening on");
    }
    story.push_str(&restarted.more());
    story.push_str(&format!(
        "--- terminal 4: the old connections ---\n$ ss -tan state time-wait sport = :{}\n",
        addr.port()
    ));
    // In the clients' order, as their ports in the stored file will be.
    let mut listing = ss_time_wait(addr);
    listing[1..].sort_by_key(|line| {
        client_addrs
            .iter()
            .position(|c| line.contains(&c.to_string()))
    });
    for line in listing {
        story.push_str(&line);
        story.push('\n');
    }
    clients.extend(client_addrs);
}

#[test]
fn the_posts_reproduction_for_the_book() {
    let mut story = String::from("=== lesson 3 ===\n");
    let (mut servers, mut clients) = (Vec::new(), Vec::new());
    reproduce("lesson3-server", &mut story, &mut servers, &mut clients);
    story.push_str(
        "=== lesson 4: the same steps on a fresh port (lesson 3's TIME-WAIT sockets still hold the old one) ===\n",
    );
    reproduce("lesson4-server", &mut story, &mut servers, &mut clients);

    let mut text = normalize(&story, &book_replacements(&servers, &clients));
    for server in &servers {
        text = text.replace(&format!("sport = :{}\n", server.port()), "sport = :8890\n");
    }
    check_generated("timewait.txt", &text);
}
