//! Lesson 5's server passes what lessons 3 and 4 pass — many clients at
//! once, every byte back, IPv6, a client vanishing mid-echo, lesson 3's
//! client, a plain `nc`-like socket — from one thread, and it sleeps when
//! nobody talks, stops cleanly on SIGINT or SIGTERM, and restarts at once.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::Duration;

use common::{SERVER, cpu_ticks, threads};
use nix::sys::signal::Signal;
use nix::sys::socket::{SockaddrStorage, getsockname, getsockopt, shutdown, sockopt};
use testkit::tcp::{
    VanishingClient, assert_echo, client_chat, connect, echo, random_bytes, start_client,
    start_server, wait_for_socket,
};
use testkit::{LOCALHOST, TcpState};

fn any_port() -> SocketAddr {
    SocketAddr::new(LOCALHOST, 0)
}

#[test]
fn logs_and_echoes_lines_from_an_nc_like_client() {
    let (server, addr) = start_server(SERVER, any_port(), &[]);
    let stream = connect(addr);
    let me = stream.local_addr().unwrap();
    server.expect_stdout_line(&format!("client {me} connected"));
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    for text in ["hello", "second line", "wörld, not ASCII"] {
        (&stream).write_all(format!("{text}\n").as_bytes()).unwrap();
        let mut back = String::new();
        lines.read_line(&mut back).unwrap();
        assert_eq!(back, format!("{text}\n"));
        server.expect_stdout_line(&format!("recv from {me}: {text}"));
    }
    stream.shutdown(Shutdown::Both).unwrap();
    server.expect_stdout_line(&format!("client {me} left"));
}

/// A hundred clients at the same moment, one server thread.
#[test]
fn a_hundred_clients_at_once_each_get_their_own_echo_from_one_thread() {
    let (server, addr) = start_server(SERVER, any_port(), &["--backlog", "128"]);
    let clients: Vec<_> = (0..100)
        .map(|i| {
            thread::spawn(move || {
                let stream = connect(addr);
                // Each client's payload is distinct, so a mixed-up echo shows.
                let line = format!("client {i} says {}\n", "x".repeat(i * 37));
                let back = echo(&stream, line.as_bytes());
                (line, String::from_utf8(back).unwrap(), stream)
            })
        })
        .collect();
    let mut streams = Vec::new();
    for client in clients {
        let (sent, back, stream) = client.join().expect("client thread");
        assert_eq!(back, sent);
        streams.push(stream);
    }
    // All hundred are still connected, and still one thread serves them.
    assert_eq!(threads(server.pid()), 1, "{}", server.describe());
}

#[test]
fn an_idle_client_does_not_delay_the_others() {
    let (server, addr) = start_server(SERVER, any_port(), &[]);
    let idle = connect(addr);
    let idle_addr = idle.local_addr().unwrap();
    server.expect_stdout_line(&format!("client {idle_addr} connected"));
    for i in 0..3 {
        let busy = connect(addr);
        assert_echo(&busy, format!("busy client {i}\n").as_bytes());
    }
    assert_echo(&idle, b"late but here\n");
}

#[test]
fn one_mebibyte_of_random_bytes_comes_back_exactly() {
    let (_server, addr) = start_server(SERVER, any_port(), &[]);
    let stream = connect(addr);
    assert_echo(&stream, &random_bytes(3, 1024 * 1024));
}

#[test]
fn serves_ipv6_clients() {
    let (server, addr) = start_server(SERVER, "[::1]:0".parse().unwrap(), &[]);
    assert!(addr.is_ipv6(), "listening on {addr}");
    let stream = connect(addr);
    assert_echo(&stream, b"over IPv6\n");
    server.expect_stdout_line("recv from [::1]:");
}

#[test]
fn a_client_vanishing_mid_echo_leaves_the_server_serving() {
    let (server, addr) = start_server(SERVER, any_port(), &[]);
    // Send a mebibyte and never read the echo, then close with unread data:
    // the kernel resets the connection, so the server's send or recv fails
    // (EPIPE or ECONNRESET). Without MSG_NOSIGNAL a SIGPIPE would kill it.
    let rude = VanishingClient::start(addr, random_bytes(5, 1024 * 1024));
    let rude_addr = rude.local_addr();
    server.expect_stdout_line(&format!("client {rude_addr} connected"));
    server.expect_stdout_line(&format!("recv from {rude_addr}"));
    rude.vanish();
    let error = server.expect_stderr_line(&format!("client {rude_addr}"));
    assert!(
        error.contains("ECONNRESET") || error.contains("EPIPE"),
        "expected a reset or broken pipe for the vanished client, got {error:?}"
    );
    let polite = connect(addr);
    assert_echo(&polite, b"are you still there?\n");
    assert!(
        !server.stderr().contains("panicked"),
        "{}",
        server.describe()
    );
}

#[test]
fn serves_lesson_3s_client() {
    let (server, addr) = start_server(SERVER, any_port(), &[]);
    let mut client = start_client("lesson 3's client", addr);
    client_chat(&mut client, "hello from lesson 3");
    client.type_line("exit");
    client.expect_stdout_line("goodbye");
    assert!(client.wait_exit().success(), "{}", client.describe());
    server.expect_stdout_line(" left");
}

/// Level-triggered epoll reports a socket writable whenever its send
/// buffer has room; the server asks for EPOLLOUT only while an echo waits.
/// Asking always would make every epoll_wait return at once: a busy loop.
/// Here a client is connected and has been echoed, and the server uses no
/// CPU while nobody talks.
#[test]
fn an_idle_server_sleeps_in_epoll_wait() {
    let (server, addr) = start_server(SERVER, any_port(), &[]);
    let stream = connect(addr);
    assert_echo(&stream, &random_bytes(7, 256 * 1024));
    thread::sleep(Duration::from_millis(100));
    let before = cpu_ticks(server.pid());
    thread::sleep(Duration::from_millis(500));
    let used = cpu_ticks(server.pid()) - before;
    // A busy loop would use about 50 ticks (1/100 s each) in 500 ms.
    assert!(
        used <= 2,
        "the idle server used {used} ticks of CPU in 500 ms"
    );
    assert_echo(&stream, b"still served\n");
}

/// SIGINT and SIGTERM arrive through the signalfd: the server says so,
/// closes every connection (its clients read the end) and exits 0.
#[test]
fn sigint_and_sigterm_close_every_connection_and_exit_zero() {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let (mut server, addr) = start_server(SERVER, any_port(), &[]);
        let mut stream = connect(addr);
        assert_echo(&stream, b"before the signal\n");
        server.signal(signal);
        let status = server.wait_exit();
        assert!(
            status.success(),
            "{signal}: {status}\n{}",
            server.describe()
        );
        server.expect_stdout_line(&format!("caught {signal}: closing 1 connection(s)"));
        let mut rest = Vec::new();
        assert_eq!(
            stream.read_to_end(&mut rest).unwrap(),
            0,
            "the client reads the end"
        );
    }
}

/// SO_REUSEADDR as in lesson 4: stopped while a client is connected, it
/// starts again on the same port at once. The server closes first, so its
/// side waits in FIN-WAIT-2 until the client closes, then in TIME_WAIT.
#[test]
fn restarts_on_its_port_at_once_after_stopping_with_a_client() {
    let (mut server, addr) = start_server(SERVER, any_port(), &[]);
    let mut stream = connect(addr);
    assert_echo(&stream, b"hello\n");
    server.signal(Signal::SIGINT);
    assert!(server.wait_exit().success(), "{}", server.describe());
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    // The client's ACK of the FIN may come a moment after its data: the
    // server's side is in FIN-WAIT-2 once it has, while the client is open.
    wait_for_socket("FIN-WAIT-2 socket of the server", addr.port(), |socket| {
        socket.state == TcpState::FinWait2 && socket.local == addr
    });
    drop(stream);
    // The server's end of the connection is in TIME_WAIT on the port.
    wait_for_socket("TIME-WAIT socket of the server", addr.port(), |socket| {
        socket.state == TcpState::TimeWait && socket.local == addr
    });
    let (_again, again_addr) = start_server(SERVER, addr, &[]);
    assert_eq!(again_addr, addr);
    assert_echo(&connect(addr), b"back again\n");
}

/// As in lesson 3: an accept error that every retry would repeat (here
/// EINVAL: the listener was shut down and no longer listens) ends the server
/// with one clear error, instead of 64 log lines per wakeup forever.
#[test]
fn a_listener_that_stops_listening_ends_the_server_with_one_error() {
    let (mut server, addr) = start_server(SERVER, any_port(), &[]);
    // Take a duplicate of the server's listening socket.
    let listener = (3..16).find_map(|fd| {
        let duplicate = server.duplicate_fd(fd).ok()?;
        let local: SockaddrStorage =
            getsockname(std::os::fd::AsRawFd::as_raw_fd(&duplicate)).ok()?;
        let listening = getsockopt(&duplicate, sockopt::AcceptConn).ok()?;
        (listening && local.to_string() == addr.to_string()).then_some(duplicate)
    });
    let Some(listener) = listener else {
        eprintln!(
            "skipped: cannot take the server's listening socket with pidfd_getfd \
             (needs Linux 5.6+ and ptrace rights over the child)"
        );
        return;
    };
    // shutdown(SHUT_RD) on a listening socket closes its queue: epoll reports
    // it, and accept fails with EINVAL.
    shutdown(
        std::os::fd::AsRawFd::as_raw_fd(&listener),
        nix::sys::socket::Shutdown::Read,
    )
    .unwrap();
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", server.describe());
    assert_eq!(
        server.stderr(),
        format!("error: cannot accept clients on {addr}: EINVAL: Invalid argument\n")
    );
}
