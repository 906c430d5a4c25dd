//! What `accept` does with a connection that was reset while it waited in
//! the listen queue, checked on this kernel.
//!
//! POSIX lets `accept` fail with ECONNABORTED then, and the lessons' accept
//! loop handles that error; but Linux rarely reports it. It hands out the
//! dead connection like any other, and the first call that needs the peer
//! fails instead: `getpeername` with ENOTCONN.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, accept4, bind, getpeername,
    getsockname, listen, setsockopt, socket, sockopt,
};
use testkit::{DEADLINE, LOCALHOST, TcpState, tcp_sockets};

/// Waits until the TCP table has (`present`) or no longer has a row
/// `local` → `remote` in state ESTABLISHED.
fn wait_for_established(local: SocketAddr, remote: SocketAddr, present: bool) {
    let start = Instant::now();
    loop {
        let found = tcp_sockets().into_iter().any(|socket| {
            socket.local == local
                && socket.remote == remote
                && socket.state == TcpState::Established
        });
        if found == present {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{local} → {remote}: still {} ESTABLISHED after {DEADLINE:?}",
            if present { "not" } else { "" }
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_connection_reset_while_queued_is_accepted_then_getpeername_fails_with_enotconn() {
    let listener = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        listener.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(LOCALHOST, 0)),
    )
    .unwrap();
    listen(&listener, Backlog::new(10).unwrap()).unwrap();
    let server: SockaddrStorage = getsockname(listener.as_raw_fd()).unwrap();
    let server = SocketAddr::from(*server.as_sockaddr_in().expect("an IPv4 address"));

    // The handshake completes in the kernel: the connection waits in the
    // listen queue, not accepted yet.
    let client = TcpStream::connect(server).expect("connect");
    let client_addr = client.local_addr().unwrap();
    wait_for_established(server, client_addr, true);

    // The client resets it: SO_LINGER with a zero timeout makes close()
    // send an RST instead of a FIN.
    setsockopt(
        &client,
        sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .expect("set SO_LINGER");
    drop(client);
    wait_for_established(server, client_addr, false);

    let accepted = accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC)
        .expect("accept hands out the reset connection (no ECONNABORTED)");
    // SAFETY: accept4 just returned this descriptor; nothing else owns it.
    let accepted = unsafe { OwnedFd::from_raw_fd(accepted) };
    assert_eq!(
        getpeername::<SockaddrStorage>(accepted.as_raw_fd()).map(|_| ()),
        Err(Errno::ENOTCONN),
        "the accepted socket has no peer any more"
    );
}
