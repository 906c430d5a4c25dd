//! Exercise 4.1: SO_REUSEADDR set after bind changes nothing for that bind.
//!
//! The kernel decides whether a port may be taken when bind runs. This demo
//! leaves a TIME-WAIT socket on a port (from a listener that had the option),
//! then binds that port twice more: option after bind (refused), option
//! before bind (accepted).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{Result, ensure};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, accept, bind, getsockname, listen,
    setsockopt, socket, sockopt,
};

/// A TCP socket; with `option_first`, SO_REUSEADDR is set before `bind`,
/// otherwise after it, as the exercise's lesson 4 with its steps swapped.
fn bind_with_reuseaddr(addr: SocketAddr, option_first: bool) -> Result<OwnedFd, Errno> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // ANCHOR: solution
    if option_first {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    } else {
        bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
        setsockopt(&fd, sockopt::ReuseAddr, &true)?; // too late: bind has decided
    }
    // ANCHOR_END: solution
    Ok(fd)
}

fn main() -> Result<()> {
    // A listener with the option, one client, the server's end closed
    // first: it waits in TIME-WAIT on the port.
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let listener = bind_with_reuseaddr(any, true)?;
    listen(&listener, Backlog::new(1)?)?;
    let local: SockaddrStorage = getsockname(listener.as_raw_fd())?;
    let addr = SocketAddr::from(*local.as_sockaddr_in().expect("an IPv4 address"));
    let mut client = TcpStream::connect(addr)?;
    // SAFETY: accept just returned this descriptor; nothing else owns it.
    let accepted = unsafe { OwnedFd::from_raw_fd(accept(listener.as_raw_fd())?) };
    drop(accepted);
    drop(listener);
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    client.read_to_end(&mut Vec::new())?;
    drop(client);
    std::thread::sleep(Duration::from_millis(50));

    let after = bind_with_reuseaddr(addr, false);
    println!("option after bind:  {:?}", after.as_ref().map(|_| "bound"));
    let before = bind_with_reuseaddr(addr, true);
    println!("option before bind: {:?}", before.as_ref().map(|_| "bound"));
    ensure!(
        matches!(after, Err(Errno::EADDRINUSE)) && before.is_ok(),
        "only the option set before bind lets the port be taken over TIME-WAIT"
    );
    Ok(())
}
