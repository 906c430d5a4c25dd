//! The peer of lesson 7: lesson 6's chat, that always gets through. After
//! `meet` (which also has the rendezvous check our mapping), three ways to
//! the peer, each within its own bound, best first: `punch` (lesson 6's,
//! its first probes short-lived), `birthday` (many ports against a NAT that
//! maps each destination anew), `relay` (through the rendezvous). The
//! first that works carries the `chat`; the peer prints which one won.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, MsgFlags, SockFlag, SockType, SockaddrStorage, sockopt};
use nix::unistd;

use lesson7_nat_traversal::protocol::{self, Cookie, Message, Role, Token};
use lesson7_nat_traversal::{family, show_ms, to_socket_addr};

/// How often requests to the rendezvous are repeated: until it answers
/// (UDP may lose a request or its answer), and while we wait for the peer.
const RETRY: Duration = Duration::from_secs(1);
/// How long the rendezvous may stay silent before we give up on it: eight
/// requests, or their answers, lost in a row.
const RENDEZVOUS_SILENCE: Duration = Duration::from_secs(8);
/// How often probes go out while punching.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Birthday scanning: a batch of probes this often (1,600 a second).
const SCAN_TICK: Duration = Duration::from_millis(20);
const SCAN_BATCH: usize = 32;
/// How long both peers may take to ask the relay.
const RELAY_WAIT: Duration = Duration::from_secs(10);

const PROMPT: &str = "Enter message ('quit' to exit): ";

// ANCHOR: args
/// A UDP chat between two peers behind any NATs: they meet at a rendezvous
/// server, then talk directly, by a birthday punch, or through the relay.
#[derive(Parser, Debug)]
#[command(name = "lesson7-peer", version)]
struct Args {
    /// The address this peer's socket binds. 0.0.0.0 binds every local
    /// address; port 0 lets the kernel pick one.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:0")]
    bind: SocketAddr,

    /// The rendezvous server.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:55500")]
    rendezvous: SocketAddr,

    /// The rendezvous's second port, that checks our mapping; by default
    /// the next port after --rendezvous's.
    #[arg(long, value_name = "PORT")]
    second_port: Option<u16>,

    /// Our name at the rendezvous.
    #[arg(long, value_name = "NAME", value_parser = protocol::parse_name)]
    name: String,

    /// The name of the peer to chat with.
    #[arg(long, value_name = "NAME", value_parser = protocol::parse_name)]
    peer_name: String,

    /// Send a keepalive when nothing was sent for this long, in
    /// milliseconds; 0 sends none (and NATs may forget the hole).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    keepalive_ms: u64,

    /// Give up the direct punch after this long without an answer, in
    /// milliseconds. Both peers must use the same bounds.
    #[arg(long, value_name = "MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    punch_timeout_ms: u64,

    /// Give up the birthday punch after this long, in milliseconds; 0 skips
    /// it.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    birthday_ms: u64,

    /// Birthday punching, hard side: how many sockets (k) to open.
    #[arg(long, value_name = "K", default_value_t = 256,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    birthday_sockets: u16,

    /// Birthday punching, easy side: how many random ports (n) to probe.
    #[arg(long, value_name = "N", default_value_t = 2_048,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    birthday_probes: u32,

    /// The ports the peer's NAT maps to, where the easy side probes.
    #[arg(long, value_name = "LOW-HIGH", default_value = "1024-65535",
          value_parser = parse_port_range)]
    port_range: (u16, u16),

    /// The TTL of the first probes: enough to leave our own NAT, too little
    /// to reach the peer's (the chapter, "The first probe"); 0: the
    /// system's TTL for every probe.
    #[arg(long, value_name = "HOPS", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(0..))]
    first_ttl: u8,

    /// Give up when the peer has not come to the rendezvous within this
    /// long, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 120_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    wait_ms: u64,

    /// Wait this long before the first probe, in milliseconds (probes from
    /// the peer are still answered). Lets a demonstration decide who
    /// punches first.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    probe_delay_ms: u64,
}
// ANCHOR_END: args

/// `LOW-HIGH`: a range of ports, low at most high.
fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let parsed = text
        .split_once('-')
        .and_then(|(low, high)| Some((low.parse::<u16>().ok()?, high.parse::<u16>().ok()?)));
    match parsed {
        Some((low, high)) if 0 < low && low <= high => Ok((low, high)),
        _ => Err(format!(
            "{text:?} is not LOW-HIGH, two ports with 0 < LOW <= HIGH"
        )),
    }
}

/// What the rendezvous told us about the peer.
struct PeerInfo {
    name: String,
    public: SocketAddr,
    private: SocketAddr,
    token: Token,
    role: Role,
    /// Our own registration's cookie, for ALLOCATE.
    cookie: Cookie,
}

/// How one way to the peer ended.
enum Outcome {
    /// The way that found the path, the path, on this socket (`None`: our
    /// main one); whether the peer knows the path too (it answered us).
    Found(Way, SocketAddr, Option<OwnedFd>, bool),
    /// Not within its bound: try the next way.
    Failed,
    /// SIGINT or SIGTERM.
    Stop,
}

/// The one UDP socket, the stop signals (SIGINT, SIGTERM) as a descriptor,
/// and a buffer that holds any datagram whole.
struct Socket {
    fd: OwnedFd,
    signals: SignalFd,
    buffer: Vec<u8>,
    /// The relay's size limit, from ALLOCATED.
    relay_max: Option<usize>,
}

/// What waiting for a datagram brought.
enum Arrival {
    /// A datagram of this length, from this sender, is in the buffer.
    Datagram(usize, SocketAddr),
    /// The time ran out, or the readiness found nothing.
    Nothing,
    /// SIGINT or SIGTERM: stop.
    Stop,
}

/// What one `poll` found ready.
#[derive(Default)]
struct Ready {
    socket: bool,
    stop: bool,
    input: bool,
}

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

fn run(args: &Args) -> Result<()> {
    if args.bind.is_ipv4() != args.rendezvous.is_ipv4() {
        bail!(
            "--bind {} and --rendezvous {} must both be IPv4 or both IPv6: one UDP socket speaks one family",
            args.bind,
            args.rendezvous
        );
    }
    if args.name == args.peer_name {
        bail!(
            "--name and --peer-name are both {:?}: a peer cannot chat with itself",
            args.name
        );
    }
    let mut sock = Socket::open(args.bind)?;
    let private = private_endpoint(sock.bound()?, args.rendezvous)?;
    println!("private endpoint: {private}");

    let Some(peer) = meet(&mut sock, args, private)? else {
        return Ok(());
    };
    // ANCHOR: ways
    // The ways to the peer, best first, each within its own bound.
    let mut outcome = punch(&mut sock, args, &peer, private)?;
    if matches!(outcome, Outcome::Failed) {
        outcome = birthday(&mut sock, args, &peer)?;
    }
    if matches!(outcome, Outcome::Failed) {
        outcome = relay(&mut sock, args, &peer)?;
    }
    // ANCHOR_END: ways
    let (way, path, fd, peer_knows) = match outcome {
        Outcome::Found(way, path, fd, knows) => (way, path, fd, knows),
        Outcome::Stop => return Ok(()),
        Outcome::Failed => bail!(
            "no way to {}: no punch met, and the relay at {} did not answer within {}",
            peer.name,
            args.rendezvous,
            show_ms(RELAY_WAIT.as_millis() as u64)
        ),
    };
    if let Some(fd) = fd {
        sock.fd = fd;
    }
    let max = if way == Way::Relay {
        sock.relay_max
    } else {
        None
    };
    let session = found(way, peer, path, peer_knows, max);
    chat(&mut sock, args, session)
}

impl Socket {
    /// Turns the stop signals into a descriptor, and binds the socket.
    fn open(bind: SocketAddr) -> Result<Socket> {
        // ANCHOR: signals
        // Ctrl+C and SIGTERM become a descriptor that `poll` waits on, as in
        // lesson 5: blocked, a signal stays pending until we read it.
        let stop_signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
        stop_signals
            .thread_block()
            .context("cannot block SIGINT and SIGTERM")?;
        let signals = SignalFd::with_flags(&stop_signals, SfdFlags::SFD_CLOEXEC)
            .context("cannot create a signalfd for SIGINT and SIGTERM")?;
        // ANCHOR_END: signals
        // One socket for everything but the birthday punch's hard side: the
        // hole a NAT opens is for this socket's port.
        let fd = open_socket(bind)?;
        let buffer = vec![0u8; 65_536];
        Ok(Socket {
            fd,
            signals,
            buffer,
            relay_max: None,
        })
    }

    /// The address the socket is bound to (with port 0, the kernel chose).
    fn bound(&self) -> Result<SocketAddr> {
        let bound: SockaddrStorage =
            socket::getsockname(self.fd.as_raw_fd()).context("cannot read the bound address")?;
        let bound = to_socket_addr(&bound).context("the bound address is not IP")?;
        println!("bound to {bound}");
        Ok(bound)
    }

    /// Waits until `until` (`None`: no limit) for the socket, a stop signal,
    /// or with `input`, standard input.
    fn wait(&self, input: bool, until: Option<Instant>) -> Result<Ready> {
        let timeout = until.map_or(PollTimeout::NONE, |until| {
            PollTimeout::try_from(until.saturating_duration_since(Instant::now()))
                .unwrap_or(PollTimeout::MAX)
        });
        let stdin = std::io::stdin();
        let mut fds = vec![
            PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
        ];
        if input {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Ready::default()),
            Err(err) => return Err(err).context("poll failed"),
        }
        let ready = |at: usize| {
            fds.get(at)
                .and_then(PollFd::revents)
                .is_some_and(|events| !events.is_empty())
        };
        Ok(Ready {
            socket: ready(0),
            stop: ready(1),
            input: ready(2),
        })
    }

    /// Takes one datagram off the socket into the buffer: its length and
    /// sender, or `None` when there was nothing after all.
    fn receive(&mut self) -> Result<Option<(usize, SocketAddr)>> {
        receive_on(&self.fd, &mut self.buffer)
    }

    /// Waits until `until` for our socket, a stop signal, or one of
    /// `others`; also says which of `others` are readable.
    fn wait_with(&self, others: &[OwnedFd], until: Instant) -> Result<(Ready, Vec<usize>)> {
        let timeout = PollTimeout::try_from(until.saturating_duration_since(Instant::now()))
            .unwrap_or(PollTimeout::MAX);
        let mut fds = vec![
            PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(
            others
                .iter()
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok((Ready::default(), Vec::new())),
            Err(err) => return Err(err).context("poll failed"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|events| !events.is_empty()))
            .collect();
        let others = (2..ready.len()).filter(|&at| ready[at]).map(|at| at - 2);
        let main = Ready {
            socket: ready[0],
            stop: ready[1],
            input: false,
        };
        Ok((main, others.collect()))
    }

    /// Waits until `until` for a datagram or a stop signal.
    fn next(&mut self, until: Instant) -> Result<Arrival> {
        let ready = self.wait(false, Some(until))?;
        if ready.stop {
            self.caught();
            return Ok(Arrival::Stop);
        }
        if !ready.socket {
            return Ok(Arrival::Nothing);
        }
        Ok(match self.receive()? {
            Some((len, from)) => Arrival::Datagram(len, from),
            None => Arrival::Nothing,
        })
    }

    /// Takes the pending stop signal and says so.
    fn caught(&self) {
        let caught = self
            .signals
            .read_signal()
            .ok()
            .flatten()
            .and_then(|info| Signal::try_from(info.ssi_signo as i32).ok());
        if let Some(caught) = caught {
            println!("\ncaught {caught}, quitting...");
        }
    }

    /// Sends a protocol message on our socket.
    fn send(&self, message: &Message, to: SocketAddr) {
        send_on(&self.fd, message, to);
    }
}

// ANCHOR: socket
/// A UDP socket bound to `bind`, non-blocking as in lesson 5: `poll` may
/// say readable for nothing.
fn open_socket(bind: SocketAddr) -> Result<OwnedFd> {
    let fd = socket::socket(
        family(bind),
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("cannot create a UDP socket")?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(bind))
        .with_context(|| format!("cannot bind UDP socket to {bind}"))?;
    Ok(fd)
}
// ANCHOR_END: socket

// ANCHOR: receive
/// Takes one datagram off `fd` into `buffer`: its length and sender, or
/// `None` when there was nothing after all.
fn receive_on(fd: &OwnedFd, buffer: &mut [u8]) -> Result<Option<(usize, SocketAddr)>> {
    match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), buffer) {
        Ok((len, Some(from))) => Ok(to_socket_addr(&from).map(|from| (len, from))),
        // EAGAIN: the readiness was spurious, or the datagram was dropped
        // after `poll` saw it (select(2), BUGS). Wait again.
        Ok((_, None)) | Err(Errno::EAGAIN | Errno::EINTR) => Ok(None),
        Err(err) => Err(err).context("cannot receive"),
    }
}
// ANCHOR_END: receive

/// Sends a protocol message on `fd`; a failure is reported, and nothing
/// stops: the next retry, probe or keepalive goes out anyway.
fn send_on(fd: &OwnedFd, message: &Message, to: SocketAddr) {
    if let Err(err) = socket::sendto(
        fd.as_raw_fd(),
        &message.encode(),
        &SockaddrStorage::from(to),
        MsgFlags::empty(),
    ) {
        eprintln!("warning: cannot send {} to {to}: {err}", message.kind());
    }
}

// ANCHOR: private_endpoint
/// The endpoint the peer reports as private: our address on the local
/// network and our port. Bound to 0.0.0.0, the socket has no single
/// address: `connect` on a second UDP socket (it sends nothing) picks the
/// source address toward the rendezvous, and `getsockname` reads it.
fn private_endpoint(bound: SocketAddr, rendezvous: SocketAddr) -> Result<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    let probe = socket::socket(
        family(rendezvous),
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("cannot create a UDP socket")?;
    socket::connect(probe.as_raw_fd(), &SockaddrStorage::from(rendezvous))
        .with_context(|| format!("no route to the rendezvous {rendezvous}"))?;
    let local: SockaddrStorage =
        socket::getsockname(probe.as_raw_fd()).context("cannot read the local address")?;
    let ip = to_socket_addr(&local).map_or(bound.ip(), |addr| addr.ip());
    Ok(SocketAddr::new(ip, bound.port()))
}
// ANCHOR_END: private_endpoint

// ANCHOR: meet
/// Where the meeting at the rendezvous stands, with our registration's
/// cookie once REGISTERED brought one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// REGISTER, again every RETRY, until REGISTERED.
    Register,
    /// CONNECT, again every RETRY, until WAITING or PEER.
    Connect(Cookie),
    /// The peer has not come: REGISTER again every RETRY, each REGISTERED
    /// followed by a CONNECT. That keeps our registration and our NAT's
    /// mapping alive, registers us with a rendezvous that restarted, and
    /// fetches the introduction again if the one sent to us was lost.
    Waiting(Cookie),
}

/// The meeting: its stage and its clocks.
struct Meeting<'a> {
    args: &'a Args,
    private: SocketAddr,
    stage: Stage,
    last_heard: Instant,
    next_send: Instant,
    /// The rendezvous's second port, and whether it answered our MAPPING.
    second: SocketAddr,
    mapped: bool,
    first_public: Option<SocketAddr>,
}

/// Phase 1: registers and asks for the peer until the rendezvous sends the
/// peer's endpoints; `None` when a stop signal came first.
fn meet(sock: &mut Socket, args: &Args, private: SocketAddr) -> Result<Option<PeerInfo>> {
    let start = Instant::now();
    let give_up = start + Duration::from_millis(args.wait_ms);
    let port = args
        .second_port
        .unwrap_or(args.rendezvous.port().wrapping_add(1));
    let mut meeting = Meeting {
        args,
        private,
        stage: Stage::Register,
        last_heard: start,
        next_send: start,
        second: SocketAddr::new(args.rendezvous.ip(), port),
        mapped: false,
        first_public: None,
    };
    loop {
        if Instant::now() >= meeting.next_send {
            meeting.send_request(sock);
        }
        meeting.check_time(give_up)?;
        let (len, from) = match sock.next(meeting.next_send.min(give_up))? {
            Arrival::Datagram(len, from) => (len, from),
            Arrival::Nothing => continue,
            Arrival::Stop => return Ok(None),
        };
        if from != args.rendezvous && from != meeting.second {
            eprintln!(
                "warning: ignored a {len}-byte datagram from {from}: not the rendezvous {}",
                args.rendezvous
            );
            continue;
        }
        meeting.last_heard = Instant::now();
        if let Some(peer) = meeting.answer(sock, &sock.buffer[..len])? {
            return Ok(Some(peer));
        }
    }
}

impl Meeting<'_> {
    /// The request of this stage, sent now, and the time of the next one.
    fn send_request(&mut self, sock: &Socket) {
        let register = |cookie| Message::Register {
            name: self.args.name.clone(),
            private: self.private,
            cookie,
        };
        let (request, every) = match self.stage {
            Stage::Register => (register(None), RETRY),
            Stage::Connect(cookie) => (self.connect(sock, cookie), RETRY),
            Stage::Waiting(cookie) => (register(Some(cookie)), RETRY),
        };
        sock.send(&request, self.args.rendezvous);
        self.next_send = Instant::now() + every;
    }

    // ANCHOR: mapping
    /// The CONNECT request; until the second port answered, a MAPPING goes
    /// there first, so the rendezvous knows our mapping when it introduces.
    fn connect(&self, sock: &Socket, cookie: Cookie) -> Message {
        if !self.mapped {
            let name = self.args.name.clone();
            sock.send(&Message::Mapping { name, cookie }, self.second);
        }
        Message::Connect {
            name: self.args.name.clone(),
            peer: self.args.peer_name.clone(),
            cookie,
        }
    }

    /// MAPPED: what the second port saw, compared with what the first saw.
    fn mapped(&mut self, public: SocketAddr) {
        if self.mapped {
            return;
        }
        self.mapped = true;
        let same = Some(public) == self.first_public;
        println!(
            "the second port sees us at {public}: {}",
            if same {
                "the same port, our NAT keeps one port for every destination"
            } else {
                "another port, our NAT gives each destination its own (the hard side)"
            }
        );
    }
    // ANCHOR_END: mapping

    /// Gives up when the rendezvous is silent too long, or the peer does
    /// not come in time.
    fn check_time(&self, give_up: Instant) -> Result<()> {
        let now = Instant::now();
        let silent_for = now - self.last_heard;
        if silent_for >= RENDEZVOUS_SILENCE || (now >= give_up && self.stage == Stage::Register) {
            bail!(
                "no answer from the rendezvous at {} for {}: is lesson7-rendezvous running there, and can UDP reach it?",
                self.args.rendezvous,
                show_ms(silent_for.as_millis() as u64)
            );
        }
        if now >= give_up {
            bail!(
                "{} did not come to the rendezvous within {}",
                self.args.peer_name,
                show_ms(self.args.wait_ms)
            );
        }
        Ok(())
    }

    /// One answer from the rendezvous: the peer's endpoints at last, or a
    /// step of the meeting.
    fn answer(&mut self, sock: &Socket, datagram: &[u8]) -> Result<Option<PeerInfo>> {
        let args = self.args;
        match protocol::parse(datagram) {
            Ok(Message::Registered { public, cookie, .. }) => {
                self.first_public.get_or_insert(public);
                self.stage = match self.stage {
                    Stage::Register => {
                        println!(
                            "registered as {} at {}; it sees us at {public} (our public endpoint)",
                            args.name, args.rendezvous
                        );
                        Stage::Connect(cookie)
                    }
                    Stage::Connect(_) => Stage::Connect(cookie),
                    Stage::Waiting(_) => Stage::Waiting(cookie),
                };
                sock.send(&self.connect(sock, cookie), args.rendezvous);
            }
            Ok(Message::Mapped { public, .. }) => self.mapped(public),
            Ok(Message::Waiting { peer }) if peer == args.peer_name => {
                if let Stage::Connect(cookie) = self.stage {
                    println!("waiting for {peer} to come to the rendezvous...");
                    self.stage = Stage::Waiting(cookie);
                    self.next_send = Instant::now() + RETRY;
                }
            }
            Ok(Message::Waiting { .. }) => {}
            Ok(Message::Peer {
                peer,
                public,
                private,
                token,
                role,
            }) if peer == args.peer_name => {
                println!(
                    "{peer} is at public {public}, private {private}; our role: {}",
                    role.name()
                );
                let (Stage::Connect(cookie) | Stage::Waiting(cookie)) = self.stage else {
                    return Ok(None);
                };
                let name = peer;
                return Ok(Some(PeerInfo {
                    name,
                    public,
                    private,
                    token,
                    role,
                    cookie,
                }));
            }
            Ok(Message::Error { reason }) => bail!("the rendezvous refused: {reason}"),
            Ok(other) => eprintln!(
                "warning: ignored an unexpected {} from the rendezvous",
                other.kind()
            ),
            Err(reason) => {
                eprintln!("warning: ignored a bad datagram from the rendezvous: {reason}")
            }
        }
        Ok(None)
    }
}
// ANCHOR_END: meet

// ANCHOR: punch
/// Which way found the path: what `path:` says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Direct,
    Birthday,
    Relay,
}

/// The chat's session, once a way was found: the peer, the path, whether
/// the peer knows the path too (it answered us, or talks), and the relay's
/// size limit when the path is the relay.
struct Session {
    peer: PeerInfo,
    path: SocketAddr,
    peer_knows: bool,
    relay_max: Option<usize>,
}

/// Way 1: probes the peer's endpoints until a probe or an answer with the
/// session's token arrives, within --punch-timeout-ms.
fn punch(sock: &mut Socket, args: &Args, peer: &PeerInfo, own: SocketAddr) -> Result<Outcome> {
    let endpoints = endpoints_to_probe(peer, own);
    let start = Instant::now();
    let give_up = start + Duration::from_millis(args.punch_timeout_ms);
    let mut next_probe = start + Duration::from_millis(args.probe_delay_ms);
    let mut first_round = args.first_ttl > 0;
    let mut own_probe_seen = false;
    let probe = probe_of(args, peer);
    loop {
        let now = Instant::now();
        if now >= give_up {
            println!("{}", no_answer(args, peer, &endpoints));
            return Ok(Outcome::Failed);
        }
        if now >= next_probe {
            if first_round {
                short_lived_probes(sock, args, &probe, &endpoints)?;
                first_round = false;
            } else {
                for &to in &endpoints {
                    sock.send(&probe, to);
                }
            }
            next_probe = now + PROBE_INTERVAL;
        }
        let (len, from) = match sock.next(next_probe.min(give_up))? {
            Arrival::Datagram(len, from) => (len, from),
            Arrival::Nothing => continue,
            Arrival::Stop => return Ok(Outcome::Stop),
        };
        if let Some(outcome) = answer_probe(sock, args, peer, len, from, &mut own_probe_seen) {
            return Ok(outcome);
        }
    }
}

/// A datagram in sock's buffer, read while punching: the peer's probe
/// (answered where it came from) or answer ends this way; else `None`.
fn answer_probe(
    sock: &Socket,
    args: &Args,
    peer: &PeerInfo,
    len: usize,
    from: SocketAddr,
    own_probe_seen: &mut bool,
) -> Option<Outcome> {
    match punch_reply(args, peer, &sock.buffer[..len], from, own_probe_seen)? {
        Reply::Ack(way) => {
            sock.send(&ack_of(args, peer), from);
            Some(Outcome::Found(way, from, None, false))
        }
        Reply::Found => Some(Outcome::Found(Way::Direct, from, None, true)),
    }
}

fn probe_of(args: &Args, peer: &PeerInfo) -> Message {
    Message::Punch {
        from: args.name.clone(),
        to: peer.name.clone(),
        token: peer.token,
    }
}

/// The birthday punch's probe, from either side: BIRTHDAY, not PUNCH, so
/// the peer that gets one knows which way found the path.
fn birthday_probe(args: &Args, peer: &PeerInfo) -> Message {
    Message::Birthday {
        from: args.name.clone(),
        to: peer.name.clone(),
        token: peer.token,
    }
}

fn ack_of(args: &Args, peer: &PeerInfo) -> Message {
    Message::PunchAck {
        from: args.name.clone(),
        to: peer.name.clone(),
        token: peer.token,
    }
}

// ANCHOR: first_ttl
/// The first round of probes, with a TTL that takes them out of our own
/// NAT (which opens its mapping and admits the peer's answer) and lets them
/// die before the peer's: a NAT without a firewall would otherwise answer
/// an early probe itself, and keep a conntrack entry that moves its peer's
/// mapping to another port.
fn short_lived_probes(
    sock: &Socket,
    args: &Args,
    probe: &Message,
    endpoints: &[SocketAddr],
) -> Result<()> {
    let usual = get_ttl(&sock.fd)?;
    set_ttl(&sock.fd, u32::from(args.first_ttl))?;
    for &to in endpoints {
        sock.send(probe, to);
    }
    set_ttl(&sock.fd, usual)?;
    println!(
        "first probes sent with TTL {}: they open our NAT and expire before the peer's",
        args.first_ttl
    );
    Ok(())
}

/// The TTL (IPv4) or hop limit (IPv6) of what `fd` sends.
fn get_ttl(fd: &OwnedFd) -> Result<u32> {
    let ipv4 = matches!(
        to_socket_addr(&socket::getsockname::<SockaddrStorage>(fd.as_raw_fd())?),
        Some(SocketAddr::V4(_))
    );
    let ttl = if ipv4 {
        socket::getsockopt(fd, sockopt::Ipv4Ttl).map(|ttl| ttl as u32)
    } else {
        socket::getsockopt(fd, sockopt::Ipv6Ttl).map(|ttl| ttl as u32)
    };
    ttl.context("cannot read the socket's TTL")
}

/// Sets the TTL (IPv4) or hop limit (IPv6) of what `fd` sends.
fn set_ttl(fd: &OwnedFd, ttl: u32) -> Result<()> {
    let ipv4 = matches!(
        to_socket_addr(&socket::getsockname::<SockaddrStorage>(fd.as_raw_fd())?),
        Some(SocketAddr::V4(_))
    );
    let set = if ipv4 {
        socket::setsockopt(fd, sockopt::Ipv4Ttl, &(ttl as i32))
    } else {
        socket::setsockopt(fd, sockopt::Ipv6Ttl, &(ttl as i32))
    };
    set.with_context(|| format!("cannot set the socket's TTL to {ttl}"))
}
// ANCHOR_END: first_ttl

/// What a datagram received while punching asks of us.
enum Reply {
    /// The peer's probe: answer it where it came from (our answer proves
    /// the path to the peer), and the path is found, by this way (a
    /// BIRTHDAY probe was the birthday punch's).
    Ack(Way),
    /// The peer's answer to our probe: the path is found, both know it.
    Found,
}

/// Reads one datagram received while punching; anything but the peer's
/// probe or answer is logged (or, for our own probe, noted once).
fn punch_reply(
    args: &Args,
    peer: &PeerInfo,
    datagram: &[u8],
    from: SocketAddr,
    own_probe_seen: &mut bool,
) -> Option<Reply> {
    match protocol::parse(datagram) {
        Ok(Message::Punch {
            from: who,
            to,
            token,
        }) if who == peer.name && to == args.name && token == peer.token => {
            return Some(Reply::Ack(Way::Direct));
        }
        Ok(Message::Birthday {
            from: who,
            to,
            token,
        }) if who == peer.name && to == args.name && token == peer.token => {
            return Some(Reply::Ack(Way::Birthday));
        }
        Ok(Message::PunchAck {
            from: who,
            to,
            token,
        }) if who == peer.name && to == args.name && token == peer.token => {
            return Some(Reply::Found);
        }
        // Our own probe, back to us: the peer's private endpoint is
        // another of our own addresses (the same range at both ends).
        Ok(
            Message::Punch {
                from: who, token, ..
            }
            | Message::Birthday {
                from: who, token, ..
            },
        ) if who == args.name && token == peer.token => {
            if !*own_probe_seen {
                *own_probe_seen = true;
                println!(
                    "ignored our own probe, back from {from}: {}'s private endpoint is an address of this host",
                    peer.name
                );
            }
        }
        // Repeats of the rendezvous's answer.
        _ if from == args.rendezvous => {}
        Ok(other) => eprintln!(
            "warning: ignored a {} from {from}: not from {} in this session",
            other.kind(),
            peer.name
        ),
        Err(reason) => eprintln!(
            "warning: ignored a {}-byte datagram from {from}: {reason}",
            datagram.len()
        ),
    }
    None
}

/// The peer's endpoints worth probing: its public one, and its private one
/// unless that is the same or our own.
fn endpoints_to_probe(peer: &PeerInfo, own: SocketAddr) -> Vec<SocketAddr> {
    if peer.private == own {
        // Both homes may use the same private range, even the same
        // address: a probe to that endpoint would only reach ourselves.
        println!(
            "probing {} at {} (public); its private endpoint {} is our own (same private addresses at both ends)",
            peer.name, peer.public, peer.private
        );
        vec![peer.public]
    } else if peer.private == peer.public {
        println!(
            "probing {} at {} (public and private: no NAT between)",
            peer.name, peer.public
        );
        vec![peer.public]
    } else {
        println!(
            "probing {} at {} (public) and {} (private)",
            peer.name, peer.public, peer.private
        );
        vec![peer.public, peer.private]
    }
}

/// What to say when no probe was answered in time, with the likely causes
/// in RFC 4787's terms (the chapter, "The NATs, by RFC 4787's terms").
fn no_answer(args: &Args, peer: &PeerInfo, endpoints: &[SocketAddr]) -> String {
    let tried: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    let next = match peer.role {
        Role::Spray | Role::Scan if args.birthday_ms > 0 => "the birthday punch",
        _ => "the relay",
    };
    format!(
        "no direct answer from {} within {} at {}: one NAT gives each destination its own port, \
         or admits only the endpoints it sent to, or the probes were lost; next: {next}",
        peer.name,
        show_ms(args.punch_timeout_ms),
        tried.join(" or "),
    )
}

/// Prints the way that won and the path; the session on it.
fn found(
    way: Way,
    peer: PeerInfo,
    path: SocketAddr,
    peer_knows: bool,
    relay_max: Option<usize>,
) -> Session {
    let name = &peer.name;
    match way {
        Way::Direct => {
            let kind = if path == peer.private {
                "private"
            } else if path == peer.public {
                "public"
            } else {
                "unexpected"
            };
            println!("path: direct {path} ({kind}): talking to {name} directly");
        }
        Way::Birthday => println!("path: birthday {path}: talking to {name} directly"),
        Way::Relay => println!("path: relay {path}: talking to {name} through the relay"),
    }
    Session {
        peer,
        path,
        peer_knows,
        relay_max,
    }
}
// ANCHOR_END: punch

// ANCHOR: birthday
/// Way 2, against a NAT that gives each destination its own port: the
/// rendezvous told us our side (`role`); within --birthday-ms.
fn birthday(sock: &mut Socket, args: &Args, peer: &PeerInfo) -> Result<Outcome> {
    let why = match peer.role {
        _ if args.birthday_ms == 0 => "skipped (--birthday-ms 0)",
        Role::Spray => return spray(sock, args, peer),
        Role::Scan => return scan(sock, args, peer),
        Role::Punch => {
            "not for these NATs: both keep one port per socket, as the direct punch needs"
        }
        Role::Relay => "hopeless: both NATs give each destination its own port",
    };
    println!("birthday punch: {why}");
    Ok(Outcome::Failed)
}

/// The hard side: k sockets, each sending probes to the peer's public
/// endpoint, so that our NAT opens k ports for it. The probes go with the
/// first TTL: they need only open our NAT. The first socket a probe of the
/// peer reaches answers it and carries the chat.
fn spray(sock: &mut Socket, args: &Args, peer: &PeerInfo) -> Result<Outcome> {
    let mut sockets = Vec::new();
    for _ in 0..args.birthday_sockets {
        let fd = open_socket(SocketAddr::new(args.bind.ip(), 0))?;
        if args.first_ttl > 0 {
            set_ttl(&fd, u32::from(args.first_ttl))?;
        }
        sockets.push(fd);
    }
    println!(
        "birthday punch, hard side: {} sockets send to {}, each opening a port of our NAT",
        sockets.len(),
        peer.public
    );
    let give_up = Instant::now() + Duration::from_millis(args.birthday_ms);
    let probe = birthday_probe(args, peer);
    let mut next_spray = Instant::now();
    let mut own_probe_seen = false;
    loop {
        let now = Instant::now();
        if now >= give_up {
            println!(
                "birthday punch: no probe of {} reached our ports",
                peer.name
            );
            return Ok(Outcome::Failed);
        }
        if now >= next_spray {
            for fd in &sockets {
                send_on(fd, &probe, peer.public);
            }
            next_spray = now + RETRY;
        }
        let (ready, others) = sock.wait_with(&sockets, next_spray.min(give_up))?;
        if ready.stop {
            sock.caught();
            return Ok(Outcome::Stop);
        }
        for at in others {
            let Some((len, from)) = receive_on(&sockets[at], &mut sock.buffer)? else {
                continue;
            };
            let datagram = &sock.buffer[..len];
            // A way is named by the probe that met: ours (BIRTHDAY), or the
            // peer's, which may be its direct PUNCH aimed, by chance, at the
            // port our NAT gave this socket.
            let (way, knows) = match punch_reply(args, peer, datagram, from, &mut own_probe_seen) {
                None => continue,
                Some(Reply::Found) => (Way::Birthday, true),
                Some(Reply::Ack(way)) => (way, false),
            };
            let fd = sockets.swap_remove(at);
            set_ttl(&fd, get_ttl(&sock.fd)?)?;
            // The easy side's probes do not come back to this port: answer
            // three times, so that one lost answer does not lose the path.
            for _ in 0..3 {
                send_on(&fd, &ack_of(args, peer), from);
            }
            return Ok(Outcome::Found(way, from, Some(fd), knows));
        }
        if ready.socket
            && let Some((len, from)) = sock.receive()?
            && let Some(late) = answer_probe(sock, args, peer, len, from, &mut own_probe_seen)
        {
            return Ok(late);
        }
    }
}

/// The easy side: probes to random ports of the peer's public address,
/// SCAN_BATCH every SCAN_TICK, n in all; each probe opens our NAT for that
/// port. A probe that meets one of the peer's k open ports is answered.
fn scan(sock: &mut Socket, args: &Args, peer: &PeerInfo) -> Result<Outcome> {
    let (low, high) = args.port_range;
    let ip = peer.public.ip();
    let probes = args.birthday_probes as usize;
    println!("birthday punch, easy side: {probes} probes to random ports {low}-{high} of {ip}");
    let mut random = protocol::random_u64().context("cannot read /dev/urandom")? | 1;
    let give_up = Instant::now() + Duration::from_millis(args.birthday_ms);
    let probe = birthday_probe(args, peer);
    let mut sent: Vec<u16> = Vec::with_capacity(probes);
    let mut next_batch = Instant::now();
    let mut own_probe_seen = false;
    loop {
        let now = Instant::now();
        if now >= give_up {
            let count = sent.len();
            println!("birthday punch: none of {count} probes met an open port of {ip}");
            return Ok(Outcome::Failed);
        }
        if now >= next_batch && sent.len() < probes {
            for _ in 0..SCAN_BATCH.min(probes - sent.len()) {
                // xorshift64: fast, and random enough to pick ports.
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                let port = low + (random % (u64::from(high - low) + 1)) as u16;
                sock.send(&probe, SocketAddr::new(ip, port));
                sent.push(port);
            }
            next_batch = now + SCAN_TICK;
        }
        let until = if sent.len() < probes {
            next_batch.min(give_up)
        } else {
            give_up
        };
        let (len, from) = match sock.next(until)? {
            Arrival::Datagram(len, from) => (len, from),
            Arrival::Nothing => continue,
            Arrival::Stop => return Ok(Outcome::Stop),
        };
        let Some(Outcome::Found(way, path, fd, knows)) =
            answer_probe(sock, args, peer, len, from, &mut own_probe_seen)
        else {
            continue;
        };
        let guessed = (path.ip() == ip)
            .then(|| sent.iter().position(|&port| port == path.port()))
            .flatten();
        if let Some(at) = guessed {
            let (port, count) = (path.port(), sent.len());
            println!(
                "birthday punch: port {port} answered probe {} of {count}",
                at + 1
            );
        }
        // An answer to one of our guesses is the birthday punch's, any
        // other answer is to a direct probe; a probe says which it is.
        let way = match (knows, guessed) {
            (true, Some(_)) => Way::Birthday,
            (true, None) => Way::Direct,
            (false, _) => way,
        };
        return Ok(Outcome::Found(way, path, fd, knows));
    }
}
// ANCHOR_END: birthday

// ANCHOR: relay
/// Way 3: asks the rendezvous to relay the session (ALLOCATE, every RETRY)
/// until it says ALLOCATED: both peers asked. Within RELAY_WAIT.
fn relay(sock: &mut Socket, args: &Args, peer: &PeerInfo) -> Result<Outcome> {
    println!("asking the relay at {} to carry the chat", args.rendezvous);
    let request = Message::Allocate {
        name: args.name.clone(),
        peer: peer.name.clone(),
        token: peer.token,
        cookie: peer.cookie,
    };
    let give_up = Instant::now() + RELAY_WAIT;
    let mut next_ask = Instant::now();
    let (mut said_waiting, mut own_probe_seen) = (false, false);
    loop {
        let now = Instant::now();
        if now >= give_up {
            return Ok(Outcome::Failed);
        }
        if now >= next_ask {
            sock.send(&request, args.rendezvous);
            next_ask = now + RETRY;
        }
        let (len, from) = match sock.next(next_ask.min(give_up))? {
            Arrival::Datagram(len, from) => (len, from),
            Arrival::Nothing => continue,
            Arrival::Stop => return Ok(Outcome::Stop),
        };
        if from != args.rendezvous {
            match answer_probe(sock, args, peer, len, from, &mut own_probe_seen) {
                Some(late) => return Ok(late),
                None => continue,
            }
        }
        match protocol::parse(&sock.buffer[..len]) {
            Ok(Message::Allocated { token, max, .. }) if token == peer.token => {
                sock.relay_max = Some(max);
                return Ok(Outcome::Found(Way::Relay, from, None, true));
            }
            Ok(Message::Waiting { .. }) if !said_waiting => {
                said_waiting = true;
                println!("waiting for {} to ask the relay too...", peer.name);
            }
            Ok(Message::Error { reason }) => bail!("the relay refused: {reason}"),
            _ => {}
        }
    }
}
// ANCHOR_END: relay

// ANCHOR: chat
/// Phase 3: the chat. One `poll` waits for a line typed, a datagram, a
/// stop signal, or the time of the next keepalive, whichever comes first.
fn chat(sock: &mut Socket, args: &Args, mut session: Session) -> Result<()> {
    println!("Ready: type a message and press Enter to send it; 'quit' exits.");
    prompt();
    let keepalive = (args.keepalive_ms > 0).then(|| Duration::from_millis(args.keepalive_ms));
    let mut last_sent = Instant::now();
    let mut typed = LineReader::default();
    // Our answer to the peer's probe may be lost, and the peer may have
    // moved on to its next way: answer again until it shows it knows the
    // path, for as long as its next ways may take.
    let answer_until = Instant::now() + Duration::from_millis(args.birthday_ms) + RELAY_WAIT;
    let mut next_answer = Instant::now() + PROBE_INTERVAL;
    loop {
        let answering = !session.peer_knows && Instant::now() < answer_until;
        // Wake for the next keepalive or the next answer, whichever is first.
        let due = [
            keepalive.map(|every| last_sent + every),
            answering.then_some(next_answer),
        ];
        let ready = sock.wait(true, due.into_iter().flatten().min())?;
        if ready.stop {
            sock.caught();
            session.say_bye(sock, args);
            return Ok(());
        }
        if ready.socket && session.receive(sock, args)? == Heard::PeerLeft {
            return Ok(());
        }
        if ready.input {
            typed
                .read_available()
                .context("cannot read standard input")?;
            while let Some(line) = typed.next_line() {
                if line == b"quit" {
                    println!("[main] quitting...");
                    session.say_bye(sock, args);
                    return Ok(());
                }
                if !line.is_empty() {
                    session.send_chat(sock, &line);
                    last_sent = Instant::now();
                }
                if !typed.at_end {
                    prompt();
                }
            }
            if typed.at_end {
                println!("\n[main] end of input, quitting...");
                session.say_bye(sock, args);
                return Ok(());
            }
        }
        if answering && Instant::now() >= next_answer {
            sock.send(&ack_of(args, &session.peer), session.path);
            next_answer = Instant::now() + PROBE_INTERVAL;
        }
        // ANCHOR: keepalive
        // A NAT forgets a mapping that carried nothing for a while (Linux
        // conntrack: nf_conntrack_udp_timeout_stream, 120 s by default, often
        // 30 s or less in home routers): a datagram now and then keeps it.
        if let Some(every) = keepalive
            && last_sent.elapsed() >= every
        {
            let message = Message::Keepalive {
                from: args.name.clone(),
                to: session.peer.name.clone(),
                token: session.peer.token,
            };
            sock.send(&message, session.path);
            last_sent = Instant::now();
        }
        // ANCHOR_END: keepalive
    }
}
// ANCHOR_END: chat

/// What a datagram received in the chat means for it.
#[derive(PartialEq, Eq)]
enum Heard {
    /// Go on chatting.
    Chatting,
    /// The peer said BYE.
    PeerLeft,
}

impl Session {
    // ANCHOR: receive_chat
    /// Handles one datagram during the chat.
    fn receive(&mut self, sock: &mut Socket, args: &Args) -> Result<Heard> {
        let Some((len, from)) = sock.receive()? else {
            return Ok(Heard::Chatting);
        };
        let peer = &self.peer;
        // The peer's datagrams come from one of its endpoints; the token is
        // what proves they are its own.
        let from_peer = from == self.path || from == peer.public || from == peer.private;
        let message = protocol::parse(&sock.buffer[..len]);
        match message {
            Ok(Message::Chat { token, text }) if from_peer && token == peer.token => {
                self.peer_knows = true;
                // Exactly the bytes sent; not UTF-8 shows as U+FFFD.
                println!("\n[from {}] {}", peer.name, String::from_utf8_lossy(&text));
                prompt();
            }
            Ok(Message::Keepalive {
                from: who, token, ..
            }) if from_peer && who == peer.name && token == peer.token => {
                self.peer_knows = true;
            }
            // The peer answers our probe until we show we know the path: a
            // keepalive does (one for each answer: never more than we get).
            Ok(Message::PunchAck {
                from: who, token, ..
            }) if from_peer && who == peer.name && token == peer.token => {
                self.peer_knows = true;
                let keepalive = Message::Keepalive {
                    from: args.name.clone(),
                    to: peer.name.clone(),
                    token: peer.token,
                };
                sock.send(&keepalive, from);
            }
            // A probe from a peer that may not have heard our answer yet (a
            // peer that answered us, or talks to us, needs no answer).
            Ok(
                Message::Punch {
                    from: who, token, ..
                }
                | Message::Birthday {
                    from: who, token, ..
                },
            ) if (who == peer.name || who == args.name) && token == peer.token => {
                if who == peer.name && !self.peer_knows {
                    let ack = Message::PunchAck {
                        from: args.name.clone(),
                        to: peer.name.clone(),
                        token: peer.token,
                    };
                    sock.send(&ack, from);
                }
            }
            Ok(Message::Bye {
                from: who, token, ..
            }) if who == peer.name && token == peer.token => {
                println!("\n{} left the chat; bye.", peer.name);
                return Ok(Heard::PeerLeft);
            }
            _ if from == args.rendezvous => {}
            _ => eprintln!(
                "warning: dropped a {len}-byte datagram from {from}: not from {} in this session",
                peer.name
            ),
        }
        Ok(Heard::Chatting)
    }
    // ANCHOR_END: receive_chat

    // ANCHOR: send_chat
    /// Sends one typed line to the peer; reports only failures.
    fn send_chat(&self, sock: &Socket, line: &[u8]) {
        let message = Message::Chat {
            token: self.peer.token,
            text: line.to_vec(),
        };
        let datagram = message.encode();
        if let Some(max) = self.relay_max
            && datagram.len() > max
        {
            eprintln!(
                "error: cannot send to {}: the relay forwards at most {max} bytes; the line has {} and the header {} more; nothing was sent",
                self.peer.name,
                line.len(),
                datagram.len() - line.len()
            );
            return;
        }
        let to = SockaddrStorage::from(self.path);
        match socket::sendto(sock.fd.as_raw_fd(), &datagram, &to, MsgFlags::empty()) {
            Ok(_) => {}
            Err(Errno::EMSGSIZE) => eprintln!(
                "error: cannot send to {}: {}: a UDP datagram holds at most {} bytes over {}; the line has {} and the header {} more; nothing was sent",
                self.peer.name,
                Errno::EMSGSIZE,
                if self.path.is_ipv4() {
                    "65,507"
                } else {
                    "65,527"
                },
                if self.path.is_ipv4() { "IPv4" } else { "IPv6" },
                line.len(),
                datagram.len() - line.len()
            ),
            // The socket is non-blocking: a full send buffer is EAGAIN.
            Err(err) => eprintln!(
                "error: cannot send to {} at {}: {err}; the line was not sent",
                self.peer.name, self.path
            ),
        }
    }
    // ANCHOR_END: send_chat

    fn say_bye(&self, sock: &Socket, args: &Args) {
        let bye = Message::Bye {
            from: args.name.clone(),
            to: self.peer.name.clone(),
            token: self.peer.token,
        };
        sock.send(&bye, self.path);
    }
}

// ANCHOR: line_reader
/// What was typed so far, cut into lines: lesson 5's reader, as it is.
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
