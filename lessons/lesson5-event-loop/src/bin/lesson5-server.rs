//! Lesson 5's server: lesson 4's echo server in one thread, with epoll.
//!
//! Lessons 3 and 4 give every client a thread that sleeps in `recv` until
//! its client speaks. Here one thread sleeps in epoll_wait(2) until *any*
//! descriptor is ready: the listening socket (a client is waiting to be
//! accepted), a client's socket (bytes came, or room came back in its send
//! buffer), or a signalfd (Ctrl+C). It handles what is ready without ever
//! blocking, and waits again. A client costs a descriptor and a small struct,
//! not a thread.
//!
//! What a blocking design got for free must now be done by hand: every
//! socket is non-blocking, so `send` may take part of an echo and the rest
//! waits in the client's output buffer; a client that sends without reading
//! is not read from until its buffer drains (backpressure); running out of
//! descriptors is handled without spinning. The steps keep lesson 4's
//! numbers, then add the event loop.

use std::collections::HashMap;
use std::io::{BufWriter, Stdout, Write};
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

/// How many bytes one `recv` may return; the echo does not depend on it.
const BUFFER_SIZE: usize = 4096;

// ANCHOR: max_pending
/// The most echo bytes the server holds for one client that does not read.
/// Past it, the server stops reading from that client until it drains: the
/// kernel's buffers fill, and the client's own `send` blocks. Memory per
/// client stays below this plus one `recv`, whatever the client does.
const MAX_PENDING: usize = 64 * 1024;
// ANCHOR_END: max_pending

/// How many events one epoll_wait may return. More ready descriptors are
/// not lost: level-triggered, they are reported again by the next wait.
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

// ANCHOR: args
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
// ANCHOR_END: args

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
    // ANCHOR: signals
    // Ctrl+C (SIGINT) and SIGTERM become a descriptor: blocked, they stay
    // pending instead of killing the process, and the signalfd is readable
    // while one is. The event loop waits for it like for any socket, and
    // returns: every client's descriptor is closed and the exit status is 0.
    let stop_signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    stop_signals
        .thread_block()
        .context("cannot block SIGINT and SIGTERM")?;
    let signals = SignalFd::with_flags(
        &stop_signals,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .context("cannot create a signalfd for SIGINT and SIGTERM")?;
    // ANCHOR_END: signals

    let family = match args.bind {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };

    // ANCHOR: socket
    // 1. Create the socket: a TCP (stream) socket of the address's family.
    // New: SOCK_NONBLOCK. The one thread must never sleep anywhere but in
    // epoll_wait. `accept_clients` takes connections until the queue is
    // empty, and learns that it is from EAGAIN; a blocking accept would
    // instead wait there for the next client, with every other one unserved.
    let listener = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("cannot create a TCP socket")?;
    // ANCHOR_END: socket

    // 2. Allow binding the address while connections of an earlier socket
    // on it linger in TIME_WAIT, as in lesson 4.
    setsockopt(&listener, sockopt::ReuseAddr, &true).context("cannot set SO_REUSEADDR")?;

    // 3. Bind it to the address clients will connect to.
    bind(listener.as_raw_fd(), &SockaddrStorage::from(args.bind))
        .with_context(|| format!("cannot bind TCP socket to {}", args.bind))?;

    // 4. Listen: from now on the kernel completes connections by itself and
    // queues up to `backlog` of them until `accept` takes them.
    let backlog =
        Backlog::new(args.backlog).with_context(|| format!("invalid backlog {}", args.backlog))?;
    listen(&listener, backlog).with_context(|| format!("cannot listen on {}", args.bind))?;
    let local: SockaddrStorage =
        getsockname(listener.as_raw_fd()).context("cannot read the bound address")?;

    // ANCHOR: epoll
    // 5. An epoll instance: the kernel's list of descriptors this thread
    // waits for. The listener and the signalfd go in now, each client when
    // it is accepted. Level-triggered (no EPOLLET): see `serve_client`.
    let epoll =
        Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("cannot create an epoll instance")?;
    epoll
        .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
        .context("cannot watch the listening socket")?;
    epoll
        .add(&signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))
        .context("cannot watch the signalfd")?;
    // ANCHOR_END: epoll

    let mut server = Server {
        epoll,
        listener,
        clients: HashMap::new(),
        next_token: SIGNALS + 1,
        spare: open_spare().ok(),
        accept_paused_until: None,
        log: Log::new(),
    };
    server.log.line(format_args!("listening on {local}"));

    // ANCHOR: event_loop
    // 6. The event loop: wait for whatever is ready, handle it, wait again.
    let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
    loop {
        // The log lines of the last batch of events, in one write(2).
        server.log.flush();
        let timeout = match server.accept_paused_until {
            Some(until) => EpollTimeout::try_from(until.saturating_duration_since(Instant::now()))
                .unwrap_or(EpollTimeout::ZERO),
            None => EpollTimeout::NONE,
        };
        let ready = match server.epoll.wait(&mut events, timeout) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err).context("cannot wait with epoll_wait"),
        };
        server.resume_accepting_if_due();
        for event in &events[..ready] {
            match event.data() {
                LISTENER => server.accept_clients(),
                SIGNALS => {
                    let caught = signals
                        .read_signal()
                        .ok()
                        .flatten()
                        .and_then(|info| Signal::try_from(info.ssi_signo as i32).ok());
                    let name = caught.map_or_else(|| "a stop signal".into(), |s| s.to_string());
                    server.log.line(format_args!(
                        "caught {name}: closing {} connection(s) and exiting",
                        server.clients.len()
                    ));
                    server.log.flush();
                    // Returning drops the server: every client's OwnedFd is
                    // closed, and so are the listener and the epoll instance.
                    return Ok(());
                }
                token => server.serve_client(token, event.events()),
            }
        }
    }
    // ANCHOR_END: event_loop
}

// ANCHOR: client
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
// ANCHOR_END: client

/// Everything the event loop works on.
struct Server {
    epoll: Epoll,
    listener: OwnedFd,
    /// The connected clients by epoll token. A token is never reused, so an
    /// event for a client closed earlier in the same batch finds nothing
    /// (epoll(7): "If using an event cache...") rather than a newer client
    /// that got the same descriptor number.
    clients: HashMap<u64, Client>,
    next_token: u64,
    /// A descriptor kept open only to be closed when the process runs out.
    spare: Option<OwnedFd>,
    accept_paused_until: Option<Instant>,
    log: Log,
}

impl Server {
    // ANCHOR: accept
    /// The listener is readable: connections are queued. Accepts them, up
    /// to ACCEPTS_PER_WAKEUP; any left stay queued and the listener stays
    /// readable, so the next wait reports it again (level-triggered).
    fn accept_clients(&mut self) {
        for _ in 0..ACCEPTS_PER_WAKEUP {
            // accept4 sets the new socket non-blocking and close-on-exec in
            // the same call: no moment where it exists without the flags.
            let raw_fd = match accept4(
                self.listener.as_raw_fd(),
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            ) {
                Ok(raw_fd) => raw_fd,
                // The queue is empty: done until epoll says otherwise.
                Err(Errno::EAGAIN) => return,
                Err(err @ (Errno::EMFILE | Errno::ENFILE)) => {
                    if !self.turn_away_one_client(err) {
                        return;
                    }
                    continue;
                }
                Err(err @ (Errno::ENOBUFS | Errno::ENOMEM)) => {
                    self.log
                        .error(format_args!("cannot accept a client: {err}"));
                    self.pause_accepting();
                    return;
                }
                Err(err) => {
                    // ECONNABORTED (the client gave up while queued), EINTR,
                    // EPROTO, EPERM (a firewall rule): this connection only.
                    self.log
                        .error(format_args!("cannot accept a client: {err}"));
                    continue;
                }
            };
            // SAFETY: accept4 just returned this descriptor; nothing else
            // owns it, so the OwnedFd is its only owner and closes it once.
            let fd = unsafe { OwnedFd::from_raw_fd(raw_fd) };
            self.add_client(fd);
        }
    }
    // ANCHOR_END: accept

    /// Starts watching a freshly accepted client.
    fn add_client(&mut self, fd: OwnedFd) {
        let peer: SockaddrStorage = match getpeername(fd.as_raw_fd()) {
            Ok(peer) => peer,
            Err(err) => {
                // The client already reset the connection: nothing to serve.
                self.log
                    .error(format_args!("cannot read a new client's address: {err}"));
                return;
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        // Only EPOLLIN: a new socket's send buffer is empty, so it is
        // writable, and asking for EPOLLOUT now would wake us for nothing.
        let interest = EpollFlags::EPOLLIN;
        if let Err(err) = self.epoll.add(&fd, EpollEvent::new(interest, token)) {
            // ENOSPC: /proc/sys/fs/epoll/max_user_watches reached; ENOMEM.
            self.log.error(format_args!(
                "cannot watch client {peer}: {err}; closed its connection"
            ));
            return;
        }
        self.log.line(format_args!("client {peer} connected"));
        let client = Client {
            fd,
            peer: peer.to_string(),
            pending: Vec::new(),
            done_sending: false,
            interest,
        };
        self.clients.insert(token, client);
    }

    // ANCHOR: emfile
    /// accept failed with EMFILE or ENFILE: no descriptor is left for the
    /// next client. The connection stays queued, so the listener stays
    /// readable, and a level-triggered loop that just tried again would spin
    /// at 100% CPU until a client leaves. Instead: close the spare
    /// descriptor, accept the client with the slot it frees, close that
    /// connection at once (the client sees its connection closed rather
    /// than hanging in the queue), and reopen the spare. Each call takes one
    /// connection off the queue, so the loop always makes progress.
    ///
    /// Returns whether accepting should go on.
    fn turn_away_one_client(&mut self, err: Errno) -> bool {
        if self.spare.take().is_none() {
            // No spare (reopening it failed last time): try to get it back,
            // and if that fails too, stop accepting for a moment.
            self.spare = open_spare().ok();
            if self.spare.is_none() {
                self.log.error(format_args!(
                    "cannot accept a client: {err}; not accepting for {ACCEPT_PAUSE:?}"
                ));
                self.pause_accepting();
                return false;
            }
            return true;
        }
        // The spare was closed by `take`: one descriptor is free.
        let turned_away =
            accept4(self.listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC).map(|raw_fd| {
                // SAFETY: accept4 just returned it; this is its only owner.
                unsafe { OwnedFd::from_raw_fd(raw_fd) }
            });
        let outcome = match turned_away {
            Ok(client) => {
                let peer = getpeername::<SockaddrStorage>(client.as_raw_fd())
                    .map_or_else(|_| "?".into(), |peer| peer.to_string());
                drop(client);
                self.log.error(format_args!(
                    "cannot serve client {peer}: {err}; closed its connection at once"
                ));
                true
            }
            Err(Errno::EAGAIN) => false,
            Err(other) => {
                self.log
                    .error(format_args!("cannot accept a client: {other}"));
                true
            }
        };
        self.spare = open_spare().ok();
        outcome
    }
    // ANCHOR_END: emfile

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
                self.log.error(format_args!(
                    "cannot watch the listening socket again: {err}"
                ));
            }
        }
    }

    // ANCHOR: serve_client
    /// Handles what epoll reported for one client.
    ///
    /// Level-triggered, on purpose: epoll reports a descriptor for as long
    /// as it is ready, like poll(2) does. So this reads at most one buffer
    /// per wakeup and moves on: whatever is left is reported again by the
    /// next epoll_wait, after every other ready client had its turn, and one
    /// fast sender cannot starve the rest. Edge-triggered (EPOLLET) reports
    /// only changes: each event would have to be drained until EAGAIN, or
    /// the bytes left over would never be reported again, and fairness
    /// would need a ready list of our own. The price of level-triggered: a
    /// socket with room in its send buffer is always writable, so EPOLLOUT
    /// is asked for only while an echo waits, or every wait would return at
    /// once.
    fn serve_client(&mut self, token: u64, events: EpollFlags) {
        // The client, the epoll instance and the log are separate fields:
        // borrowed apart, the client can write to the log directly.
        let Server {
            clients,
            epoll,
            log,
            ..
        } = self;
        let Some(client) = clients.get_mut(&token) else {
            return; // Closed earlier in this batch.
        };
        // EPOLLHUP and EPOLLERR are always reported, asked for or not; a
        // recv or send on the socket then returns what happened.
        let trouble = events.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
        let mut open = true;
        if client.interest.contains(EpollFlags::EPOLLIN)
            && (events.contains(EpollFlags::EPOLLIN) || trouble)
        {
            open = client.receive(log);
        }
        if open && (events.contains(EpollFlags::EPOLLOUT) || trouble) {
            open = client.flush(log);
        }
        let finished = client.done_sending && client.pending.is_empty();
        if open && !finished {
            open = client.update_interest(epoll, token, log);
        }
        if !open || finished {
            // Dropping the OwnedFd closes the socket, which also takes it
            // out of the epoll instance: no other descriptor refers to it.
            clients.remove(&token);
        }
    }
    // ANCHOR_END: serve_client
}

/// The server's log. Lines go to stdout through a buffer, written in one
/// go before each wait rather than with one write(2) per line; errors go to
/// stderr at once, after the lines before them, so the two streams read in
/// order. A line that cannot be written (stdout closed) is not a reason to
/// stop serving.
struct Log {
    out: BufWriter<Stdout>,
}

impl Log {
    fn new() -> Log {
        Log {
            out: BufWriter::new(std::io::stdout()),
        }
    }

    fn line(&mut self, line: std::fmt::Arguments) {
        let _ = writeln!(self.out, "{line}");
    }

    fn error(&mut self, line: std::fmt::Arguments) {
        self.flush();
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

impl Client {
    // ANCHOR: receive
    /// Reads once from the client and echoes what came. Returns false when
    /// the connection must be closed.
    fn receive(&mut self, log: &mut Log) -> bool {
        let mut buffer = [0u8; BUFFER_SIZE];
        let received = match recv(self.fd.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
            Ok(0) => {
                // The client sent its end (FIN). It may still be reading:
                // lesson 5's client half-closes and waits for every echo.
                // So the connection is closed once the pending echo is out.
                log.line(format_args!("client {} left", self.peer));
                self.done_sending = true;
                return true;
            }
            Ok(received) => received,
            // EAGAIN: nothing to read after all (a spurious wakeup). With a
            // blocking socket this recv would have put the whole server to
            // sleep; non-blocking, it is just "not now".
            Err(Errno::EAGAIN | Errno::EINTR) => return true,
            Err(err) => {
                // ECONNRESET and the like: the client vanished.
                log.error(format_args!(
                    "cannot receive from client {}: {err}",
                    self.peer
                ));
                return false;
            }
        };
        let data = &buffer[..received];
        // As in lessons 3-4: an exact length, bytes that are not UTF-8 as
        // U+FFFD.
        let text = String::from_utf8_lossy(data);
        log.line(format_args!(
            "recv from {}: {}",
            self.peer,
            text.strip_suffix('\n').unwrap_or(&text)
        ));
        self.pending.extend_from_slice(data);
        self.flush(log)
    }
    // ANCHOR_END: receive

    // ANCHOR: flush
    /// Sends as much of the pending echo as the kernel takes now. Returns
    /// false when the connection must be closed.
    fn flush(&mut self, log: &mut Log) -> bool {
        while !self.pending.is_empty() {
            // MSG_NOSIGNAL, as in lessons 3-4: a vanished client is EPIPE,
            // not a SIGPIPE that kills the server with every client.
            match send(self.fd.as_raw_fd(), &self.pending, MsgFlags::MSG_NOSIGNAL) {
                Ok(sent) => {
                    self.pending.drain(..sent);
                }
                // EAGAIN: the socket's send buffer is full (the client reads
                // slower than it sends). A blocking send would stop the
                // whole server here; this one leaves the rest pending and
                // asks epoll for EPOLLOUT.
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(err) => {
                    log.error(format_args!("cannot echo to client {}: {err}", self.peer));
                    return false;
                }
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > BUFFER_SIZE {
            // Give back what a burst made the buffer grow to: an idle
            // client costs no buffer at all.
            self.pending = Vec::new();
        }
        true
    }
    // ANCHOR_END: flush

    // ANCHOR: interest
    /// Tells epoll what to wait for on this client now: EPOLLIN unless the
    /// client sent its end or too much echo is pending (backpressure), and
    /// EPOLLOUT only while some is.
    fn update_interest(&mut self, epoll: &Epoll, token: u64, log: &mut Log) -> bool {
        let mut wanted = EpollFlags::empty();
        if !self.done_sending && self.pending.len() < MAX_PENDING {
            wanted |= EpollFlags::EPOLLIN;
        }
        if !self.pending.is_empty() {
            wanted |= EpollFlags::EPOLLOUT;
        }
        if wanted == self.interest {
            return true;
        }
        match epoll.modify(&self.fd, &mut EpollEvent::new(wanted, token)) {
            Ok(()) => {
                self.interest = wanted;
                true
            }
            Err(err) => {
                log.error(format_args!("cannot watch client {}: {err}", self.peer));
                false
            }
        }
    }
    // ANCHOR_END: interest
}

/// The spare descriptor: /dev/null, open for nothing but to be closed.
fn open_spare() -> nix::Result<OwnedFd> {
    open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}
