//! Practice, lesson 5: lesson 2's chat in one thread, with poll(2).
//!
//! The command line, the output and the error reporting are written; the
//! calls are yours. Each `todo!` names its step, the man page and the
//! chapter's section. Check your work with `just check 5`, or let
//! `just practice 5` check it on every save. The solution is lesson 5 itself.

// The skeleton compiles while steps are missing; delete this line when done.
#![allow(
    unreachable_code,
    unused_variables,
    unused_imports,
    unused_mut,
    dead_code
)]

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage};
use nix::unistd;

/// A UDP peer-to-peer chat in one thread: poll(2) waits for the keyboard,
/// the socket and Ctrl+C at once, so a message shows the moment it arrives.
#[derive(Parser, Debug)]
// A later occurrence of a flag replaces an earlier one: what a user types
// after a script's defaults wins.
#[command(name = "lesson5-chat", version, args_override_self = true)]
struct Args {
    /// The address this peer receives on (the original's MY_IP_ADDRESS_STR and
    /// MY_PORT). Port 0 lets the kernel pick a free one.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:55566")]
    bind: SocketAddr,

    /// The address the other peer receives on (PEER_IP_ADDRESS_STR and
    /// PEER_PORT). IPv6 works too: `[::1]:55577`.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:55577")]
    peer: SocketAddr,

    /// Show datagrams from any sender, as the original does. By default only
    /// the peer's are shown; others are dropped with a warning.
    #[arg(long)]
    accept_any: bool,
}

impl Args {
    /// Parses the command line; exits with clap's usage error (status 2)
    /// when it makes no sense.
    fn parse_checked() -> Args {
        let args = Args::parse();
        // One socket has one address family: an IPv4 socket cannot send to
        // an IPv6 peer, nor the other way round.
        if args.bind.is_ipv4() != args.peer.is_ipv4() {
            Args::command()
                .error(
                    ErrorKind::ArgumentConflict,
                    format!(
                        "--bind {} and --peer {} must both be IPv4 or both IPv6: one UDP socket speaks one family",
                        args.bind, args.peer
                    ),
                )
                .exit();
        }
        args
    }
}

/// Fix: the original receives into 1024 bytes and silently cuts longer
/// datagrams. A UDP payload is at most 65,507 bytes over IPv4 (65,527 over
/// IPv6), so 64 KiB holds any datagram whole.
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
    // Fix: lesson 2 missed a signal landing between its flag check and its
    // read. Blocked, SIGINT and SIGTERM stay pending, and the signalfd is
    // readable while one is: poll waits for it with everything else.
    let signals: SignalFd = todo!(
        "step 0: block SIGINT and SIGTERM for this thread and create a signalfd that reads them; see sigprocmask(2), signalfd(2) and lesson 5, \"Ctrl+C as a descriptor\""
    );

    // 1. Create the UDP socket, in the address family of our address.
    // New: SOCK_NONBLOCK, because poll's "readable" is a hint: a recvfrom
    // that then finds nothing must fail with EAGAIN, not hang the thread.
    let family = match args.bind {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = todo!(
        "step 1: create a non-blocking UDP socket of the family of --bind; see socket(2) and lesson 5, \"Non-blocking, even after poll said 'ready'\""
    );

    // 2. Our own address, as the kernel wants it (the C's sockaddr_in). clap
    // parsed --bind before any socket existed: a typo is a usage error.
    let my_addr = SockaddrStorage::from(args.bind);

    // 3. Bind the socket to our address, so datagrams sent to it reach us.
    let bound: SockaddrStorage = todo!(
        "step 3: bind the socket to my_addr, then ask getsockname which port the kernel gave; see bind(2), getsockname(2) and lesson 5, \"The chat, in one thread\""
    );
    let bound = to_socket_addr(&bound).unwrap_or(args.bind);
    println!("bound to {bound}");

    // 4. The other peer's address: where every line we send goes.
    let peer_addr = SockaddrStorage::from(args.peer);
    println!("sending to {}", args.peer);
    println!("start the peer with: --bind {} --peer {bound}", args.peer);

    println!("Ready: type a message and press Enter to send it; 'quit' exits.");

    // 5. One loop, one thread: wait for whatever is ready, handle it.
    event_loop(&fd, &signals, &peer_addr, args)?;

    // 6. Close the socket: dropping the OwnedFd calls close(2), as it would
    // on every early return above, which the C does by hand.
    drop(fd);
    println!("Socket closed. Bye.");
    Ok(())
}

/// Waits for the keyboard, the socket and the stop signals at once, and
/// handles whichever is ready, until `quit`, the end of input or a signal.
fn event_loop(
    fd: &OwnedFd,
    signals: &SignalFd,
    peer_addr: &SockaddrStorage,
    args: &Args,
) -> Result<()> {
    let stdin = std::io::stdin();
    let mut typed = LineReader::default();
    let mut buffer = vec![0u8; BUFFER_SIZE];
    prompt();
    loop {
        // a. Sleep until a descriptor is ready: no timeout, no turns to take
        // (lesson 1), no flag to look at (lesson 2).
        let [keyboard, socket, signal]: [PollFlags; 3] = todo!(
            "step 5a: poll the keyboard (fd 0), the socket and the signalfd for POLLIN with no timeout (retry on EINTR), and return what each reported; see poll(2) and lesson 5, \"poll: wait until something is ready\""
        );

        // b. A stop signal is pending: take it off the queue, and stop.
        if !signal.is_empty() {
            let caught: Option<Signal> = todo!(
                "step 5b: read the pending signal off the signalfd; see signalfd(2) and lesson 5, \"Ctrl+C as a descriptor\""
            );
            if let Some(caught) = caught {
                println!("\ncaught {caught}, quitting...");
            }
            return Ok(());
        }

        // c. A datagram (or an error report) is waiting on the socket.
        if !socket.is_empty() {
            receive_one(fd, &mut buffer, args);
        }

        // d. The keyboard has bytes, or the input ended (POLLHUP on a pipe).
        if !keyboard.is_empty() {
            typed
                .read_available()
                .context("cannot read standard input")?;
            while let Some(message) = typed.next_line() {
                if message == b"quit" {
                    println!("quitting...");
                    return Ok(());
                }
                if !message.is_empty() {
                    send_message(fd, &message, peer_addr, args.peer);
                }
                if !typed.at_end {
                    prompt();
                }
            }
            if typed.at_end {
                println!("\nend of input, quitting...");
                return Ok(());
            }
        }
    }
}

/// Takes one datagram off the socket and prints it: poll said one is there,
/// and the socket never blocks.
fn receive_one(fd: &OwnedFd, buffer: &mut [u8], args: &Args) {
    let received: nix::Result<(usize, Option<SockaddrStorage>)> = todo!(
        "step 5c: receive one datagram into buffer, with its sender; see recvfrom(2) and lesson 5, \"Non-blocking, even after poll said 'ready'\""
    );
    match received {
        Ok((len, sender)) => {
            let sender = sender.as_ref().and_then(to_socket_addr);
            // The original's TODO, as in lesson 2: anyone who knows our port
            // can send to it, so the filter is ours to apply.
            let from_peer = sender.is_some_and(|sender| same_endpoint(sender, args.peer));
            if !from_peer && !args.accept_any {
                let sender =
                    sender.map_or_else(|| "an unknown sender".into(), |addr| addr.to_string());
                eprintln!(
                    "warning: dropped a {len}-byte datagram from {sender}: not the peer {} (--accept-any shows it)",
                    args.peer
                );
                return;
            }
            let sender = sender.map_or_else(|| "unknown sender".into(), |addr| addr.to_string());
            // Exactly `len` bytes; bytes that are not UTF-8 print as U+FFFD.
            let text = String::from_utf8_lossy(&buffer[..len]);
            // The newline first: the prompt is probably on screen.
            println!("\n[from {sender}] {text}");
            prompt();
        }
        // EAGAIN: the readiness was spurious; there was nothing to read.
        Err(Errno::EAGAIN | Errno::EINTR) => {}
        // An ICMP error reported on the socket is no reason to stop.
        Err(err) => eprintln!("warning: {err} reported on the socket; still receiving"),
    }
}

/// Sends `message` to the peer as one datagram, and says how it went.
fn send_message(fd: &OwnedFd, message: &[u8], peer_addr: &SockaddrStorage, peer: SocketAddr) {
    let sent: nix::Result<usize> = todo!(
        "step 5d: send message to peer_addr as one datagram; see sendto(2) and lesson 5, \"The chat, in one thread\""
    );
    match sent {
        // Sent only means the datagram left: UDP has no acknowledgement.
        Ok(sent) => println!("[sent {sent} bytes]"),
        Err(Errno::EMSGSIZE) => eprintln!(
            "error: cannot send to {peer}: {}: a UDP datagram holds at most {} bytes over {}; the line has {}",
            Errno::EMSGSIZE,
            if peer.is_ipv4() { "65,507" } else { "65,527" },
            if peer.is_ipv4() { "IPv4" } else { "IPv6" },
            message.len()
        ),
        // Non-blocking: a full send buffer is EAGAIN, said, never silent.
        Err(Errno::EAGAIN) => eprintln!(
            "error: cannot send to {peer}: {}: the socket's send buffer is full; the line was not sent",
            Errno::EAGAIN
        ),
        // Reported, and the chat goes on: the user may retry.
        Err(err) => eprintln!("error: cannot send to {peer}: {err}"),
    }
}

/// What was typed so far, cut into lines. Not std's line reader, which
/// waits for a whole line while no datagram can be shown.
#[derive(Default)]
struct LineReader {
    pending: Vec<u8>,
    at_end: bool,
}

impl LineReader {
    /// One read(2) of descriptor 0. poll reported it ready, so this returns
    /// at once: with the bytes there, or 0 at the end of input.
    fn read_available(&mut self) -> nix::Result<()> {
        let mut chunk = [0u8; 4096];
        let read: nix::Result<usize> = todo!(
            "step 5d: read(2) what is there on descriptor 0 into chunk, once; see read(2) and lesson 5, \"Half a line\""
        );
        match read {
            Ok(read) => {
                self.at_end = read == 0;
                self.pending.extend_from_slice(&chunk[..read]);
                Ok(())
            }
            // Nothing there after all (someone made stdin non-blocking).
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The next whole line, without its line ending. At the end of input, a
    /// last line without a newline is still a line: nothing typed is lost.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        if let Some(newline) = self.pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=newline).collect();
            return Some(trim_newline(&line).to_vec());
        }
        (self.at_end && !self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// `line` without one trailing "\n", then one trailing "\r".
fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn prompt() {
    print!("{PROMPT}");
    // A prompt that cannot be shown is no reason to stop chatting.
    let _ = std::io::stdout().flush();
}

/// Whether `sender` is `peer`: same IP and port (IPv6 flow labels and scope
/// ids are not part of who sent it).
fn same_endpoint(sender: SocketAddr, peer: SocketAddr) -> bool {
    sender.ip() == peer.ip() && sender.port() == peer.port()
}

/// The std form of an IPv4 or IPv6 socket address.
fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::from(*v4))
    } else {
        addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
    }
}
