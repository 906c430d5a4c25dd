//! Lesson 5's client: it notices a dead server while nobody types, sends a
//! line bigger than every socket buffer without deadlocking, and at the end
//! of input half-closes the connection and prints every echo still to come.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Output;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::{CLIENT, SERVER};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};
use std::os::fd::AsRawFd;
use testkit::cli;
use testkit::tcp::{
    buffer_sysctl, client_chat, listening, random_letters, start_client_bin, start_server,
};
use testkit::{DEADLINE, LOCALHOST};

fn any_port() -> SocketAddr {
    SocketAddr::new(LOCALHOST, 0)
}

/// Runs lesson 5's client against `server` with `input` typed in, to the
/// end; returns its status and all it printed.
fn run_client(server: SocketAddr, input: impl Into<Vec<u8>>) -> Output {
    cli::output(CLIENT, &["--server", &server.to_string()], input)
}

/// What a failed check shows: what was typed, how the client ended and
/// what it printed (long output cut to its start and length).
fn report(typed: &str, output: &Output) -> String {
    let show = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
        if bytes.len() > 400 {
            format!("{text}… ({} bytes in all)", bytes.len())
        } else {
            text
        }
    };
    format!(
        "typed into lesson5-client: {typed}\nit exited with {} (expected 0)\n--- stdout:\n{}\n--- stderr:\n{}",
        output.status,
        show(&output.stdout),
        show(&output.stderr)
    )
}

/// Where `got` first differs from `expected`, said in a line.
fn first_difference(expected: &[u8], got: &[u8]) -> String {
    let at = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()));
    format!(
        "expected {} bytes on stdout, got {}; they differ from byte {at}",
        expected.len(),
        got.len()
    )
}

/// Lesson 3's client learns that the server is gone only when it next
/// sends. This one waits for the socket too, so it sees the end at once.
#[test]
fn notices_a_dead_server_while_waiting_for_input() {
    let (mut server, addr) = start_server(SERVER, any_port(), &[]);
    let mut client = start_client_bin("client", CLIENT, addr);
    client_chat(&mut client, "hello");
    server.kill();
    // Nothing is typed: the client sits in poll on stdin and the socket.
    let status = client.wait_exit_within(Duration::from_secs(2));
    assert_eq!(status.code(), Some(1), "{}", client.describe());
    assert_eq!(
        client.stderr(),
        format!("error: server {addr} closed the connection\n")
    );
}

/// An 8 MiB line: far more than the sockets' buffers on both sides hold.
/// Lesson 3's client sends it all before reading any echo; the server,
/// unable to send the echo, stops reading, and both wait forever. This
/// client reads echoes while it sends, so the line comes back whole.
#[test]
fn an_8_mib_line_comes_back_whole_without_deadlock() {
    let (_server, addr) = start_server(SERVER, any_port(), &[]);
    let line = random_letters(8, 8 * 1024 * 1024);
    let input = [line.as_slice(), b"\n"].concat();
    let output = run_client(addr, input);
    let typed = "one 8 MiB line of letters, then the end of input";
    assert!(output.status.success(), "{}", report(typed, &output));
    let expected = [
        format!("connected to {addr}\nclient receive: ").as_bytes(),
        &line,
        b"\n",
    ]
    .concat();
    assert!(
        output.stdout == expected,
        "the echo of the 8 MiB line differs: {}\n{}",
        first_difference(&expected, &output.stdout),
        report(typed, &output)
    );
}

/// A server that answers only after the client's end of stream: it reads
/// until recv returns 0, then sends everything back and closes. A client
/// that closed its socket at the end of input would never see the echoes;
/// one that half-closes (shutdown SHUT_WR) reads them all.
#[test]
fn end_of_input_half_closes_and_every_echo_still_to_come_is_printed() {
    let listener = TcpListener::bind(any_port()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut received = Vec::new();
        stream
            .read_to_end(&mut received)
            .expect("the client's end of stream");
        // The client's end came, and it is still reading.
        stream.write_all(&received).expect("the client still reads");
        received
    });
    let typed = "one\ntwo\nthree\nfour, without newline";
    let output = run_client(addr, typed);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let typed = format!(
        "{typed:?}, then the end of input (the server echoes only after the client's end of stream)"
    );
    assert!(output.status.success(), "{}", report(&typed, &output));
    assert_eq!(
        stdout,
        format!(
            "connected to {addr}\nclient receive: one\nclient receive: two\n\
             client receive: three\nclient receive: four, without newline\n"
        ),
        "{}",
        report(&typed, &output)
    );
    assert_eq!(
        server.join().unwrap(),
        b"one\ntwo\nthree\nfour, without newline"
    );
}

/// As in lesson 3, `exit` is never sent; the lines before it still get
/// their echoes, then `goodbye`.
#[test]
fn exit_is_not_sent_and_the_echoes_before_it_are_printed() {
    let (server, addr) = start_server(SERVER, any_port(), &[]);
    let typed = "first\nsecond\nexit\nnever sent\n";
    let output = run_client(addr, typed);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let typed = format!("{typed:?}");
    assert!(output.status.success(), "{}", report(&typed, &output));
    assert_eq!(
        stdout,
        format!("connected to {addr}\nclient receive: first\nclient receive: second\ngoodbye\n"),
        "{}",
        report(&typed, &output)
    );
    server.expect_stdout_line(" left");
    let log = server.stdout();
    assert!(
        !log.contains(": exit") && !log.contains("never sent"),
        "{log}"
    );
}

#[test]
fn works_with_lesson_3s_server() {
    let lesson3 = testkit::command("lesson3-server", &["--bind", "127.0.0.1:0"]);
    let (_server, addr) = listening(testkit::Running::start("lesson 3", lesson3));
    let mut client = start_client_bin("client", CLIENT, addr);
    client_chat(&mut client, "hello lesson 3");
    client.close_stdin();
    assert!(client.wait_exit().success(), "{}", client.describe());
}

/// An echo server built like lesson 3's (recv, then send all of it, with
/// blocking calls) whose connection has 4 KiB buffers: when nobody reads
/// its echo, it stops reading after a few KiB.
fn small_buffer_echo_server() -> (SocketAddr, JoinHandle<()>) {
    // Set before listen, as tcp(7) asks, and inherited by the accepted
    // socket; a size set by hand is not grown by the kernel's autotuning.
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    setsockopt(&fd, sockopt::RcvBuf, &4096).expect("SO_RCVBUF");
    setsockopt(&fd, sockopt::SndBuf, &4096).expect("SO_SNDBUF");
    bind(fd.as_raw_fd(), &SockaddrStorage::from(any_port())).expect("bind");
    listen(&fd, Backlog::new(1).expect("backlog")).expect("listen");
    let listener = TcpListener::from(fd);
    let addr = listener.local_addr().expect("local address");
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_write_timeout(Some(DEADLINE)).expect("timeout");
        let mut buffer = [0u8; 4096];
        while let Ok(received @ 1..) = stream.read(&mut buffer) {
            if stream.write_all(&buffer[..received]).is_err() {
                break;
            }
        }
    });
    (addr, server)
}

/// A line longer than all the buffers between a client and
/// [`small_buffer_echo_server`] can hold: the client's send buffer at its
/// largest (the third number of tcp_wmem), its receive buffer as it starts
/// (the second of tcp_rmem: it grows only as the program reads), the
/// server's 4 KiB ones, plus 4 MiB. About 8 MiB with Linux's defaults.
fn line_longer_than_the_buffers() -> Vec<u8> {
    let len = buffer_sysctl("tcp_wmem").max + buffer_sysctl("tcp_rmem").default + 4 * 1024 * 1024;
    random_letters(9, len)
}

/// Lesson 3's deadlock (specified in lesson 3's `tests/deadlock.rs`), fixed:
/// against a server built like lesson 3's with small buffers, lesson 5's
/// client reads the echo while it sends a line longer than every buffer
/// between them, so the server never stops reading, and the line comes back
/// whole.
#[test]
fn the_same_line_and_server_do_not_deadlock_lesson_5s_client() {
    let (addr, server) = small_buffer_echo_server();
    let line = line_longer_than_the_buffers();
    let output = run_client(addr, [line.as_slice(), b"\n"].concat());
    let typed = format!(
        "one line of {} letters (more than every buffer between client and server), then the end of input",
        line.len()
    );
    assert!(output.status.success(), "{}", report(&typed, &output));
    let expected = [
        format!("connected to {addr}\nclient receive: ").as_bytes(),
        &line,
        b"\n",
    ]
    .concat();
    assert!(
        output.stdout == expected,
        "the echo differs: {}\n{}",
        first_difference(&expected, &output.stdout),
        report(&typed, &output)
    );
    server.join().expect("the server ends at the client's end");
}
