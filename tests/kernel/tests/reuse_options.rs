//! The claims of the TIME_WAIT chapter about socket options, checked on this
//! kernel: what `SO_REUSEADDR` does not allow, how `SO_REUSEPORT` differs,
//! that accepted sockets inherit it, and that Rust's own `TcpListener` sets
//! `SO_REUSEADDR` by itself. Also the foundations chapter's claim that a port
//! does not name one socket: a listener shares its port with the sockets it
//! accepted and with their TIME-WAIT leftovers, and UDP's ports are not TCP's.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, accept, bind, getsockopt, listen,
    setsockopt, socket, sockopt,
};
use testkit::{DEADLINE, TcpState, tcp_sockets};

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

/// The states of the rows of the kernel's TCP table whose local end is
/// `addr`, sorted.
fn states_on(addr: SocketAddr) -> Vec<String> {
    let mut states: Vec<String> = tcp_sockets()
        .iter()
        .filter(|socket| socket.local == addr)
        .map(|socket| socket.state.ss_name())
        .collect();
    states.sort();
    states
}

/// One local address and port, four sockets at once: the listener, two
/// accepted connections, and the TIME-WAIT leftover of a third that the
/// server's side closed first. Only the far end tells the connections apart.
#[test]
fn a_listener_its_accepted_sockets_and_time_wait_share_one_port() {
    let addr = free_addr();
    let listening = TcpListener::bind(addr).unwrap();
    let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let accepted: Vec<TcpStream> = (0..3).map(|_| listening.accept().unwrap().0).collect();
    for socket in &accepted {
        assert_eq!(
            socket.local_addr().unwrap(),
            addr,
            "accept gives the listener's port"
        );
    }
    // The server's side of the third connection closes first, then the client.
    accepted[2].shutdown(Shutdown::Both).unwrap();
    clients[2].shutdown(Shutdown::Both).unwrap();
    let wanted = ["ESTAB", "ESTAB", "LISTEN", "TIME-WAIT"];
    let start = Instant::now();
    while states_on(addr) != wanted {
        assert!(
            start.elapsed() < DEADLINE,
            "sockets on {addr}: {:?}, wanted {wanted:?}",
            states_on(addr)
        );
        thread::sleep(Duration::from_millis(5));
    }
    let time_wait = tcp_sockets()
        .into_iter()
        .find(|socket| socket.local == addr && socket.state == TcpState::TimeWait)
        .unwrap();
    assert_eq!(time_wait.remote, clients[2].local_addr().unwrap());
}

/// TCP and UDP number their ports separately: a UDP socket binds the port a
/// TCP socket listens on, while a second UDP socket on it is refused.
#[test]
fn tcp_and_udp_ports_are_separate() {
    let addr = free_addr();
    let _tcp = listener(addr, false, false).unwrap();
    let udp = UdpSocket::bind(addr);
    assert!(udp.is_ok(), "UDP binds the TCP listener's port: {udp:?}");
    let second = UdpSocket::bind(addr).map_err(|err| err.raw_os_error());
    assert_eq!(second.err(), Some(Some(Errno::EADDRINUSE as i32)));
}

/// Leaves a TIME-WAIT socket on `addr`: a listener with (or without)
/// SO_REUSEADDR accepts a connection, its side closes first, then the
/// client's; the listener is closed too. Returns once the table shows it.
fn time_wait_from_a_listener(addr: SocketAddr, reuse_addr: bool) {
    let listening = listener(addr, reuse_addr, false).expect("the first listener");
    let client = TcpStream::connect(addr).expect("connect");
    let accepted = accept(listening.as_raw_fd()).expect("accept");
    // SAFETY: accept just returned this descriptor; nothing else owns it.
    let accepted = unsafe { OwnedFd::from_raw_fd(accepted) };
    drop(listening);
    drop(accepted); // The server's side closes first...
    let mut client = client;
    client
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    assert_eq!(
        std::io::Read::read(&mut client, &mut [0; 1]).expect("read the FIN"),
        0
    );
    drop(client); // ...then the client's.
    let start = Instant::now();
    while states_on(addr) != ["TIME-WAIT"] {
        assert!(
            start.elapsed() < DEADLINE,
            "sockets on {addr}: {:?}",
            states_on(addr)
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The rule behind lesson 4: a new listener with SO_REUSEADDR binds over a
/// TIME-WAIT socket only if that socket had the option too (it inherited
/// it from its listener).
#[test]
fn so_reuseaddr_binds_over_time_wait_only_if_the_old_socket_had_it_too() {
    for old_had_it in [false, true] {
        let addr = free_addr();
        time_wait_from_a_listener(addr, old_had_it);
        let new = listener(addr, true, false).map(drop);
        let expected = if old_had_it {
            Ok(())
        } else {
            Err(Errno::EADDRINUSE)
        };
        assert_eq!(
            new, expected,
            "the old socket had SO_REUSEADDR: {old_had_it}"
        );
    }
}
