//! Practice, lesson 1: a UDP peer-to-peer chat in a single thread.
//!
//! The command line, the output and the error reporting are written; the
//! socket calls are yours. Each `todo!` names its step, the man page and the
//! chapter's section. Check your work with `just check 1`, or let
//! `just practice 1` check it on every save. The solution is lesson 1 itself.

// The skeleton compiles while steps are missing; delete this line when done.
#![allow(unreachable_code, unused_variables, unused_imports, unused_mut)]

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

/// A UDP peer-to-peer chat in one thread: it waits a moment for a message,
/// then asks for one line to send, and so on.
#[derive(Parser, Debug)]
// A flag typed after a `just` recipe's defaults replaces the default.
#[command(name = "lesson1-chat", version, args_override_self = true)]
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

/// Fix: the original receives into 1024 bytes and silently cuts longer
/// datagrams; 64 KiB holds any UDP payload (65,507 bytes over IPv4).
const BUFFER_SIZE: usize = 65_536;

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
    // 1. Create the UDP socket: datagrams in our address's family.
    // Protocol `None` is the C's 0: for datagrams over IP, UDP.
    let family = match args.bind {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = todo!(
        "step 1: create a UDP socket in `family` (socket(2); nix: socket::socket); \
         see lesson 1, \"1. Create the socket\""
    );
    println!("UDP socket created (fd {})", fd.as_raw_fd());

    // 2. Our own address, as the kernel wants it (the C's sockaddr_in).
    // Fix: clap parsed --bind, so a typo is a usage error, never 0.0.0.0.
    let my_addr: SockaddrStorage = todo!(
        "step 2: turn --bind into the kernel's address form (SockaddrStorage::from); \
         see lesson 1, \"2. Our own address\""
    );

    // 3. Bind the socket to our address, so datagrams sent to it reach us.
    // An error must read "cannot bind UDP socket to IP:PORT: <the OS error>".
    todo!("step 3: bind the socket to --bind (bind(2)); see lesson 1, \"3. Bind\"");
    // With port 0 the kernel chose the port: ask it which.
    let bound: SockaddrStorage = todo!(
        "step 3: ask the kernel which address it bound (getsockname(2)); see lesson 1, \"3. Bind\""
    );
    let bound = to_socket_addr(&bound).unwrap_or(args.bind);
    println!("bound to {bound}");

    // 4. The other peer's address: where every line we send goes.
    // Fix: parsed by clap too; the original's typo here sent to 0.0.0.0.
    let peer_addr: SockaddrStorage = todo!(
        "step 4: turn --peer into the kernel's address form; \
         see lesson 1, \"4. The peer, and a receive timeout\""
    );
    println!("sending to {}", args.peer);
    println!("start the peer with: --bind {} --peer {bound}", args.peer);

    // The receive timeout: recvfrom gives up after it with EAGAIN.
    let timeout = TimeVal::milliseconds(args.recv_timeout_ms as i64);
    let set: nix::Result<()> = todo!(
        "step 4: set the receive timeout (setsockopt(2), SO_RCVTIMEO; nix: sockopt::ReceiveTimeout); \
         see lesson 1, \"4. The peer, and a receive timeout\""
    );
    if let Err(err) = set {
        eprintln!("warning: cannot set the receive timeout ({err}); a receive may wait forever");
    }

    println!("Ready: type a message and press Enter to send it; 'quit' exits.");

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

    // 6. Close the socket: dropping the OwnedFd calls close(2), as every
    // early return above does too.
    drop(fd);
    println!("Socket closed. Bye.");
    Ok(())
}

/// Waits up to the receive timeout for one datagram and prints it; returns
/// whether it printed one.
fn receive_one(fd: &OwnedFd, buffer: &mut [u8]) -> nix::Result<bool> {
    let received: nix::Result<(usize, Option<SockaddrStorage>)> = todo!(
        "step 5a: receive one datagram into `buffer` (recvfrom(2)); see lesson 1, \"5. The loop\""
    );
    match received {
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

/// Sends `message` to the peer as one datagram and reports the outcome.
fn send_message(fd: &OwnedFd, message: &[u8], peer_addr: &SockaddrStorage, peer: SocketAddr) {
    let sent: nix::Result<usize> = todo!(
        "step 5b: send `message` to the peer as one datagram (sendto(2)); see lesson 1, \"5. The loop\""
    );
    match sent {
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
