//! The echo server serves many clients at once, each on its own thread:
//! every client gets its own bytes back, whole, whatever the others do.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::thread;

use testkit::LOCALHOST;
use testkit::tcp::{
    assert_echo, client_chat, close, connect, echo, random_bytes, start_client, start_server,
};

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
        assert_eq!(back, format!("{text}\n"));
        server.expect_stdout_line(&format!("recv from {me}: {text}"));
    }
    close(stream);
    server.expect_stdout_line(&format!("client {me} left"));
}

#[test]
fn fifty_clients_at_once_each_get_their_own_echo() {
    let (server, addr) = start_server("lesson3-server", any_port(), &["--quiet"]);
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

#[test]
fn one_mebibyte_of_random_bytes_comes_back_exactly() {
    let (_server, addr) = start_server("lesson3-server", any_port(), &["--quiet"]);
    let stream = connect(addr);
    assert_echo(&stream, &random_bytes(3, 1024 * 1024));
}

#[test]
fn a_client_vanishing_mid_echo_leaves_the_server_serving() {
    let (server, addr) = start_server("lesson3-server", any_port(), &["--quiet"]);
    let rude = connect(addr);
    let rude_addr = rude.local_addr().unwrap();
    // Send a mebibyte and never read the echo: the server blocks sending to
    // a full receive buffer. Closing with unread data makes the kernel reset
    // the connection, so the server's send or recv fails (EPIPE or
    // ECONNRESET). Without MSG_NOSIGNAL a SIGPIPE could kill the server here.
    let mut writer = rude.try_clone().unwrap();
    let payload = random_bytes(5, 1024 * 1024);
    let sender = thread::spawn(move || {
        // Fails with a reset once the server has given up on us: expected.
        let _ = writer.write_all(&payload);
    });
    server.expect_stdout_line(&format!("client {rude_addr} connected"));
    thread::sleep(std::time::Duration::from_millis(50));
    drop(rude);
    sender.join().unwrap();
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

#[test]
fn quiet_does_not_log_messages_but_still_echoes() {
    let (server, addr) = start_server("lesson3-server", any_port(), &["--quiet"]);
    let stream = connect(addr);
    let me = stream.local_addr().unwrap();
    assert_echo(&stream, b"secret\n");
    close(stream);
    server.expect_stdout_line(&format!("client {me} left"));
    assert!(
        !server.stdout().contains("recv from"),
        "--quiet logged a message:\n{}",
        server.describe()
    );
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
    let (_server, addr) = start_server("lesson3-server", any_port(), &["--quiet"]);
    let mut client = start_client("client", addr);
    let long = "0123456789".repeat(10_000);
    client_chat(&mut client, &long);
    client.close_stdin();
    assert!(client.wait_exit().success(), "{}", client.describe());
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
