//! The kernel behaviour the chapter builds on, checked on loopback sockets
//! with the same nix calls the lesson makes: what level- and edge-triggered
//! epoll report, and what a non-blocking socket answers when it cannot go
//! on (EAGAIN).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, recv, send};

/// A connected pair of TCP sockets on loopback: (client, server side).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// How many events one epoll_wait reports after waiting at most `ms`.
fn wait(epoll: &Epoll, ms: u16) -> usize {
    let mut events = [EpollEvent::empty(); 4];
    epoll
        .wait(&mut events, EpollTimeout::from(ms))
        .expect("epoll_wait")
}

/// epoll(7): level-triggered (the default) reports a descriptor for as long
/// as it is ready. A socket with room in its send buffer is always
/// writable: with EPOLLOUT asked for, every wait returns at once. Hence the
/// server asks for EPOLLOUT only while an echo waits.
#[test]
fn level_triggered_epoll_reports_a_writable_socket_on_every_wait() {
    let (client, _server) = pair();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    epoll
        .add(&client, EpollEvent::new(EpollFlags::EPOLLOUT, 7))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(wait(&epoll, 0), 1, "writable, reported again");
    }
}

/// epoll(7)'s own example, on a socket: 2 kB arrive, 1 kB is read, and the
/// next wait reports the rest again when level-triggered, never when
/// edge-triggered (EPOLLET: only a change is an event).
#[test]
fn edge_triggered_epoll_does_not_report_bytes_left_unread_and_level_triggered_does() {
    for (mode, flags, reported_again) in [
        ("level", EpollFlags::EPOLLIN, 1),
        ("edge", EpollFlags::EPOLLIN | EpollFlags::EPOLLET, 0),
    ] {
        let (mut client, mut server) = pair();
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        epoll.add(&server, EpollEvent::new(flags, 1)).unwrap();
        client.write_all(&[b'x'; 2048]).unwrap();
        assert_eq!(wait(&epoll, 1000), 1, "{mode}: the 2 kB are reported");
        server.read_exact(&mut [0u8; 1024]).unwrap();
        assert_eq!(wait(&epoll, 100), reported_again, "{mode}: the 1 kB left");
    }
}

/// A non-blocking socket never waits: a recv with nothing to read, and a
/// send with the send buffer full, fail with EAGAIN (EWOULDBLOCK) instead.
/// A blocking call in their place would stop the only thread.
#[test]
fn a_non_blocking_socket_answers_eagain_instead_of_waiting() {
    let (client, _server) = pair();
    client.set_nonblocking(true).unwrap();
    let fd = client.as_raw_fd();
    assert_eq!(
        recv(fd, &mut [0u8; 16], MsgFlags::empty()),
        Err(Errno::EAGAIN),
        "nothing to read yet"
    );
    // The peer never reads: the buffers fill, and then send says EAGAIN.
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    let full = loop {
        match send(fd, &chunk, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => sent += n,
            Err(err) => break err,
        }
        assert!(sent < 1 << 30, "a GiB went without EAGAIN");
    };
    assert_eq!(full, Errno::EAGAIN, "after {sent} bytes");
    // std names the same answer WouldBlock.
    let err = (&client).write(&chunk).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
}
