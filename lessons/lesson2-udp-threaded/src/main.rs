//! Lesson 2: the UDP peer-to-peer chat with a receiver thread.
//!
//! Lesson 1 could not receive while it waited for you to type. Here a second
//! thread does nothing but receive, so a message shows the moment it
//! arrives; the main thread reads what you type and sends it. Both stop when
//! a shared flag is cleared: by `quit`, by the end of input, or by Ctrl+C
//! (SIGINT) or SIGTERM, whose handlers clear it. The steps are numbered as
//! in the post's second version.

mod cli;

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};
use nix::unistd;

use cli::Args;

// ANCHOR: buffer
/// Fix: the original receives into 1024 bytes and silently cuts longer
/// datagrams. A UDP payload is at most 65,507 bytes over IPv4 (65,527 over
/// IPv6), so 64 KiB holds any datagram whole.
const BUFFER_SIZE: usize = 65_536;
// ANCHOR_END: buffer

const PROMPT: &str = "Enter message ('quit' to exit): ";

// ANCHOR: running
/// Cleared to stop both threads. A static, because a signal handler gets no
/// argument through which it could reach anything else.
static RUNNING: AtomicBool = AtomicBool::new(true);

/// The signal that stopped the program, if one did (0: none).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
// ANCHOR_END: running

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
    // Register the handlers for Ctrl+C (SIGINT) and SIGTERM.
    // Fix: the original's handler runs with SA_RESTART (what signal() sets on
    // Linux), so a read blocked on the terminal resumes after Ctrl+C and the
    // program only quits after one more Enter. Without SA_RESTART, the
    // blocked read fails with EINTR and the main loop sees the cleared flag.
    let action = SigAction::new(
        SigHandler::Handler(handle_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for stop_signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores into atomics, which is
        // async-signal-safe, and no other handler is replaced here.
        unsafe { signal::sigaction(stop_signal, &action) }
            .with_context(|| format!("cannot install a handler for {stop_signal}"))?;
    }
    // ANCHOR_END: signals

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

    println!("Ready: type a message and press Enter to send it; 'quit' exits.");

    // ANCHOR: spawn
    // 5. Start the receiver thread, then read and send in this one.
    // A scoped thread may borrow the socket: the scope ends only after the
    // thread is joined, so the descriptor outlives every use of it. (The
    // kernel lets one thread sendto while another recvfroms on a socket.)
    thread::scope(|scope| -> Result<()> {
        // A signal sent to the process goes to any one thread that does not
        // block it. If the receiver took Ctrl+C, the main thread's read would
        // never be interrupted; so the receiver blocks both signals. It
        // inherits the mask at its creation: block them here, start it, and
        // unblock them again in this thread. (One that arrives meanwhile
        // waits, and is handled at the unblock.) In the original, one that
        // lands in the receiver ends it: with a receive timeout, recvfrom
        // fails with EINTR even under SA_RESTART (signal(7)).
        let stop_signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
        stop_signals
            .thread_block()
            .context("cannot block signals")?;
        let receiver = thread::Builder::new()
            .name("receiver".into())
            .spawn_scoped(scope, || receive_loop(&fd, args));
        stop_signals
            .thread_unblock()
            .context("cannot unblock signals")?;
        let receiver = receiver.context("cannot start the receiver thread")?;

        let result = send_loop(&fd, &peer_addr, args.peer);
        // ANCHOR: shutdown
        // However the main loop ended, tell the receiver to stop. It notices
        // within one receive timeout; join waits for that.
        RUNNING.store(false, Ordering::SeqCst);
        if receiver.join().is_err() {
            eprintln!("error: the receiver thread panicked");
        }
        println!("[main] receiver thread joined.");
        // ANCHOR_END: shutdown
        result
    })?;
    // ANCHOR_END: spawn

    // ANCHOR: close
    // 6. Close the socket. Dropping the OwnedFd calls close(2); it would also
    // happen on every early return above, which the C does by hand.
    drop(fd);
    println!("Socket closed. Bye.");
    // ANCHOR_END: close
    Ok(())
}

// ANCHOR: handler
/// Runs when SIGINT or SIGTERM arrives, in whichever thread was interrupted.
///
/// Fix: the original prints from its handler. Printing takes locks that the
/// interrupted code may be holding, so it can deadlock; only a few calls are
/// async-signal-safe, and storing to an atomic is one. The main loop prints.
extern "C" fn handle_signal(signal: nix::libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
    RUNNING.store(false, Ordering::SeqCst);
}
// ANCHOR_END: handler

// ANCHOR: main_loop
/// The main thread: reads lines and sends each to the peer until `quit`,
/// the end of input, or a signal.
fn send_loop(fd: &OwnedFd, peer_addr: &SockaddrStorage, peer: SocketAddr) -> Result<()> {
    let mut stdin = LineReader::default();
    prompt();
    // A signal that lands between this check and the read below is noticed
    // only after the next line: a small race (the book's exercises close it).
    while RUNNING.load(Ordering::SeqCst) {
        let message = match stdin.next_line() {
            Ok(Some(message)) => message,
            Ok(None) => {
                println!("\n[main] end of input, quitting...");
                break;
            }
            // Interrupted by SIGINT or SIGTERM: the loop condition decides.
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err).context("cannot read standard input"),
        };
        if message == b"quit" {
            println!("[main] quitting...");
            break;
        }
        if !message.is_empty() {
            send_message(fd, &message, peer_addr, peer);
        }
        prompt();
    }
    let signal = STOP_SIGNAL.load(Ordering::SeqCst);
    if let Ok(signal) = Signal::try_from(signal) {
        println!("\n[main] caught {signal}, quitting...");
    }
    Ok(())
}
// ANCHOR_END: main_loop

// ANCHOR: receive_loop
/// The receiver thread: prints each datagram from the peer as it arrives,
/// until RUNNING is cleared.
fn receive_loop(fd: &OwnedFd, args: &Args) {
    // The receive timeout lets the loop look at RUNNING at least this often:
    // without it, recvfrom would wait for a datagram forever, and the thread
    // could not be stopped.
    let timeout = TimeVal::milliseconds(args.recv_timeout_ms as i64);
    if let Err(err) = socket::setsockopt(fd, sockopt::ReceiveTimeout, &timeout) {
        eprintln!(
            "warning: cannot set the receive timeout ({err}); quitting may hang until a datagram arrives"
        );
    }
    let mut buffer = vec![0u8; BUFFER_SIZE];
    while RUNNING.load(Ordering::SeqCst) {
        match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buffer) {
            Ok((len, sender)) => {
                let sender = sender.as_ref().and_then(to_socket_addr);
                // ANCHOR: peer_filter
                // The original's TODO: an unconnected socket takes datagrams
                // from anyone who knows our port. Here the program filters;
                // connect() on the socket would make the kernel do it (the
                // book's exercise 1.2). Neither is authentication: a UDP
                // source address can be forged.
                let from_peer = sender.is_some_and(|sender| same_endpoint(sender, args.peer));
                if !from_peer && !args.accept_any {
                    let sender =
                        sender.map_or_else(|| "an unknown sender".into(), |addr| addr.to_string());
                    eprintln!(
                        "warning: dropped a {len}-byte datagram from {sender}: not the peer {} (--accept-any shows it)",
                        args.peer
                    );
                    continue;
                }
                // ANCHOR_END: peer_filter
                let sender =
                    sender.map_or_else(|| "unknown sender".into(), |addr| addr.to_string());
                // Exactly `len` bytes: an empty datagram prints as empty,
                // bytes that are not UTF-8 as U+FFFD.
                let text = String::from_utf8_lossy(&buffer[..len]);
                // The newline first: the prompt is probably on screen.
                println!("\n[from {sender}] {text}");
                if RUNNING.load(Ordering::SeqCst) {
                    prompt();
                }
            }
            // The timeout expired (EAGAIN, also called EWOULDBLOCK), or a
            // signal interrupted the wait: look at RUNNING again.
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            // Any other error stops the receiver, as in the original.
            Err(err) => {
                eprintln!("error: cannot receive: {err}; the receiver stops (type 'quit' to exit)");
                RUNNING.store(false, Ordering::SeqCst);
            }
        }
    }
    println!("[receiver] stopped.");
}
// ANCHOR_END: receive_loop

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

// ANCHOR: read_line
/// Reads standard input line by line with read(2) on descriptor 0.
///
/// Not std's `read_line`: it retries by itself when a signal interrupts the
/// read (EINTR), which is exactly what must reach the main loop here.
#[derive(Default)]
struct LineReader {
    pending: Vec<u8>,
    at_end: bool,
}

impl LineReader {
    /// The next line without its "\n" (or "\r\n"); `None` at the end of
    /// input. A last line without a newline is still a line: nothing typed
    /// is lost. Raw bytes: text that is not UTF-8 is sent as typed.
    fn next_line(&mut self) -> nix::Result<Option<Vec<u8>>> {
        loop {
            if let Some(newline) = self.pending.iter().position(|&byte| byte == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=newline).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.at_end {
                return Ok((!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending)));
            }
            let mut chunk = [0u8; 4096];
            let read = unistd::read(std::io::stdin().as_fd(), &mut chunk)?;
            self.at_end = read == 0;
            self.pending.extend_from_slice(&chunk[..read]);
        }
    }
}
// ANCHOR_END: read_line

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
