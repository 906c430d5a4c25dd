//! Practice, lesson 4: this is lesson 3's server, renamed lesson4-server.
//!
//! Restarted at once after Ctrl+C with clients connected, `bind` fails with
//! EADDRINUSE. Make it restart at once (lesson 4, SO_REUSEADDR), and make its
//! errors lesson 4's. Check your work with `just check 4`, or let
//! `just practice 4` check it on every save. The solution is lesson 4 itself.

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

/// A TCP echo server: one thread per client.
#[derive(Parser, Debug)]
// A later occurrence of a flag replaces an earlier one: what a user types
// after a script's defaults wins.
#[command(name = "lesson4-server", version, args_override_self = true)]
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

/// How many bytes one `recv` may return: the original's 1024.
const BUFFER_SIZE: usize = 1024;

/// How long to pause when `accept` fails for lack of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let args = Args::parse();
    let Err(err) = run(&args);
    eprintln!("error: {err:#}");
    if err.root_cause().downcast_ref::<Errno>() == Some(&Errno::EADDRINUSE) {
        eprintln!(
            "hint: if no other server uses {}, connections of a previous server may hold it \
             (FIN-WAIT-2, then TIME_WAIT) for up to about two minutes; lesson 4 (SO_REUSEADDR) fixes this",
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

    // 1. Create the socket: a TCP (stream) socket of the address's family.
    // Not std's TcpListener: it sets SO_REUSEADDR, hiding lesson 4's bug.
    let listener = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .context("cannot create a TCP socket")?;

    // 2. Bind it to the address clients will connect to.
    bind(listener.as_raw_fd(), &SockaddrStorage::from(args.bind))
        .with_context(|| format!("cannot bind TCP socket to {}", args.bind))?;

    // 3. Listen: the kernel now completes connections by itself and queues
    // up to `backlog` of them until `accept` takes them.
    let backlog =
        Backlog::new(args.backlog).with_context(|| format!("invalid backlog {}", args.backlog))?;
    listen(&listener, backlog).with_context(|| format!("cannot listen on {}", args.bind))?;
    let local: SockaddrStorage =
        getsockname(listener.as_raw_fd()).context("cannot read the bound address")?;
    log(format_args!("listening on {local}"));

    // 4. Accept clients forever, each in a thread of its own.
    loop {
        // Fix: the original exits on any accept error, dropping every client.
        // Only errors that say the listener itself is unusable end it here.
        let raw_fd = match accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(raw_fd) => raw_fd,
            Err(err @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                // The connection stays queued: retrying at once would spin.
                log_error(format_args!(
                    "cannot accept a client: {err}; retrying in {ACCEPT_BACKOFF:?}"
                ));
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(err @ (Errno::EBADF | Errno::EINVAL | Errno::ENOTSOCK | Errno::EFAULT)) => {
                // The listener is broken: every retry would fail at once.
                return Err(err).with_context(|| format!("cannot accept clients on {local}"));
            }
            Err(err) => {
                // ECONNABORTED, EINTR, EPROTO, EPERM: this connection only.
                log_error(format_args!("cannot accept a client: {err}"));
                continue;
            }
        };
        // SAFETY: accept just returned this descriptor; nothing else owns it,
        // so the OwnedFd is its only owner and closes it exactly once.
        let client = unsafe { OwnedFd::from_raw_fd(raw_fd) };
        let peer: SockaddrStorage = match getpeername(client.as_raw_fd()) {
            Ok(peer) => peer,
            Err(err) => {
                // ENOTCONN: the client reset the connection while queued.
                log_error(format_args!("cannot read a new client's address: {err}"));
                continue;
            }
        };
        log(format_args!("client {peer} connected"));

        // Fix: the original passes `&cfd`, which the next accept overwrites;
        // the `move` closure gives the thread the descriptor itself.
        // Fix: `pthread_create(...) < 0` never fires (it returns a positive
        // error). A failed spawn drops the closure, closing the client.
        let spawned = thread::Builder::new()
            .name(format!("client {peer}"))
            .spawn(move || serve_client(client, peer));
        if let Err(err) = spawned {
            log_error(format_args!(
                "cannot start a thread for client {peer}: {err}; closed its connection"
            ));
        }
    }
}

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
                // ECONNRESET and the like: only this client's thread ends.
                log_error(format_args!("cannot receive from client {peer}: {err}"));
                break;
            }
        };
        let data = &buffer[..received];
        // Fix: printf("%s") reads past a full buffer with no NUL; a slice has
        // an exact length (bytes that are not UTF-8 show as U+FFFD).
        let text = String::from_utf8_lossy(data);
        log(format_args!(
            "recv from {peer}: {}",
            text.strip_suffix('\n').unwrap_or(&text)
        ));
        if let Err(err) = send_all(&client, data) {
            log_error(format_args!("cannot echo to client {peer}: {err}"));
            break;
        }
    }
    // Dropping `client` closes the connection (the original's close(cfd)).
}

/// Sends every byte of `data`.
///
/// Fix: the original ignores write's count; a send may return short (after
/// a signal, for instance), so the loop sends the rest.
fn send_all(client: &OwnedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        // Fix: a send to a client that left can raise SIGPIPE, which kills
        // the whole server; MSG_NOSIGNAL leaves only the EPIPE error.
        match send(client.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(sent) => data = &data[sent..],
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Prints one line to stdout, in one piece under stdout's lock. A log line
/// that cannot be written (stdout closed) is not a reason to stop serving.
fn log(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints one line to stderr, like [`log`].
fn log_error(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
