//! Lesson 7: peer to peer across every kind of NAT. Two binaries share this
//! library: `lesson7-rendezvous`, the server where peers meet (and the
//! relay), and `lesson7-peer`, the chat that always gets through. The
//! socket calls are in the binaries; here are the protocol and two small
//! helpers they both need.

pub mod protocol;

use std::net::SocketAddr;

use nix::sys::socket::{AddressFamily, SockaddrStorage};

/// The std form of an IPv4 or IPv6 socket address.
pub fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::from(*v4))
    } else {
        addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
    }
}

/// The address family of `addr`: AF_INET or AF_INET6.
pub fn family(addr: SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Milliseconds as a human reads them: `500 ms`, `2.5 s`.
pub fn show_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{} s", ms as f64 / 1000.0)
    }
}
