//! Practice, lesson 5: lesson 4's echo server in one thread, with epoll(7).
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

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, SockaddrStorage, accept4, bind,
    getpeername, getsockname, listen, recv, send, setsockopt, socket, sockopt,
};
use nix::sys::stat::Mode;

/// A TCP echo server: one thread, epoll, any number of clients.
#[derive(Parser, Debug)]
#[command(name = "lesson5-server", version, args_override_self = true)]
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

/// How many bytes one `recv` may return; the echo does not depend on it.
const BUFFER_SIZE: usize = 4096;

/// Past this many pending echo bytes the server stops reading from a client
/// until it drains (backpressure): pending stays under this plus one `recv`.
const MAX_PENDING: usize = 64 * 1024;

/// How many events one epoll_wait may return; level-triggered, the other
/// ready descriptors are reported again by the next wait.
const MAX_EVENTS: usize = 256;

/// How many connections one wakeup may accept before serving the clients
/// already connected again.
const ACCEPTS_PER_WAKEUP: usize = 64;

/// How long to stop accepting when no descriptor can be freed for it.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The epoll tokens of the two descriptors that are not clients; clients
/// get 2, 3, 4, … in the order they connect.
const LISTENER: u64 = 0;
const SIGNALS: u64 = 1;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up the sockets and the epoll instance, then serves until SIGINT or
/// SIGTERM.
fn run(args: &Args) -> Result<()> {
    // Ctrl+C (SIGINT) and SIGTERM become a descriptor, as in the chat: the
    // event loop waits for it like for any socket, then returns (status 0).
    let signals: SignalFd = todo!(
        "step 0: block SIGINT and SIGTERM and create a non-blocking signalfd that reads them, as the chat does; see signalfd(2) and lesson 5, \"Ctrl+C as a descriptor\""
    );

    let family = match args.bind {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };

    // 1. Create the socket: a TCP (stream) socket of the address's family.
    // New: SOCK_NONBLOCK. `accept_clients` accepts until EAGAIN says the
    // queue is empty; a blocking accept would wait there, serving nobody.
    let listener: OwnedFd = todo!(
        "step 1: create a non-blocking TCP socket of the family of --bind; see socket(2) and lesson 5, \"EAGAIN: 'not now'\""
    );

    // 2. Allow binding the address while connections of an earlier socket
    // on it linger in TIME_WAIT, as in lesson 4.
    todo!(
        "step 2: set SO_REUSEADDR, as lesson 4 does; see setsockopt(2), socket(7) and lesson 5, \"Stopping and restarting\""
    );

    // 3. Bind it to the address clients will connect to.
    todo!(
        "step 3: bind the socket to --bind; an error says \"cannot bind TCP socket to ADDRESS\"; see bind(2) and lesson 5, \"An echo server with epoll\""
    );

    // 4. Listen: from now on the kernel completes connections by itself and
    // queues up to `backlog` of them until `accept` takes them.
    let local: SockaddrStorage = todo!(
        "step 4: listen with --backlog, then ask getsockname for the address; see listen(2), getsockname(2) and lesson 5, \"An echo server with epoll\""
    );

    // 5. An epoll instance: the kernel's list of descriptors this thread
    // waits for. The listener and the signalfd go in now, each client when
    // it is accepted. Level-triggered (no EPOLLET): see `serve_client`.
    let epoll: Epoll = todo!(
        "step 5: create an epoll instance and watch the listener (token LISTENER) and the signalfd (token SIGNALS) for EPOLLIN; see epoll_create1(2), epoll_ctl(2) and lesson 5, \"poll's limit, and epoll\""
    );

    let mut server = Server {
        epoll,
        listener,
        clients: HashMap::new(),
        next_token: SIGNALS + 1,
        spare: open_spare().ok(),
        accept_paused_until: None,
    };
    log(format_args!("listening on {local}"));

    // 6. The event loop: wait for whatever is ready, handle it, wait again.
    let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
    loop {
        let timeout = match server.accept_paused_until {
            Some(until) => EpollTimeout::try_from(until.saturating_duration_since(Instant::now()))
                .unwrap_or(EpollTimeout::ZERO),
            None => EpollTimeout::NONE,
        };
        let ready: usize = todo!(
            "step 6: wait with epoll_wait for up to timeout (retry on EINTR); return how many events it filled in; see epoll_wait(2) and lesson 5, \"poll's limit, and epoll\""
        );
        server.resume_accepting_if_due();
        for event in &events[..ready] {
            match event.data() {
                LISTENER => server
                    .accept_clients()
                    .with_context(|| format!("cannot accept clients on {local}"))?,
                SIGNALS => {
                    let caught: Option<Signal> = todo!(
                        "step 6: read the caught signal off the signalfd; see signalfd(2) and lesson 5, \"Stopping and restarting\""
                    );
                    let name = caught.map_or_else(|| "a stop signal".into(), |s| s.to_string());
                    log(format_args!(
                        "caught {name}: closing {} connection(s) and exiting",
                        server.clients.len()
                    ));
                    // Returning drops the server: every OwnedFd is closed.
                    return Ok(());
                }
                token => server.serve_client(token, event.events()),
            }
        }
    }
}

/// One connected client: its socket and the echo bytes the kernel could not
/// take yet.
struct Client {
    fd: OwnedFd,
    /// The client's address, as the log shows it (formatted once).
    peer: String,
    /// Bytes received but not yet sent back, oldest first.
    pending: Vec<u8>,
    /// The client sent its end (recv returned 0): nothing more will come.
    done_sending: bool,
    /// What epoll watches for on `fd` now.
    interest: EpollFlags,
}

/// What a client's handler decided: keep the connection, or close it.
#[derive(PartialEq)]
enum Connection {
    Keep,
    Close,
}

/// Everything the event loop works on.
struct Server {
    epoll: Epoll,
    listener: OwnedFd,
    /// The connected clients by epoll token. Tokens are never reused: an
    /// event for a client closed earlier in the batch finds nothing.
    clients: HashMap<u64, Client>,
    next_token: u64,
    /// A descriptor kept open only to be closed when the process runs out.
    spare: Option<OwnedFd>,
    accept_paused_until: Option<Instant>,
}

impl Server {
    /// The listener is readable: accepts up to ACCEPTS_PER_WAKEUP clients;
    /// any left stay queued and are reported again (level-triggered). Fails
    /// only when the listener itself is unusable.
    fn accept_clients(&mut self) -> nix::Result<()> {
        for _ in 0..ACCEPTS_PER_WAKEUP {
            let accepted: nix::Result<i32> = todo!(
                "step 7: accept one client, non-blocking and close-on-exec; see accept4(2) and lesson 5, \"Accepting, and running out of descriptors\""
            );
            let raw_fd = match accepted {
                Ok(raw_fd) => raw_fd,
                // The queue is empty: done until epoll says otherwise.
                Err(Errno::EAGAIN) => return Ok(()),
                Err(err @ (Errno::EMFILE | Errno::ENFILE)) => {
                    if !self.turn_away_one_client(err) {
                        return Ok(());
                    }
                    continue;
                }
                Err(err @ (Errno::ENOBUFS | Errno::ENOMEM)) => {
                    log_error(format_args!("cannot accept a client: {err}"));
                    self.pause_accepting();
                    return Ok(());
                }
                // As in lesson 3: the listener is broken, and every retry
                // would fail at once, forever. End the server.
                Err(err @ (Errno::EBADF | Errno::EINVAL | Errno::ENOTSOCK | Errno::EFAULT)) => {
                    return Err(err);
                }
                // ECONNABORTED, EINTR, EPROTO, EPERM: this connection only.
                Err(err) => {
                    log_error(format_args!("cannot accept a client: {err}"));
                    continue;
                }
            };
            // SAFETY: accept4 just returned this descriptor; nothing else
            // owns it, so the OwnedFd is its only owner and closes it once.
            let fd = unsafe { OwnedFd::from_raw_fd(raw_fd) };
            self.add_client(fd);
        }
        Ok(())
    }

    /// Starts watching a freshly accepted client.
    fn add_client(&mut self, fd: OwnedFd) {
        let peer: SockaddrStorage = match getpeername(fd.as_raw_fd()) {
            Ok(peer) => peer,
            Err(err) => {
                // The client already reset the connection: nothing to serve.
                log_error(format_args!("cannot read a new client's address: {err}"));
                return;
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        // Only EPOLLIN: EPOLLOUT on an empty send buffer would wake us at once.
        let interest = EpollFlags::EPOLLIN;
        let watched: nix::Result<()> = todo!(
            "step 7: watch the client for `interest` under `token`; if that fails, log \"cannot watch client PEER: ERR; closed its connection\" and return; see epoll_ctl(2) and lesson 5, \"Accepting, and running out of descriptors\""
        );
        log(format_args!("client {peer} connected"));
        let client = Client {
            fd,
            peer: peer.to_string(),
            pending: Vec::new(),
            done_sending: false,
            interest,
        };
        self.clients.insert(token, client);
    }

    /// accept failed with EMFILE or ENFILE, and the connection stays queued:
    /// retrying would spin. Close the spare, accept the client with the slot
    /// it frees, close that connection at once, reopen the spare. Returns
    /// whether accepting should go on. Why: see the server's chapter,
    /// "Accepting, and running out of descriptors".
    fn turn_away_one_client(&mut self, err: Errno) -> bool {
        todo!(
            "step 7: close the spare, accept the client and close it at once (log \"cannot serve client PEER: ERR; closed its connection at once\"), reopen the spare; see accept4(2), open(2) and lesson 5, \"Accepting, and running out of descriptors\""
        )
    }

    /// Stops watching the listener for ACCEPT_PAUSE: connections wait in
    /// the kernel's queue meanwhile.
    fn pause_accepting(&mut self) {
        if self.accept_paused_until.is_none() && self.epoll.delete(&self.listener).is_ok() {
            self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
        }
    }

    fn resume_accepting_if_due(&mut self) {
        if self
            .accept_paused_until
            .is_some_and(|until| Instant::now() >= until)
        {
            self.accept_paused_until = None;
            let watched = self.epoll.add(
                &self.listener,
                EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
            );
            if let Err(err) = watched {
                log_error(format_args!(
                    "cannot watch the listening socket again: {err}"
                ));
            }
        }
    }

    /// Handles what epoll reported for one client. Level-triggered: one
    /// read per wakeup, and what is left is reported again after every other
    /// ready client had its turn. Why not EPOLLET: see lesson 5's server
    /// chapter, "Level-triggered or edge-triggered".
    fn serve_client(&mut self, token: u64, events: EpollFlags) {
        let Some(client) = self.clients.get_mut(&token) else {
            return; // Closed earlier in this batch.
        };
        // EPOLLHUP and EPOLLERR come unasked; recv or send then says what.
        let trouble = events.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
        let mut next = Connection::Keep;
        if client.interest.contains(EpollFlags::EPOLLIN)
            && (events.contains(EpollFlags::EPOLLIN) || trouble)
        {
            next = client.receive();
        }
        if next == Connection::Keep && (events.contains(EpollFlags::EPOLLOUT) || trouble) {
            next = client.flush();
        }
        let finished = client.done_sending && client.pending.is_empty();
        if next == Connection::Keep && !finished {
            next = client.update_interest(&self.epoll, token);
        }
        if next == Connection::Close || finished {
            // Closing the socket also takes it out of the epoll instance.
            self.clients.remove(&token);
        }
    }
}

impl Client {
    /// Reads once from the client and echoes what came.
    fn receive(&mut self) -> Connection {
        let mut buffer = [0u8; BUFFER_SIZE];
        let received: nix::Result<usize> = todo!(
            "step 8: receive once from the client into buffer; see recv(2) and lesson 5, \"EAGAIN: 'not now'\""
        );
        let received = match received {
            Ok(0) => {
                // The client sent its end (FIN) but may still read (lesson
                // 5's client half-closes): close once the echo is out.
                log(format_args!("client {} left", self.peer));
                self.done_sending = true;
                return Connection::Keep;
            }
            Ok(received) => received,
            // EAGAIN: a spurious wakeup; a blocking recv would stop everyone.
            Err(Errno::EAGAIN | Errno::EINTR) => return Connection::Keep,
            Err(err) => {
                // ECONNRESET and the like: the client vanished.
                log_error(format_args!(
                    "cannot receive from client {}: {err}",
                    self.peer
                ));
                return Connection::Close;
            }
        };
        let data = &buffer[..received];
        // As in lessons 3-4: an exact length, not UTF-8 shown as U+FFFD.
        let text = String::from_utf8_lossy(data);
        log(format_args!(
            "recv from {}: {}",
            self.peer,
            text.strip_suffix('\n').unwrap_or(&text)
        ));
        self.pending.extend_from_slice(data);
        self.flush()
    }

    /// Sends as much of the pending echo as the kernel takes now.
    fn flush(&mut self) -> Connection {
        while !self.pending.is_empty() {
            // MSG_NOSIGNAL, as in lessons 3-4: a vanished client is EPIPE.
            let sent: nix::Result<usize> = todo!(
                "step 9: send the pending bytes without SIGPIPE; see send(2) and lesson 5, \"EAGAIN: 'not now'\""
            );
            match sent {
                Ok(sent) => {
                    self.pending.drain(..sent);
                }
                // The send buffer is full: keep the rest, wait for EPOLLOUT.
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(err) => {
                    log_error(format_args!("cannot echo to client {}: {err}", self.peer));
                    return Connection::Close;
                }
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > BUFFER_SIZE {
            // Give back what a burst made the buffer grow to.
            self.pending = Vec::new();
        }
        Connection::Keep
    }

    /// Tells epoll what to wait for on this client now: EPOLLIN unless the
    /// client sent its end or too much echo is pending (backpressure), and
    /// EPOLLOUT only while some is.
    fn update_interest(&mut self, epoll: &Epoll, token: u64) -> Connection {
        todo!(
            "step 10: want EPOLLIN unless the client sent its end or MAX_PENDING bytes wait, EPOLLOUT only while some do; if that changed, EPOLL_CTL_MOD and remember it (on error log \"cannot watch client PEER: ERR\" and close); see epoll_ctl(2) and lesson 5, \"Backpressure\""
        )
    }
}

/// The spare descriptor: /dev/null, open for nothing but to be closed.
fn open_spare() -> nix::Result<OwnedFd> {
    open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Prints one line to stdout, as lesson 3 does. A log line that cannot be
/// written (stdout closed) is not a reason to stop serving.
fn log(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints one line to stderr, like [`log`].
fn log_error(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
