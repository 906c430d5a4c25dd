//! Exercise 4.3: two listeners on one port with SO_REUSEPORT.
//!
//! SO_REUSEADDR never lets two sockets listen on the same address. Linux's
//! SO_REUSEPORT does, when every one of them sets it: the kernel then spreads
//! incoming connections over the listeners. That is how several server
//! processes (or threads, each with its own accept queue) share one port.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Result, ensure};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, accept, bind, getsockname, listen,
    setsockopt, socket, sockopt,
};

// ANCHOR: solution
/// A listener on `addr` with SO_REUSEPORT set before bind.
fn reuseport_listener(addr: SocketAddr) -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, Backlog::new(128)?)?;
    Ok(fd)
}
// ANCHOR_END: solution

/// How many connections are waiting in `listener`'s accept queue.
fn drain(listener: &OwnedFd) -> usize {
    let mut accepted = 0;
    while let Ok(fd) = accept(listener.as_raw_fd()) {
        let _ = nix::unistd::close(fd);
        accepted += 1;
    }
    accepted
}

fn main() -> Result<()> {
    let first = reuseport_listener("127.0.0.1:0".parse()?)?;
    let bound: SockaddrStorage = getsockname(first.as_raw_fd())?;
    let addr = SocketAddr::from(
        *bound
            .as_sockaddr_in()
            .ok_or_else(|| anyhow::anyhow!("not IPv4"))?,
    );
    let second = reuseport_listener(addr)?;
    // Connections from different source ports hash to either listener.
    let clients: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(addr))
        .collect::<Result<_, _>>()?;
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (a, b) = (drain(&first), drain(&second));
    println!("both listen on {addr}: first accepted {a}, second {b}");
    ensure!(
        a + b == clients.len() && a > 0 && b > 0,
        "the kernel spreads connections over both"
    );
    Ok(())
}
