//! Lesson 1: a UDP peer-to-peer chat in a single thread.
//!
//! Two copies of this program talk directly, each knowing the other's IP and
//! port: no server in between. One thread does everything, in turn: wait up
//! to a second for a datagram and print it, then ask for a line and send it.
//! The steps are numbered as in the post's first version.
//!
//! The catch, which lesson 2 fixes: while the program waits for you to type,
//! it does not call recvfrom. Datagrams that arrive meanwhile wait in the
//! socket's receive buffer and show one per turn, each after an Enter; once
//! the buffer is full, the kernel drops further datagrams without telling
//! anyone (tests/queueing.rs shows both).

mod cli;

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

use cli::Args;

// ANCHOR: buffer
/// Fix: the original receives into 1024 bytes and silently cuts longer
/// datagrams. A UDP payload is at most 65,507 bytes over IPv4 (65,527 over
/// IPv6), so 64 KiB holds any datagram whole.
const BUFFER_SIZE: usize = 65_536;
// ANCHOR_END: buffer

const PROMPT: &str = "Enter message ('quit' to exit): ";

fn main() -> ExitCode {
    let args = Args::parse_checked();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    // ANCHOR: socket
    // 1. Create the UDP socket: datagrams (SOCK_DGRAM) in the address family
    // of our address (AF_INET or AF_INET6). Protocol `None` is the C's 0:
    // the only datagram protocol of IP, UDP.
    let family = match args.bind {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .context("cannot create a UDP socket")?;
    // ANCHOR_END: socket

    // ANCHOR: my_addr
    // 2. Our own address, as the kernel wants it (the C's sockaddr_in).
    // Fix: the post's first version checks inet_pton's result with `< 0`,
    // but inet_pton returns 0 for a malformed address, so a typo went on as
    // 0.0.0.0 (its second version checks `<= 0`). Here clap parsed --bind
    // before any socket existed: a typo is a usage error.
    let my_addr = SockaddrStorage::from(args.bind);
    // ANCHOR_END: my_addr

    // ANCHOR: bind
    // 3. Bind the socket to our address, so datagrams sent to it reach us.
    socket::bind(fd.as_raw_fd(), &my_addr)
        .with_context(|| format!("cannot bind UDP socket to {}", args.bind))?;
    // With port 0 the kernel chose the port: ask it which.
    let bound: SockaddrStorage =
        socket::getsockname(fd.as_raw_fd()).context("cannot read the bound address")?;
    let bound = to_socket_addr(&bound).unwrap_or(args.bind);
    println!("bound to {bound}");
    // ANCHOR_END: bind

    // ANCHOR: peer
    // 4. The other peer's address: where every line we send goes.
    let peer_addr = SockaddrStorage::from(args.peer);
    println!("sending to {}", args.peer);
    println!("start the peer with: {}", args.peer_command(bound));
    // ANCHOR_END: peer

    // ANCHOR: timeout
    // A receive timeout, so the single thread can take turns: recvfrom gives
    // up after it with EAGAIN, and the prompt comes back.
    let timeout = TimeVal::milliseconds(args.recv_timeout_ms as i64);
    if let Err(err) = socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout) {
        eprintln!("warning: cannot set the receive timeout ({err}); a receive may wait forever");
    }
    // ANCHOR_END: timeout

    println!("Ready: type a message and press Enter to send it; 'quit' exits.");

    // ANCHOR: main_loop
    // 5. The main loop: receive, then send, then receive again.
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let mut input = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        // a. Try to receive one datagram (or give up after the timeout).
        receive_one(&fd, &mut buffer);

        // b. Ask for a line and send it to the peer.
        print!("{PROMPT}");
        std::io::stdout()
            .flush()
            .context("cannot write to standard output")?;
        line.clear();
        // Raw bytes, not a String: text that is not UTF-8 is sent as typed.
        let read = input
            .read_until(b'\n', &mut line)
            .context("cannot read standard input")?;
        let message = strip_line_end(&line);
        if read == 0 || message == b"quit" {
            println!("Quitting...");
            break;
        }
        if message.is_empty() {
            continue;
        }
        send_message(&fd, message, &peer_addr, args.peer);
    }
    // ANCHOR_END: main_loop

    // ANCHOR: close
    // 6. Close the socket. Dropping the OwnedFd calls close(2); it would also
    // happen on every early return above, which the C does by hand.
    drop(fd);
    println!("Socket closed. Bye.");
    // ANCHOR_END: close
    Ok(())
}

// ANCHOR: receive
/// Waits up to the receive timeout for one datagram and prints it.
fn receive_one(fd: &OwnedFd, buffer: &mut [u8]) {
    match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), buffer) {
        Ok((len, sender)) => {
            // Exactly `len` bytes: no terminating NUL needed, and an empty
            // datagram is a message too (it prints as empty). Bytes that are
            // not UTF-8 show as U+FFFD.
            let sender = sender.map_or_else(|| "unknown sender".into(), |addr| addr.to_string());
            let text = String::from_utf8_lossy(&buffer[..len]);
            println!("[from {sender}] {text}");
        }
        // The timeout expired (EAGAIN, also called EWOULDBLOCK): no message
        // this turn. EINTR: a signal interrupted the wait. Both are normal.
        Err(Errno::EAGAIN | Errno::EINTR) => {}
        // Anything else is reported, and the chat goes on, as in the original.
        Err(err) => eprintln!("error: cannot receive: {err}"),
    }
}
// ANCHOR_END: receive

// ANCHOR: send
/// Sends `message` to the peer as one datagram and reports the outcome.
fn send_message(fd: &OwnedFd, message: &[u8], peer_addr: &SockaddrStorage, peer: SocketAddr) {
    match socket::sendto(fd.as_raw_fd(), message, peer_addr, MsgFlags::empty()) {
        // Success only means the datagram left: UDP has no acknowledgement,
        // and an unconnected socket on Linux is not even told when nobody
        // listens at the peer's port (the ICMP "port unreachable" is dropped).
        Ok(sent) => println!("[sent {sent} bytes]"),
        Err(Errno::EMSGSIZE) => eprintln!(
            "error: cannot send to {peer}: {}: a UDP datagram holds at most 65,507 bytes; the line has {}",
            Errno::EMSGSIZE,
            message.len()
        ),
        // Reported, and the chat goes on: the user may retry.
        Err(err) => eprintln!("error: cannot send to {peer}: {err}"),
    }
}
// ANCHOR_END: send

/// The line without its "\n" (or "\r\n").
fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The std form of an IPv4 or IPv6 socket address.
fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::from(*v4))
    } else {
        addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
    }
}
