//! What edge-triggered epoll (EPOLLET) guarantees on Linux, checked on a
//! loopback TCP connection: the first wait after data arrives reports the
//! socket, even one that was readable all along; bytes that merely stay
//! unread are never reported again. So an edge-triggered reader must drain to
//! EAGAIN, and may still be woken for data it has already seen.

use std::io::Write;
use std::net::{TcpListener, TcpStream};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// How many events one epoll_wait reports after waiting at most `ms`.
fn wait(epoll: &Epoll, ms: u16) -> usize {
    let mut events = [EpollEvent::empty(); 4];
    epoll
        .wait(&mut events, EpollTimeout::from(ms))
        .expect("epoll_wait")
}

/// epoll(7): "multiple events can be generated upon receipt of multiple
/// chunks of data". The socket is never read, so it stays readable; each
/// new chunk still raises an event, and no chunk is reported twice.
#[test]
fn edge_triggered_epoll_reports_every_arrival_even_on_a_socket_already_readable() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
    let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
    epoll
        .add(&server, EpollEvent::new(flags, 1))
        .expect("epoll_ctl");
    for chunk in 1..=3 {
        client.write_all(&[b'x'; 1024]).expect("write");
        assert_eq!(
            wait(&epoll, 1000),
            1,
            "chunk {chunk}: a new arrival is an event, though {} KiB were already unread",
            chunk - 1
        );
        assert_eq!(
            wait(&epoll, 100),
            0,
            "chunk {chunk}: bytes left unread are not reported again"
        );
    }
}
