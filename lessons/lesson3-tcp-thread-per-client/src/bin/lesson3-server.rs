//! Lesson 3: a TCP echo server that starts one thread per client.
//!
//! The main thread only accepts connections; each accepted connection moves
//! into a thread of its own, which reads what the client sends, logs it and
//! writes every byte back until the client leaves. The steps are numbered as
//! in the post: create the socket, bind it, listen, accept in a loop.
//!
//! Stop it with Ctrl+C. Then try to start it again at once: if clients were
//! still connected, `bind` fails with EADDRINUSE for up to a minute. That is
//! the TIME_WAIT bug lesson 4 fixes.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, SockaddrStorage, accept4, bind,
    getpeername, getsockname, listen, recv, send, socket,
};

/// How many bytes one `recv` may return; the echo does not depend on it.
const BUFFER_SIZE: usize = 4096;

/// How long to pause when `accept` fails for lack of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

// ANCHOR: args
/// A TCP echo server: one thread per client.
#[derive(Parser, Debug)]
// A later occurrence of a flag replaces an earlier one: what a user types
// after a script's defaults wins.
#[command(name = "lesson3-server", version, args_override_self = true)]
struct Args {
    /// Address to listen on; `--bind 0.0.0.0:8890` listens on all
    /// interfaces, like the original's INADDR_ANY. IPv6 works too: `[::1]:8890`.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8890")]
    bind: SocketAddr,

    /// Length of the queue of connections the kernel has completed but the
    /// server has not accepted yet (the original's 10; at most SOMAXCONN).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(i32).range(1..=nix::libc::SOMAXCONN as i64))]
    backlog: i32,
}
// ANCHOR_END: args

fn main() -> ExitCode {
    let args = Args::parse();
    let Err(err) = run(&args);
    eprintln!("error: {err:#}");
    if err.root_cause().downcast_ref::<Errno>() == Some(&Errno::EADDRINUSE) {
        eprintln!(
            "hint: if no other server uses {}, connections of a previous server may sit in TIME_WAIT \
             for up to 60 s; lesson 4 (SO_REUSEADDR) fixes this",
            args.bind
        );
    }
    ExitCode::FAILURE
}

/// Sets up the listening socket, then accepts clients forever: it only
/// returns if the setup fails.
fn run(args: &Args) -> Result<std::convert::Infallible> {
    let family = match args.bind {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };

    // ANCHOR: socket
    // 1. Create the socket: a TCP (stream) socket of the address's family.
    // Not std::net::TcpListener: on Unix it sets SO_REUSEADDR by itself,
    // which would hide the restart bug of lesson 3 that lesson 4 fixes.
    let listener = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .context("cannot create a TCP socket")?;
    // ANCHOR_END: socket

    // ANCHOR: bind
    // 2. Bind it to the address clients will connect to.
    bind(listener.as_raw_fd(), &SockaddrStorage::from(args.bind))
        .with_context(|| format!("cannot bind TCP socket to {}", args.bind))?;
    // ANCHOR_END: bind

    // ANCHOR: listen
    // 3. Listen: from now on the kernel completes connections by itself and
    // queues up to `backlog` of them until `accept` takes them.
    let backlog =
        Backlog::new(args.backlog).with_context(|| format!("invalid backlog {}", args.backlog))?;
    listen(&listener, backlog).with_context(|| format!("cannot listen on {}", args.bind))?;
    let local: SockaddrStorage =
        getsockname(listener.as_raw_fd()).context("cannot read the bound address")?;
    log(format_args!("listening on {local}"));
    // ANCHOR_END: listen

    // ANCHOR: accept_loop
    // 4. Accept clients forever, each in a thread of its own.
    loop {
        // ANCHOR: accept_error
        // Fix: the original exits on any accept error, dropping every client
        // already connected. Most errors concern one connection or a passing
        // shortage; only those that say the listener itself is unusable end
        // the server, since retrying them would spin forever.
        // accept4 with SOCK_CLOEXEC: like the listener, the client's socket
        // must not leak into a program this one might exec.
        let raw_fd = match accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(raw_fd) => raw_fd,
            Err(err @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                // Out of descriptors or memory. The pending connection stays in
                // the queue, so retrying at once would spin at 100% CPU: wait
                // for some clients to leave instead.
                log_error(format_args!(
                    "cannot accept a client: {err}; retrying in {ACCEPT_BACKOFF:?}"
                ));
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(err @ (Errno::EBADF | Errno::EINVAL | Errno::ENOTSOCK | Errno::EFAULT)) => {
                // The listener is broken (closed, or no longer listening):
                // every later accept would fail the same way at once.
                return Err(err).with_context(|| format!("cannot accept clients on {local}"));
            }
            Err(err) => {
                // ECONNABORTED (a client gave up while queued), EINTR, EPROTO,
                // EPERM (a firewall rule): this connection only. Linux rarely
                // reports ECONNABORTED: a connection reset while queued is
                // usually accepted, and getpeername below fails with ENOTCONN.
                log_error(format_args!("cannot accept a client: {err}"));
                continue;
            }
        };
        // ANCHOR_END: accept_error
        // SAFETY: accept just returned this descriptor; nothing else owns it,
        // so the OwnedFd is its only owner and closes it exactly once.
        let client = unsafe { OwnedFd::from_raw_fd(raw_fd) };
        let peer: SockaddrStorage = match getpeername(client.as_raw_fd()) {
            Ok(peer) => peer,
            Err(err) => {
                // ENOTCONN: the client reset the connection while it waited
                // in the queue. Nothing to serve; the descriptor is closed.
                log_error(format_args!("cannot read a new client's address: {err}"));
                continue;
            }
        };
        log(format_args!("client {peer} connected"));

        // ANCHOR: spawn
        // Fix: the original hands its thread a pointer to `cfd`, which the
        // next accept overwrites, so two threads may serve one client and none
        // the other. The `move` closure takes ownership of `client`: the
        // thread gets its own descriptor, and the compiler rejects any other
        // use of it.
        // Fix: the original checks `pthread_create(...) < 0`, but
        // pthread_create returns a positive error number (EAGAIN when no
        // thread can be started), so the check never fires: it goes on to
        // detach `pid`, a stale id (the previous client's thread; on failure
        // pthread_create leaves it undefined), never closes the descriptor,
        // and that client is never served. Here the error is reported and the
        // closure, with the descriptor, is dropped: the client sees its
        // connection closed, and the server goes on.
        let spawned = thread::Builder::new()
            .name(format!("client {peer}"))
            .spawn(move || serve_client(client, peer));
        if let Err(err) = spawned {
            log_error(format_args!(
                "cannot start a thread for client {peer}: {err}; closed its connection"
            ));
        }
        // ANCHOR_END: spawn
    }
    // ANCHOR_END: accept_loop
}

// ANCHOR: serve_client
/// Echoes everything `client` sends back to it until it leaves: the
/// original's `do_communication`.
fn serve_client(client: OwnedFd, peer: SockaddrStorage) {
    let mut buffer = [0u8; BUFFER_SIZE];
    loop {
        let received = match recv(client.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
            Ok(0) => {
                log(format_args!("client {peer} left"));
                break;
            }
            Ok(received) => received,
            Err(Errno::EINTR) => continue,
            Err(err) => {
                // ECONNRESET and the like: the client vanished. Only this
                // thread ends; the others and the accept loop go on.
                log_error(format_args!("cannot receive from client {peer}: {err}"));
                break;
            }
        };
        let data = &buffer[..received];
        // ANCHOR: log_received
        // Fix: the original prints the buffer with printf("%s"), which reads
        // past the data when it holds no terminating NUL. Here the slice has
        // an exact length, and bytes that are not UTF-8 show as U+FFFD.
        let text = String::from_utf8_lossy(data);
        log(format_args!(
            "recv from {peer}: {}",
            text.strip_suffix('\n').unwrap_or(&text)
        ));
        // ANCHOR_END: log_received
        if let Err(err) = send_all(&client, data) {
            log_error(format_args!("cannot echo to client {peer}: {err}"));
            break;
        }
    }
    // Dropping `client` closes the connection (the original's close(cfd)).
}
// ANCHOR_END: serve_client

// ANCHOR: echo
/// Sends every byte of `data`.
///
/// Fix: the original ignores write's return value. On Linux a blocking TCP
/// send waits until the kernel has queued every byte, but it returns short
/// when a signal interrupts it after some progress, when a send timeout
/// (SO_SNDTIMEO) expires, or on a non-blocking socket; POSIX allows it
/// anywhere. The loop sends the rest.
fn send_all(client: &OwnedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        // Fix: once the client has closed, the first send usually succeeds
        // (the client's kernel answers it with a reset); the next one fails
        // with EPIPE and raises SIGPIPE, whose default action kills the whole
        // server. MSG_NOSIGNAL keeps the error and drops the signal, so only
        // this client's thread ends. (Rust programs ignore SIGPIPE at startup
        // anyway; the flag does not rely on that.)
        match send(client.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(sent) => data = &data[sent..],
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
// ANCHOR_END: echo

/// Prints one line to stdout. Clients' threads print at the same time, so
/// the line is written under stdout's lock in one piece. A log line that
/// cannot be written (stdout closed) is not a reason to stop serving.
fn log(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints one line to stderr, like [`log`].
fn log_error(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
