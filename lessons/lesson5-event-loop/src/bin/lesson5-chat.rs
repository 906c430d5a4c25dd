//! Lesson 5's chat: lesson 2's UDP peer-to-peer chat in one thread.
//!
//! One thread asks the kernel with poll(2) to wait for the keyboard, the
//! socket and Ctrl+C at once, handles whichever is ready, and waits again:
//! no receiver thread, no receive timeout, no signal handler. The steps keep
//! lesson 2's numbers. Why: see lesson 5, "The chat, in one thread".

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

// ANCHOR: args
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
// ANCHOR_END: args

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
    // ANCHOR: signals
    // Fix: lesson 2 missed a signal landing between its flag check and its
    // read. Blocked, SIGINT and SIGTERM stay pending, and the signalfd is
    // readable while one is: poll waits for it with everything else.
    let stop_signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    stop_signals
        .thread_block()
        .context("cannot block SIGINT and SIGTERM")?;
    let signals = SignalFd::with_flags(&stop_signals, SfdFlags::SFD_CLOEXEC)
        .context("cannot create a signalfd for SIGINT and SIGTERM")?;
    // ANCHOR_END: signals

    // ANCHOR: socket
    // 1. Create the UDP socket, in the address family of our address.
    // New: SOCK_NONBLOCK, because poll's "readable" is a hint: a recvfrom
    // that then finds nothing must fail with EAGAIN, not hang the thread.
    let family = match args.bind {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket::socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("cannot create a UDP socket")?;
    // ANCHOR_END: socket

    // ANCHOR: my_addr
    // 2. Our own address, as the kernel wants it (the C's sockaddr_in). clap
    // parsed --bind before any socket existed: a typo is a usage error.
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
    println!("start the peer with: --bind {} --peer {bound}", args.peer);
    // ANCHOR_END: peer

    println!("Ready: type a message and press Enter to send it; 'quit' exits.");

    // 5. One loop, one thread: wait for whatever is ready, handle it.
    event_loop(&fd, &signals, &peer_addr, args)?;

    // ANCHOR: close
    // 6. Close the socket: dropping the OwnedFd calls close(2), as it would
    // on every early return above, which the C does by hand.
    drop(fd);
    println!("Socket closed. Bye.");
    // ANCHOR_END: close
    Ok(())
}

// ANCHOR: event_loop
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
        let mut fds = [
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            PollFd::new(fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            // Only a signal handler makes poll fail with EINTR (after Ctrl+Z
            // and fg it is restarted); none is installed, but retrying is safe.
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err).context("cannot wait with poll"),
        }
        let [keyboard, socket, signal] = fds.map(|fd| fd.revents().unwrap_or(PollFlags::empty()));

        // b. A stop signal is pending: take it off the queue, and stop.
        if !signal.is_empty() {
            let caught = signals
                .read_signal()
                .ok()
                .flatten()
                .and_then(|info| Signal::try_from(info.ssi_signo as i32).ok());
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
// ANCHOR_END: event_loop

// ANCHOR: receive
/// Takes one datagram off the socket and prints it: poll said one is there,
/// and the socket never blocks.
fn receive_one(fd: &OwnedFd, buffer: &mut [u8], args: &Args) {
    match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), buffer) {
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
// ANCHOR_END: receive

// ANCHOR: send
/// Sends `message` to the peer as one datagram, and says how it went.
fn send_message(fd: &OwnedFd, message: &[u8], peer_addr: &SockaddrStorage, peer: SocketAddr) {
    match socket::sendto(fd.as_raw_fd(), message, peer_addr, MsgFlags::empty()) {
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
// ANCHOR_END: send

// ANCHOR: line_reader
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
        match unistd::read(std::io::stdin().as_fd(), &mut chunk) {
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
// ANCHOR_END: line_reader

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
