//! The TIME_WAIT chapter's claims about the state itself, checked on this
//! kernel: only the side that closes first enters TIME-WAIT, and it stays
//! there for 60 seconds on Linux (`TCP_TIMEWAIT_LEN`); and a listener made by
//! Rust's std binds again over it at once. The lesson tests show what
//! TIME-WAIT does to the lessons' servers; these read the timer.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, socket};
use testkit::{DEADLINE, LOCALHOST, TcpState, tcp_sockets};

/// The seconds left on the TIME-WAIT timer of the socket `local` →
/// `remote` (kernel timer kind 3), or `None` while there is no such row.
fn time_wait_seconds_left(local: SocketAddr, remote: SocketAddr) -> Option<f64> {
    let socket = tcp_sockets().into_iter().find(|socket| {
        socket.state == TcpState::TimeWait && socket.local == local && socket.remote == remote
    })?;
    let timer = socket
        .timer
        .unwrap_or_else(|| panic!("a TIME-WAIT row runs a timer: {socket}"));
    assert_eq!(
        timer.kind, 3,
        "a TIME-WAIT row runs the TIME-WAIT timer: {socket}"
    );
    Some(timer.left.as_secs_f64())
}

/// A connection on loopback through `listener`, closed server side first
/// (as when Ctrl+C kills the server), then client side; returns the
/// server's and the client's addresses once the server's end is in
/// TIME-WAIT, with the seconds its timer has left.
fn close_server_first(listener: &TcpListener) -> (SocketAddr, SocketAddr, f64) {
    let server = listener.local_addr().expect("the listener's address");
    let mut client_stream = TcpStream::connect(server).expect("connect on loopback");
    let client = client_stream.local_addr().expect("the client's address");
    let (accepted, _) = listener.accept().expect("accept");

    drop(accepted); // The server's FIN.
    client_stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    assert_eq!(
        client_stream.read(&mut [0; 16]).expect("read"),
        0,
        "end of stream"
    );
    drop(client_stream); // The client's FIN.

    let start = Instant::now();
    loop {
        if let Some(left) = time_wait_seconds_left(server, client) {
            return (server, client, left);
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no TIME-WAIT socket {server} → {client} after {DEADLINE:?}: {:?}",
            tcp_sockets()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn time_wait_lasts_60_seconds_on_the_side_that_closed_first() {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let (server, client, left) = close_server_first(&listener);
    // Fresh from the close: just under 60 s left (a slow machine loses a few).
    assert!(
        (50.0..=60.0).contains(&left),
        "TIME-WAIT timer: {left} s left, expected just under 60"
    );

    // The side that closed second went through LAST-ACK to CLOSED: no
    // TIME-WAIT (nor any other) socket is left with the client's port.
    let start = Instant::now();
    while let Some(socket) = tcp_sockets()
        .into_iter()
        .find(|socket| socket.local == client && socket.remote == server)
    {
        assert_ne!(socket.state, TcpState::TimeWait, "{socket}");
        assert!(
            start.elapsed() < DEADLINE,
            "the client's socket lingers: {socket}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The bug of lessons 3–4 never shows with std: its listener sets
/// SO_REUSEADDR, so it binds again at once over its own TIME-WAIT socket,
/// where a socket without the option (lesson 3's way) is refused.
#[test]
fn a_std_listener_rebinds_at_once_over_its_time_wait_socket() {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let (server, _, _) = close_server_first(&listener);
    drop(listener); // The server is gone; its TIME-WAIT socket holds the port.

    let plain = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    assert_eq!(
        bind(plain.as_raw_fd(), &SockaddrStorage::from(server)),
        Err(Errno::EADDRINUSE),
        "without SO_REUSEADDR the port is taken"
    );
    let again = TcpListener::bind(server);
    assert!(
        again.is_ok(),
        "std's listener binds {server} again: {again:?}"
    );
}
