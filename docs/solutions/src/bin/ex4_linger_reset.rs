//! Exercise 4.2: a server that leaves no TIME-WAIT behind — and why not to.
//!
//! SO_LINGER with a zero timeout makes close(2) abort the connection: the
//! kernel sends RST instead of FIN, and the socket skips TIME-WAIT. The port
//! is free at once, but data still in flight is thrown away and the client
//! sees "connection reset": TIME-WAIT exists to protect exactly that close.
//! This demo closes two accepted connections first, one each way, and looks
//! for TIME-WAIT sockets in /proc/net/tcp.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Result, ensure};
use nix::sys::socket::{setsockopt, sockopt};

// ANCHOR: solution
/// Closes `connection` with RST: no FIN exchange, no TIME-WAIT.
fn abort(connection: TcpStream) -> Result<()> {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&connection.as_fd(), sockopt::Linger, &linger)?;
    drop(connection);
    Ok(())
}
// ANCHOR_END: solution

/// The TIME-WAIT sockets whose local port is `port` (state 06 in
/// /proc/net/tcp; the port is the hexadecimal after the address's colon).
fn time_wait_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            fields.get(1).is_some_and(|addr| addr.ends_with(&local)) && fields.get(3) == Some(&"06")
        })
        .count()
}

/// Accepts one client and closes it first, gracefully or with `abort`.
fn close_first(aborting: bool) -> Result<(usize, String)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    let (server_side, _) = listener.accept()?;
    if aborting {
        abort(server_side)?
    } else {
        drop(server_side)
    }
    client.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut rest = Vec::new();
    let seen = match client.read_to_end(&mut rest) {
        Ok(_) => "end of stream (FIN)".to_owned(),
        Err(err) => format!("error: {err}"),
    };
    drop(client);
    std::thread::sleep(Duration::from_millis(50));
    Ok((time_wait_on(port), seen))
}

fn main() -> Result<()> {
    let (graceful, seen) = close_first(false)?;
    println!(
        "graceful close: the client saw {seen}; TIME-WAIT sockets on the server's port: {graceful}"
    );
    let (aborted, seen) = close_first(true)?;
    println!(
        "SO_LINGER 0:    the client saw {seen}; TIME-WAIT sockets on the server's port: {aborted}"
    );
    ensure!(
        graceful == 1 && aborted == 0,
        "only the graceful close leaves TIME-WAIT"
    );
    Ok(())
}
