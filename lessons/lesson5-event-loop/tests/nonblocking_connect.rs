//! A non-blocking `connect` cannot finish at once (the handshake needs a
//! round trip), so it fails with EINPROGRESS, not EAGAIN, and completes in
//! the background: the socket turns writable, and SO_ERROR then says how it
//! went (connect(2)). Lesson 5's client connects before it sets O_NONBLOCK.

use std::net::TcpListener;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, connect, getsockopt, socket, sockopt,
};

#[test]
fn a_non_blocking_connect_fails_with_einprogress_then_completes() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let server = SockaddrStorage::from(listener.local_addr().expect("address"));
    assert_eq!(
        connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &server),
        Err(Errno::EINPROGRESS)
    );
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    assert_eq!(
        poll(&mut fds, PollTimeout::from(5000u16)),
        Ok(1),
        "writable"
    );
    assert_eq!(getsockopt(&fd, sockopt::SocketError), Ok(0), "connected");
}
