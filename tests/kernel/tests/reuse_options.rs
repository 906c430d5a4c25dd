//! The claims of the TIME_WAIT chapter about socket options, checked on this
//! kernel: what `SO_REUSEADDR` does not allow, how `SO_REUSEPORT` differs,
//! that accepted sockets inherit it, and that Rust's own `TcpListener` sets
//! `SO_REUSEADDR` by itself.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, accept, bind, getsockopt, listen,
    setsockopt, socket, sockopt,
};

/// A TCP socket with the given options set, bound to `addr` and listening,
/// or the errno of the first step that failed.
fn listener(addr: SocketAddr, reuse_addr: bool, reuse_port: bool) -> Result<OwnedFd, Errno> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &reuse_addr)?;
    setsockopt(&fd, sockopt::ReusePort, &reuse_port)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, Backlog::new(10)?)?;
    Ok(fd)
}

fn free_addr() -> SocketAddr {
    testkit::free_tcp_addr(testkit::LOCALHOST)
}

#[test]
fn std_tcp_listener_sets_so_reuseaddr() {
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(
        getsockopt(&std_listener, sockopt::ReuseAddr).unwrap(),
        "std's listener has SO_REUSEADDR on"
    );
    // A socket made with socket(2), as the lessons do, starts without it.
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    assert!(!getsockopt(&fd, sockopt::ReuseAddr).unwrap());
}

#[test]
fn so_reuseaddr_still_forbids_a_second_listener() {
    let addr = free_addr();
    let _first = listener(addr, true, false).unwrap();
    assert_eq!(listener(addr, true, false).err(), Some(Errno::EADDRINUSE));
}

#[test]
fn so_reuseport_on_both_allows_a_second_listener() {
    let addr = free_addr();
    let _first = listener(addr, false, true).unwrap();
    let second = listener(addr, false, true);
    assert!(second.is_ok(), "two listeners share the port: {second:?}");
}

#[test]
fn so_reuseport_needs_the_first_listener_to_have_it_too() {
    let addr = free_addr();
    let _first = listener(addr, false, false).unwrap();
    assert_eq!(listener(addr, false, true).err(), Some(Errno::EADDRINUSE));
}

/// Why lesson 4's TIME-WAIT sockets let it restart: they are the accepted
/// sockets, and an accepted socket inherits SO_REUSEADDR from its listener.
#[test]
fn accepted_sockets_inherit_so_reuseaddr_from_the_listener() {
    for reuse_addr in [true, false] {
        let addr = free_addr();
        let listening = listener(addr, reuse_addr, false).unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = accept(listening.as_raw_fd()).unwrap();
        // SAFETY: accept just returned this descriptor; nothing else owns it.
        let accepted = unsafe { OwnedFd::from_raw_fd(accepted) };
        assert_eq!(
            getsockopt(&accepted, sockopt::ReuseAddr).unwrap(),
            reuse_addr,
            "accepted from a listener with SO_REUSEADDR={reuse_addr}"
        );
    }
}
