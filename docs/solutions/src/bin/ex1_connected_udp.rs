//! Exercise 1.2: a connected UDP socket.
//!
//! connect(2) on a UDP socket sends no packet; it fixes the peer. From then
//! on the kernel drops datagrams from anyone else (lesson 2's filter, done
//! by the kernel), and reports an ICMP "port unreachable" as ECONNREFUSED
//! on a later call, which an unconnected socket never sees.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, bind, connect, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

// ANCHOR: solution
/// A UDP socket on loopback that only talks to `peer`.
fn connected_socket(peer: SocketAddr) -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from("127.0.0.1:0".parse::<SocketAddr>()?),
    )?;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(peer)).context("connect")?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(300))?;
    Ok(fd)
}
// ANCHOR_END: solution

fn main() -> Result<()> {
    // Nobody listens at `dead`: the port was free a moment ago.
    let dead = UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let fd = connected_socket(dead)?;
    send(fd.as_raw_fd(), b"anyone?", MsgFlags::empty())?;
    std::thread::sleep(Duration::from_millis(50));
    let mut buffer = [0u8; 64];
    let refused = recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty());
    println!("after sending to a dead port: {refused:?}");
    ensure!(refused == Err(Errno::ECONNREFUSED), "expected ECONNREFUSED");

    // A stranger's datagram never reaches a connected socket.
    let stranger = UdpSocket::bind("127.0.0.1:0")?;
    let local: SockaddrStorage = nix::sys::socket::getsockname(fd.as_raw_fd())?;
    let local = local
        .as_sockaddr_in()
        .map(|addr| SocketAddr::from(*addr))
        .context("IPv4 address")?;
    stranger.send_to(b"intruder", local)?;
    let filtered = recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty());
    println!("after a stranger's datagram: {filtered:?}");
    ensure!(filtered == Err(Errno::EAGAIN), "the kernel should drop it");
    Ok(())
}
