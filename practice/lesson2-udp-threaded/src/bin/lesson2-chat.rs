//! Lesson 1: a UDP peer-to-peer chat in a single thread.
//!
//! Two copies of this program talk directly, each knowing the other's IP and
//! port. One thread takes turns: wait up to a second for a datagram and print
//! it, then read a line and send it. Messages that arrive while you type wait
//! in the kernel until the next turn: lesson 2 fixes that.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};
use nix::unistd;

// ANCHOR: args
/// A UDP peer-to-peer chat in one thread: it waits a moment for a message,
/// then asks for one line to send, and so on.
#[derive(Parser, Debug)]
// A flag typed after a `just` recipe's defaults replaces the default.
#[command(name = "lesson2-chat", version, args_override_self = true)]
struct Args {
    /// The address this peer receives on (the original's MY_IP_ADDRESS_STR
    /// and MY_PORT). Port 0 lets the kernel pick a free one.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:55566")]
    bind: SocketAddr,

    /// The address the other peer receives on (PEER_IP_ADDRESS_STR and
    /// PEER_PORT). IPv6 works too: `[::1]:55577`.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:55577")]
    peer: SocketAddr,

    /// How long each receive waits for a datagram, in milliseconds (the
    /// original's one second). 0 is refused: SO_RCVTIMEO reads it as "forever".
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    recv_timeout_ms: u64,
}
// ANCHOR_END: args

impl Args {
    /// Parses the command line; what makes no sense is clap's usage error.
    fn parse_checked() -> Args {
        let args = Args::parse();
        // One socket has one address family.
        if args.bind.is_ipv4() != args.peer.is_ipv4() {
            let message = format!(
                "--bind {} and --peer {} must both be IPv4 or both IPv6: one UDP socket speaks one family",
                args.bind, args.peer
            );
            Args::command()
                .error(ErrorKind::ArgumentConflict, message)
                .exit();
        }
        args
    }
}

// ANCHOR: buffer
/// Fix: the original receives into 1024 bytes and silently cuts longer
/// datagrams; 64 KiB holds any UDP payload (65,507 bytes over IPv4).
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
    // 1. Create the UDP socket: datagrams in our address's family.
    // Protocol `None` is the C's 0: for datagrams over IP, UDP.
    let family = match args.bind {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .context("cannot create a UDP socket")?;
    println!("UDP socket created (fd {})", fd.as_raw_fd());
    // ANCHOR_END: socket

    // ANCHOR: my_addr
    // 2. Our own address, as the kernel wants it (the C's sockaddr_in).
    // Fix: clap parsed --bind, so a typo is a usage error, never 0.0.0.0.
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
    // Fix: parsed by clap too; the original's typo here sent to 0.0.0.0.
    let peer_addr = SockaddrStorage::from(args.peer);
    println!("sending to {}", args.peer);
    println!("start the peer with: --bind {} --peer {bound}", args.peer);
    // ANCHOR_END: peer

    // ANCHOR: timeout
    // The receive timeout: recvfrom gives up after it with EAGAIN.
    let timeout = TimeVal::milliseconds(args.recv_timeout_ms as i64);
    if let Err(err) = socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout) {
        eprintln!("warning: cannot set the receive timeout ({err}); a receive may wait forever");
    }
    // ANCHOR_END: timeout

    println!("Ready: type a message and press Enter to send it; 'quit' exits.");

    // ANCHOR: main_loop
    // 5. The main loop: receive, then send, then receive again.
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let mut stdin = LineReader::default();
    loop {
        // a. Try to receive one datagram (or give up after the timeout).
        if let Err(err) = receive_one(&fd, &mut buffer) {
            // Reported, and the chat goes on, as in the original.
            eprintln!("error: cannot receive: {err}");
        }

        // b. Ask for a line, wait until it is complete, and send it.
        prompt();
        let mut line = stdin.next_line();
        while line.is_none() && !stdin.at_end {
            stdin
                .read_available()
                .context("cannot read standard input")?;
            line = stdin.next_line();
        }
        let Some(message) = line.filter(|message| message != b"quit") else {
            println!("Quitting...");
            break;
        };
        if !message.is_empty() {
            send_message(&fd, &message, &peer_addr, args.peer);
        }
    }
    // ANCHOR_END: main_loop

    // ANCHOR: close
    // 6. Close the socket: dropping the OwnedFd calls close(2), as every
    // early return above does too.
    drop(fd);
    println!("Socket closed. Bye.");
    // ANCHOR_END: close
    Ok(())
}

// ANCHOR: receive
/// Waits up to the receive timeout for one datagram and prints it; returns
/// whether it printed one.
fn receive_one(fd: &OwnedFd, buffer: &mut [u8]) -> nix::Result<bool> {
    match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), buffer) {
        Ok((len, sender)) => {
            let sender = sender.map_or_else(|| "unknown sender".into(), |addr| addr.to_string());
            // Exactly `len` bytes: an empty datagram prints as empty, bytes
            // that are not UTF-8 as U+FFFD.
            let text = String::from_utf8_lossy(&buffer[..len]);
            println!("\n[from {sender}] {text}");
            Ok(true)
        }
        // The timeout expired (EAGAIN, also called EWOULDBLOCK): no message.
        Err(Errno::EAGAIN) => Ok(false),
        // Fix: after Ctrl+Z and `fg` this wait fails with EINTR though no
        // handler ran (signal(7)); the original takes it for an error.
        Err(Errno::EINTR) => Ok(false),
        Err(err) => Err(err),
    }
}
// ANCHOR_END: receive

// ANCHOR: send
/// Sends `message` to the peer as one datagram and reports the outcome.
fn send_message(fd: &OwnedFd, message: &[u8], peer_addr: &SockaddrStorage, peer: SocketAddr) {
    match socket::sendto(fd.as_raw_fd(), message, peer_addr, MsgFlags::empty()) {
        // It left; UDP says no more (Linux drops ICMP errors for this socket).
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

// ANCHOR: read_line
/// The lines typed on descriptor 0, read with read(2) itself: std's readers
/// retry after EINTR, which lesson 2 needs to see.
#[derive(Default)]
struct LineReader {
    pending: Vec<u8>,
    at_end: bool,
}

impl LineReader {
    /// One read(2) of descriptor 0: waits until something is typed, or
    /// returns at the end of input.
    fn read_available(&mut self) -> nix::Result<()> {
        let mut chunk = [0u8; 4096];
        match unistd::read(std::io::stdin().as_fd(), &mut chunk) {
            Ok(read) => {
                self.at_end = read == 0;
                self.pending.extend_from_slice(&chunk[..read]);
                Ok(())
            }
            // A signal handler ran (EINTR), or nothing was there: the caller
            // decides whether to wait again.
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The next whole line without its "\n" (or "\r\n"). At the end of
    /// input, a last line without a newline is still a line: nothing typed
    /// is lost. Raw bytes: text that is not UTF-8 is sent as typed.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        if let Some(newline) = self.pending.iter().position(|&byte| byte == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=newline).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Some(line);
        }
        (self.at_end && !self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}
// ANCHOR_END: read_line

fn prompt() {
    print!("{PROMPT}");
    // A prompt that cannot be shown is no reason to stop chatting.
    let _ = std::io::stdout().flush();
}

/// The std form of an IPv4 or IPv6 socket address.
fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::from(*v4))
    } else {
        addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
    }
}
