//! The echo server serves many clients at once, each on its own thread:
//! every client gets its own bytes back, whole, whatever the others do.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::thread;

use nix::sys::signal::Signal;
use nix::sys::socket::{Shutdown, SockaddrStorage, getsockname, getsockopt, shutdown, sockopt};
use testkit::tcp::{
    VanishingClient, assert_echo, client_chat, client_closing_before_its_echo, close, connect,
    echo, random_bytes, reset, start_client, start_server, wait_for_socket,
};
use testkit::{LOCALHOST, TcpState};

fn any_port() -> SocketAddr {
    SocketAddr::new(LOCALHOST, 0)
}

#[test]
fn logs_and_echoes_a_line_from_an_nc_like_client() {
    let (server, addr) = start_server("lesson3-server", any_port(), &[]);
    // What `nc` does: write lines, read what comes back line by line.
    let stream = connect(addr);
    let me = stream.local_addr().unwrap();
    server.expect_stdout_line(&format!("client {me} connected"));
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    for text in ["hello", "second line", "wörld, not ASCII"] {
        (&stream).write_all(format!("{text}\n").as_bytes()).unwrap();
        let mut back = String::new();
        lines.read_line(&mut back).unwrap();
        assert_eq!(
            back,
            format!("{text}\n"),
            "sent the line {text:?}: expected it back (right), got the left"
        );
        server.expect_stdout_line(&format!("recv from {me}: {text}"));
    }
    close(stream);
    server.expect_stdout_line(&format!("client {me} left"));
}

#[test]
fn fifty_clients_at_once_each_get_their_own_echo() {
    let (server, addr) = start_server("lesson3-server", any_port(), &[]);
    let clients: Vec<_> = (0..50)
        .map(|i| {
            thread::spawn(move || {
                let stream = connect(addr);
                // Each client's payload is distinct, so a mixed-up echo shows.
                let line = format!("client {i} says {}\n", "x".repeat(i * 7));
                let back = echo(&stream, line.as_bytes());
                (line, String::from_utf8(back).unwrap())
            })
        })
        .collect();
    for client in clients {
        let (sent, back) = client.join().expect("client thread");
        assert_eq!(back, sent);
    }
    drop(server);
}

#[test]
fn an_idle_client_does_not_delay_the_others() {
    let (server, addr) = start_server("lesson3-server", any_port(), &[]);
    let idle = connect(addr);
    let idle_addr = idle.local_addr().unwrap();
    server.expect_stdout_line(&format!("client {idle_addr} connected"));
    // A server that served one client at a time would sit in recv() on the
    // idle one; the round trips below would time out.
    for i in 0..3 {
        let busy = connect(addr);
        assert_echo(&busy, format!("busy client {i}\n").as_bytes());
    }
    // The idle client is still served when it finally speaks.
    assert_echo(&idle, b"late but here\n");
}

/// The server's threads and the sockets among its open descriptors, from
/// /proc/PID/task and /proc/PID/fd. (Only sockets: a descriptor the test
/// harness let the server inherit is no client's.)
fn threads_and_sockets(pid: i32) -> (usize, usize) {
    let process = procfs::process::Process::new(pid).expect("the server process");
    let threads = process.tasks().expect("/proc/PID/task").count();
    let sockets = process
        .fd()
        .expect("/proc/PID/fd")
        .filter_map(Result::ok)
        .filter(|fd| matches!(fd.target, procfs::process::FDTarget::Socket(_)))
        .count();
    (threads, sockets)
}

/// A client's thread and descriptor live as long as the client does: the
/// original's `close(cfd)` and detached thread, here the dropped `OwnedFd`
/// and the thread's return.
#[test]
fn a_client_that_leaves_frees_its_thread_and_its_descriptor() {
    let (server, addr) = start_server("lesson3-server", any_port(), &[]);
    let pid = server.pid().as_raw();
    let before = threads_and_sockets(pid);
    let stream = connect(addr);
    let me = stream.local_addr().unwrap();
    server.expect_stdout_line(&format!("client {me} connected"));
    assert_echo(&stream, b"hello\n");
    let during = threads_and_sockets(pid);
    assert_eq!(
        during,
        (before.0 + 1, before.1 + 1),
        "(threads, sockets) of the server: {before:?} before client {me} connected, \
         expected one more of each while it is connected"
    );
    close(stream);
    server.expect_stdout_line(&format!("client {me} left"));
    // The thread logs `left` just before it closes the descriptor and ends.
    let start = std::time::Instant::now();
    let mut after = threads_and_sockets(pid);
    while after != before && start.elapsed() < testkit::DEADLINE {
        thread::sleep(std::time::Duration::from_millis(10));
        after = threads_and_sockets(pid);
    }
    assert_eq!(
        after,
        before,
        "(threads, sockets) of the server: {before:?} before client {me} connected, \
         {during:?} while connected, still {after:?} {:?} after it left: its thread or its \
         descriptor was not freed",
        testkit::DEADLINE
    );
}

#[test]
fn one_mebibyte_of_random_bytes_comes_back_exactly() {
    let (_server, addr) = start_server("lesson3-server", any_port(), &[]);
    let stream = connect(addr);
    assert_echo(&stream, &random_bytes(3, 1024 * 1024));
}

#[test]
fn a_client_vanishing_mid_echo_leaves_the_server_serving() {
    let (server, addr) = start_server("lesson3-server", any_port(), &[]);
    // Send a mebibyte and never read the echo: the server blocks sending to
    // a full receive buffer. Closing with unread data makes the kernel reset
    // the connection, so the server's send or recv fails (EPIPE or
    // ECONNRESET). Without MSG_NOSIGNAL a SIGPIPE could kill the server here.
    let rude = VanishingClient::start(addr, random_bytes(5, 1024 * 1024));
    let rude_addr = rude.local_addr();
    server.expect_stdout_line(&format!("client {rude_addr} connected"));
    thread::sleep(std::time::Duration::from_millis(50));
    rude.vanish();
    let error = server.expect_stderr_line(&format!("client {rude_addr}"));
    assert!(
        error.contains("ECONNRESET") || error.contains("EPIPE"),
        "expected a reset or broken pipe for the vanished client, got {error:?}"
    );
    // Still serving, hence alive: a dead process's listening socket is
    // closed by the kernel, and this connection would be refused.
    let polite = connect(addr);
    assert_echo(&polite, b"are you still there?\n");
    assert!(
        !server.stderr().contains("panicked"),
        "{}",
        server.describe()
    );
}

/// The one case that raises SIGPIPE (lesson 3, "Serving one client"): the
/// client sends and closes cleanly before any echo comes back (testkit's
/// [`client_closing_before_its_echo`] tells how).
#[test]
fn a_client_that_closes_before_its_echo_does_not_kill_the_server_with_sigpipe() {
    let (mut server, addr) = start_server("lesson3-server", any_port(), &[]);
    client_closing_before_its_echo(&mut server, addr);
}

#[test]
fn serves_ipv6_clients() {
    let (server, addr) = start_server("lesson3-server", "[::1]:0".parse().unwrap(), &[]);
    assert!(addr.is_ipv6(), "listening on {addr}");
    let mut client = start_client("client", addr);
    client_chat(&mut client, "over IPv6");
    server.expect_stdout_line("recv from [::1]:");
}

#[test]
fn the_client_prints_each_echo_and_quits_on_exit_without_sending_it() {
    let (server, addr) = start_server("lesson3-server", any_port(), &[]);
    let mut client = start_client("client", addr);
    client_chat(&mut client, "first");
    client_chat(&mut client, "second");
    client.type_line("exit");
    client.expect_stdout_line("goodbye");
    let status = client.wait_exit();
    assert!(
        status.success(),
        "client exited with {status}\n{}",
        client.describe()
    );
    server.expect_stdout_line(" left");
    assert!(
        !server.stdout().contains(": exit"),
        "the client sent `exit` to the server:\n{}",
        server.describe()
    );
}

#[test]
fn the_client_sends_a_line_longer_than_any_buffer_whole() {
    let (_server, addr) = start_server("lesson3-server", any_port(), &[]);
    let mut client = start_client("client", addr);
    let long = "0123456789".repeat(10_000);
    client_chat(&mut client, &long);
    client.close_stdin();
    assert!(client.wait_exit().success(), "{}", client.describe());
}

/// A stream has no message edges: one 10,001-byte line (10,000 bytes and
/// its newline) reaches the server in pieces of at most 1024 bytes, one log
/// line each, which together are the line.
#[test]
fn a_10_kb_line_is_logged_in_pieces_of_at_most_1024_bytes() {
    let (server, addr) = start_server("lesson3-server", any_port(), &[]);
    let mut client = start_client("client", addr);
    let line = "x".repeat(10_000);
    client_chat(&mut client, &line);
    client.close_stdin();
    assert!(client.wait_exit().success(), "{}", client.describe());
    server.expect_stdout_line("left");
    let log = server.stdout();
    let pieces: Vec<&str> = log
        .lines()
        .filter_map(|l| {
            l.split_once(": ")
                .filter(|(head, _)| head.starts_with("recv from"))
        })
        .map(|(_, piece)| piece)
        .collect();
    // The last piece's newline is not logged.
    assert_eq!(pieces.concat(), line, "{log}");
    assert!(pieces.iter().all(|piece| piece.len() <= 1024), "{log}");
    assert!(pieces.len() >= 10, "{log}");
    eprintln!(
        "{} receive lines: {:?}",
        pieces.len(),
        pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
    );
}

#[test]
fn the_client_reports_a_server_gone_mid_chat() {
    let (mut server, addr) = start_server("lesson3-server", any_port(), &[]);
    let mut client = start_client("client", addr);
    client_chat(&mut client, "hello");
    server.kill();
    client.type_line("anyone there?");
    let status = client.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", client.describe());
    let stderr = client.stderr();
    assert_eq!(
        stderr.lines().count(),
        1,
        "one error line expected:\n{stderr}"
    );
    assert!(
        stderr.starts_with("error: ") && stderr.contains(&addr.to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A client that resets its connection while it still waits in the listen
/// queue. Linux does not fail `accept` with ECONNABORTED then: it hands the
/// dead connection out, and `getpeername` fails with ENOTCONN. The server
/// logs that, closes the descriptor and goes on serving.
#[test]
fn a_client_reset_before_accept_leaves_the_server_serving() {
    let (server, addr) = start_server("lesson3-server", any_port(), &[]);
    // Stopped (SIGSTOP), the server cannot accept: the connection stays
    // queued, completed by the kernel alone.
    server.signal(Signal::SIGSTOP);
    let doomed = connect(addr);
    let doomed_addr = doomed.local_addr().unwrap();
    wait_for_socket("queued connection", addr.port(), |s| {
        s.local == addr && s.remote == doomed_addr && s.state == TcpState::Established
    });
    reset(doomed);
    // The RST removes the queued connection's row from the TCP table.
    let start = std::time::Instant::now();
    while testkit::tcp_sockets()
        .iter()
        .any(|s| s.local == addr && s.remote == doomed_addr)
    {
        assert!(
            start.elapsed() < testkit::DEADLINE,
            "the reset did not arrive"
        );
        thread::sleep(std::time::Duration::from_millis(5));
    }
    server.signal(Signal::SIGCONT);

    let error = server.expect_stderr_line("cannot read a new client's address");
    assert!(error.contains("ENOTCONN"), "{error}");
    let polite = connect(addr);
    assert_echo(&polite, b"served after the reset\n");
    assert!(
        !server
            .stdout()
            .contains(&format!("client {doomed_addr} connected")),
        "{}",
        server.describe()
    );
}

/// An accept error that every retry would repeat (here EINVAL: the listener
/// was shut down and no longer listens) ends the server with one clear
/// error, instead of a loop that fails forever at full speed.
#[test]
fn a_listener_that_stops_listening_ends_the_server_with_one_error() {
    let (mut server, addr) = start_server("lesson3-server", any_port(), &[]);
    // The listener is the server's first socket; take a duplicate of it.
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
    // shutdown(SHUT_RD) on a listening socket closes its queue and wakes
    // the accept blocked on it, which fails with EINVAL.
    shutdown(std::os::fd::AsRawFd::as_raw_fd(&listener), Shutdown::Read).unwrap();
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", server.describe());
    assert_eq!(
        server.stderr(),
        format!("error: cannot accept clients on {addr}: EINVAL: Invalid argument\n")
    );
}

/// Every socket the server holds, the listener and each accepted client,
/// is close-on-exec (accept4 with SOCK_CLOEXEC), so none would leak into a
/// program the server might start. Read from /proc/PID/fdinfo's `flags`.
#[test]
fn accepted_sockets_are_close_on_exec() {
    let (server, addr) = start_server("lesson3-server", any_port(), &[]);
    let stream = connect(addr);
    let me = stream.local_addr().unwrap();
    server.expect_stdout_line(&format!("client {me} connected"));
    let pid = server.pid();
    let mut sockets = 0;
    let descriptors = procfs::process::Process::new(pid.as_raw())
        .and_then(|server| server.fd())
        .unwrap();
    for descriptor in descriptors {
        let descriptor = descriptor.unwrap();
        if !matches!(descriptor.target, procfs::process::FDTarget::Socket(_)) {
            continue;
        }
        // procfs does not read fdinfo's flags.
        let fd = descriptor.fd;
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
        let flags = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .map(|flags| u32::from_str_radix(flags.trim(), 8).unwrap())
            .unwrap();
        assert_ne!(
            flags & nix::libc::O_CLOEXEC as u32,
            0,
            "socket descriptor {fd} is not close-on-exec: {info}"
        );
        sockets += 1;
    }
    assert!(
        sockets >= 2,
        "only {sockets} socket(s) found: listener and client expected"
    );
}
