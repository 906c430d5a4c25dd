//! Lesson 5's chat: lesson 2's UDP peer-to-peer chat in one thread.
//!
//! Lesson 1 could not receive while it waited for a line; lesson 2 needed a
//! second thread for that, a receive timeout so that thread could be
//! stopped, and signal handlers with a race (a signal landing between the
//! flag check and the read went unnoticed). Here one thread asks the kernel
//! to wait for all three things at once with poll(2): the keyboard, the
//! socket, and Ctrl+C. Whichever is ready first is handled, and the thread
//! waits again. The steps keep lesson 2's numbers.

mod cli;

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage};
use nix::unistd;

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
    // ANCHOR: signals
    // Ctrl+C (SIGINT) and SIGTERM become a descriptor to wait on.
    // Fix: lesson 2's handler cleared a flag that the main loop checked
    // before each read; a signal landing between the check and the read was
    // noticed only after the next line. Here both signals are blocked from
    // the start: one that arrives stays pending, at any moment, and the
    // signalfd(2) is readable for as long as one is pending. poll waits for
    // it together with the keyboard and the socket, so there is no moment
    // at which a signal can slip by. (One thread, so this thread's mask is
    // the process's.)
    let stop_signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    stop_signals
        .thread_block()
        .context("cannot block SIGINT and SIGTERM")?;
    let signals = SignalFd::with_flags(&stop_signals, SfdFlags::SFD_CLOEXEC)
        .context("cannot create a signalfd for SIGINT and SIGTERM")?;
    // ANCHOR_END: signals

    // ANCHOR: socket
    // 1. Create the UDP socket: datagrams (SOCK_DGRAM) in the address family
    // of our address (AF_INET or AF_INET6). Protocol `None` is the C's 0:
    // the only datagram protocol of IP, UDP.
    // New: SOCK_NONBLOCK. poll may report a socket readable and a recvfrom
    // then find nothing (select(2)'s BUGS: a datagram with a bad checksum is
    // dropped after the wakeup). A blocking recvfrom would then hang the
    // only thread; a non-blocking one fails with EAGAIN, and the loop waits
    // again.
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
    println!("start the peer with: {}", args.peer_command(bound));
    // ANCHOR_END: peer

    println!("Ready: type a message and press Enter to send it; 'quit' exits.");

    // 5. One loop, one thread: wait for whatever is ready, handle it.
    event_loop(&fd, &signals, &peer_addr, args)?;

    // ANCHOR: close
    // 6. Close the socket. Dropping the OwnedFd calls close(2); it would also
    // happen on every early return above, which the C does by hand.
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
    let mut typed = TypedLines::default();
    let mut buffer = vec![0u8; BUFFER_SIZE];
    prompt();
    loop {
        // a. Sleep until at least one descriptor is ready. No timeout: no
        // turns to take (lesson 1) and no flag to look at (lesson 2).
        // POLLIN asks "would a read return at once?"; the kernel adds
        // POLLHUP and POLLERR by itself.
        let mut fds = [
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            PollFd::new(fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            // No handler is installed, but a debugger or SIGCONT may still
            // interrupt the wait: just wait again.
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

        // d. The keyboard has bytes, or the input ended (POLLHUP: the other
        // end of a pipe closed). One read(2) takes what is there without
        // waiting for the rest of a line.
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
            // The original's TODO, as in lesson 2: recvfrom takes datagrams
            // from anyone who knows our port, so the filter is ours to apply.
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
            // Exactly `len` bytes: an empty datagram prints as empty, bytes
            // that are not UTF-8 as U+FFFD.
            let text = String::from_utf8_lossy(&buffer[..len]);
            // The newline first: the prompt is probably on screen.
            println!("\n[from {sender}] {text}");
            prompt();
        }
        // EAGAIN (also called EWOULDBLOCK): the readiness was spurious, or
        // the datagram was dropped after poll saw it. Nothing is lost: there
        // was nothing to read. Wait again.
        Err(Errno::EAGAIN | Errno::EINTR) => {}
        // An ICMP error reported on the socket is no reason to stop.
        Err(err) => eprintln!("warning: {err} reported on the socket; still receiving"),
    }
}
// ANCHOR_END: receive

// ANCHOR: send
/// Sends `message` to the peer as one datagram; reports only failures.
fn send_message(fd: &OwnedFd, message: &[u8], peer_addr: &SockaddrStorage, peer: SocketAddr) {
    match socket::sendto(fd.as_raw_fd(), message, peer_addr, MsgFlags::empty()) {
        // Success only means the datagram left: UDP has no acknowledgement,
        // and an unconnected socket on Linux is not even told when nobody
        // listens at the peer's port (the ICMP "port unreachable" is dropped).
        Ok(_) => {}
        Err(Errno::EMSGSIZE) => eprintln!(
            "error: cannot send to {peer}: {}: a UDP datagram holds at most 65,507 bytes; the line has {}",
            Errno::EMSGSIZE,
            message.len()
        ),
        // The socket is non-blocking, so a full send buffer is EAGAIN
        // rather than a wait. Said, never dropped in silence: type it again.
        Err(Errno::EAGAIN) => eprintln!(
            "error: cannot send to {peer}: {}: the socket's send buffer is full; the line was not sent",
            Errno::EAGAIN
        ),
        // Reported, and the chat goes on: the user may retry.
        Err(err) => eprintln!("error: cannot send to {peer}: {err}"),
    }
}
// ANCHOR_END: send

// ANCHOR: typed_lines
/// What was typed so far, cut into lines.
///
/// Not std's line reader: it reads until a whole line has come, and while
/// it waited for the rest of a half-typed line, no datagram could be shown.
/// Here each read(2) takes only what poll said is there, and the loop goes
/// back to waiting with the half line kept.
#[derive(Default)]
struct TypedLines {
    pending: Vec<u8>,
    at_end: bool,
}

impl TypedLines {
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
            // Nothing there after all (someone made stdin non-blocking):
            // wait again.
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
// ANCHOR_END: typed_lines

fn prompt() {
    print!("{PROMPT}");
    // A prompt that cannot be shown is no reason to stop chatting.
    let _ = std::io::stdout().flush();
}

/// Whether `sender` is `peer`: same IP and port. (IPv6 flow labels and
/// scope ids are not part of who sent it.)
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
