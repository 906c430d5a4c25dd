//! Practice, lesson 7: this is lesson 6's peer, renamed lesson7-peer.
//!
//! Given: the crate's library, lesson 7's whole (its `protocol` module
//! knows MAPPING, MAPPED, the role in PEER, BIRTHDAY, ALLOCATE and
//! ALLOCATED: parsing is not this lesson's subject), and lesson 6's peer on
//! top of it, changed only to compile: it ignores the role that PEER
//! brings, punches directly, and gives up when no probe is answered. Yours:
//! lesson 7's change. MAPPING to the rendezvous's second port (the chapter,
//! "Who is hard?"); the three ways, best first, each within its bound, and
//! the line that names the one that won (the chapter, "Three ways, best
//! first"): the direct punch, its first probes short-lived (the chapter,
//! "The first probe that must not arrive"), the birthday punch (the
//! chapter, "Birthday punching"), the relay (the chapter, "The relay");
//! and their command-line options (`lesson7-peer --help` in lessons/ lists
//! them). Check your work with `just check 7`, or let `just practice 7`
//! check it on every save (stages 6 to 8 run in network namespaces: root or
//! user namespaces). The solution is lesson 7 itself.

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
use nix::sys::socket::{self, MsgFlags, SockFlag, SockType, SockaddrStorage};
use nix::unistd;

use lesson7_nat_traversal::protocol::{self, Cookie, Message, Token};
use lesson7_nat_traversal::{family, show_ms, to_socket_addr};

/// How often requests to the rendezvous are repeated: until it answers
/// (UDP may lose a request or its answer), and while we wait for the peer.
const RETRY: Duration = Duration::from_secs(1);
/// How long the rendezvous may stay silent before we give up on it: eight
/// requests, or their answers, lost in a row.
const RENDEZVOUS_SILENCE: Duration = Duration::from_secs(8);
/// How often probes go out while punching.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

const PROMPT: &str = "Enter message ('quit' to exit): ";

/// A UDP chat between two peers behind NATs: they meet at a rendezvous
/// server, punch holes in their NATs, then talk directly.
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

    /// Give up punching after this long without an answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    punch_timeout_ms: u64,

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

/// What the rendezvous told us about the peer.
struct PeerInfo {
    name: String,
    public: SocketAddr,
    private: SocketAddr,
    token: Token,
}

/// The one UDP socket, the stop signals (SIGINT, SIGTERM) as a descriptor,
/// and a buffer that holds any datagram whole.
struct Socket {
    fd: OwnedFd,
    signals: SignalFd,
    buffer: Vec<u8>,
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
    let Some(session) = punch(&mut sock, args, peer, private)? else {
        return Ok(());
    };
    chat(&mut sock, args, session)
}

impl Socket {
    /// Turns the stop signals into a descriptor, and binds the socket.
    fn open(bind: SocketAddr) -> Result<Socket> {
        // Ctrl+C and SIGTERM become a descriptor that `poll` waits on, as in
        // lesson 5: blocked, a signal stays pending until we read it.
        let stop_signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
        stop_signals
            .thread_block()
            .context("cannot block SIGINT and SIGTERM")?;
        let signals = SignalFd::with_flags(&stop_signals, SfdFlags::SFD_CLOEXEC)
            .context("cannot create a signalfd for SIGINT and SIGTERM")?;
        // One socket for everything: the hole a NAT opens is for this socket's
        // port, so the rendezvous, the probes and the chat must all use it.
        // Non-blocking, as in lesson 5: `poll` may say readable for nothing.
        let fd = socket::socket(
            family(bind),
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("cannot create a UDP socket")?;
        socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(bind))
            .with_context(|| format!("cannot bind UDP socket to {bind}"))?;
        let buffer = vec![0u8; 65_536];
        Ok(Socket {
            fd,
            signals,
            buffer,
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
        match socket::recvfrom::<SockaddrStorage>(self.fd.as_raw_fd(), &mut self.buffer) {
            Ok((len, Some(from))) => Ok(to_socket_addr(&from).map(|from| (len, from))),
            // EAGAIN: the readiness was spurious, or the datagram was
            // dropped after `poll` saw it (select(2), BUGS). Wait again.
            Ok((_, None)) | Err(Errno::EAGAIN | Errno::EINTR) => Ok(None),
            Err(err) => Err(err).context("cannot receive"),
        }
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

    /// Sends a protocol message; a failure is reported, and nothing stops:
    /// the next retry, probe or keepalive goes out anyway.
    fn send(&self, message: &Message, to: SocketAddr) {
        if let Err(err) = socket::sendto(
            self.fd.as_raw_fd(),
            &message.encode(),
            &SockaddrStorage::from(to),
            MsgFlags::empty(),
        ) {
            eprintln!("warning: cannot send {} to {to}: {err}", message.kind());
        }
    }
}

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
}

/// Phase 1: registers and asks for the peer until the rendezvous sends the
/// peer's endpoints; `None` when a stop signal came first.
fn meet(sock: &mut Socket, args: &Args, private: SocketAddr) -> Result<Option<PeerInfo>> {
    let start = Instant::now();
    let give_up = start + Duration::from_millis(args.wait_ms);
    let mut meeting = Meeting {
        args,
        private,
        stage: Stage::Register,
        last_heard: start,
        next_send: start,
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
        if from != args.rendezvous {
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
            Stage::Connect(cookie) => (self.connect(cookie), RETRY),
            Stage::Waiting(cookie) => (register(Some(cookie)), RETRY),
        };
        sock.send(&request, self.args.rendezvous);
        self.next_send = Instant::now() + every;
    }

    fn connect(&self, cookie: Cookie) -> Message {
        Message::Connect {
            name: self.args.name.clone(),
            peer: self.args.peer_name.clone(),
            cookie,
        }
    }

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
                sock.send(&self.connect(cookie), args.rendezvous);
            }
            Ok(Message::Waiting { peer }) if peer == args.peer_name => {
                if let Stage::Connect(cookie) = self.stage {
                    println!("waiting for {peer} to come to the rendezvous...");
                    self.stage = Stage::Waiting(cookie);
                    self.next_send = Instant::now() + RETRY;
                }
            }
            Ok(Message::Waiting { .. }) => {}
            // Lesson 6 knows no roles: the role PEER brings is ignored.
            Ok(Message::Peer {
                peer,
                public,
                private,
                token,
                ..
            }) if peer == args.peer_name => {
                println!("{peer} is at public {public}, private {private}");
                let name = peer;
                return Ok(Some(PeerInfo {
                    name,
                    public,
                    private,
                    token,
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

/// The chat's session, once the punch found a path: the peer, the path,
/// and whether the peer knows the path too (it answered us, or talks).
struct Session {
    peer: PeerInfo,
    path: SocketAddr,
    peer_knows: bool,
}

/// Phase 2: probes the peer's endpoints until a probe or an answer with
/// the session's token arrives; `None` when a stop signal came first.
fn punch(
    sock: &mut Socket,
    args: &Args,
    peer: PeerInfo,
    own: SocketAddr,
) -> Result<Option<Session>> {
    let endpoints = endpoints_to_probe(&peer, own);
    let start = Instant::now();
    let give_up = start + Duration::from_millis(args.punch_timeout_ms);
    let mut next_probe = start + Duration::from_millis(args.probe_delay_ms);
    let mut own_probe_seen = false;
    let probe = Message::Punch {
        from: args.name.clone(),
        to: peer.name.clone(),
        token: peer.token,
    };
    loop {
        let now = Instant::now();
        if now >= give_up {
            bail!(no_answer(args, &peer, &endpoints));
        }
        if now >= next_probe {
            for &to in &endpoints {
                sock.send(&probe, to);
            }
            next_probe = now + PROBE_INTERVAL;
        }
        let (len, from) = match sock.next(next_probe.min(give_up))? {
            Arrival::Datagram(len, from) => (len, from),
            Arrival::Nothing => continue,
            Arrival::Stop => return Ok(None),
        };
        let datagram = &sock.buffer[..len];
        match punch_reply(args, &peer, datagram, from, &mut own_probe_seen) {
            Some(Reply::Ack) => {
                let ack = Message::PunchAck {
                    from: args.name.clone(),
                    to: peer.name.clone(),
                    token: peer.token,
                };
                sock.send(&ack, from);
                return Ok(Some(found(peer, from, false)));
            }
            Some(Reply::Found) => return Ok(Some(found(peer, from, true))),
            None => {}
        }
    }
}

/// What a datagram received while punching asks of us.
enum Reply {
    /// The peer's probe: answer it where it came from (our answer proves
    /// the path to the peer), and the path is found.
    Ack,
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
            return Some(Reply::Ack);
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
        Ok(Message::Punch {
            from: who, token, ..
        }) if who == args.name && token == peer.token => {
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

/// The error when no probe was answered in time, with its likely causes
/// in RFC 4787's terms (the chapter, "When punching fails").
fn no_answer(args: &Args, peer: &PeerInfo, endpoints: &[SocketAddr]) -> String {
    let tried: Vec<String> = endpoints
        .iter()
        .map(|endpoint| {
            let kind = if *endpoint == peer.public {
                "public"
            } else {
                "private"
            };
            format!("{endpoint} ({kind})")
        })
        .collect();
    format!(
        "no answer from {} within {} at {}. The rendezvous reached us both, so UDP gets through. \
         Likely: one NAT gives each destination a new port (address and port-dependent mapping, \
         a \"symmetric NAT\") and the other admits only the endpoints it sent to (address and \
         port-dependent filtering); or {} left, or the probes were lost. Such peers need a relay \
         (TURN)",
        peer.name,
        show_ms(args.punch_timeout_ms),
        tried.join(" or "),
        peer.name
    )
}

/// Prints which of the peer's endpoints answered; the session on it.
fn found(peer: PeerInfo, path: SocketAddr, peer_knows: bool) -> Session {
    let kind = if path == peer.private {
        "private"
    } else if path == peer.public {
        "public"
    } else {
        "unexpected"
    };
    println!("path: {kind} {path}: talking to {} directly", peer.name);
    Session {
        peer,
        path,
        peer_knows,
    }
}

/// Phase 3: the chat. One `poll` waits for a line typed, a datagram, a
/// stop signal, or the time of the next keepalive, whichever comes first.
fn chat(sock: &mut Socket, args: &Args, mut session: Session) -> Result<()> {
    println!("Ready: type a message and press Enter to send it; 'quit' exits.");
    prompt();
    let keepalive = (args.keepalive_ms > 0).then(|| Duration::from_millis(args.keepalive_ms));
    let mut last_sent = Instant::now();
    let mut typed = LineReader::default();
    loop {
        let ready = sock.wait(true, keepalive.map(|every| last_sent + every))?;
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
    }
}

/// What a datagram received in the chat means for it.
#[derive(PartialEq, Eq)]
enum Heard {
    /// Go on chatting.
    Chatting,
    /// The peer said BYE.
    PeerLeft,
}

impl Session {
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
            Ok(
                Message::Keepalive {
                    from: who, token, ..
                }
                | Message::PunchAck {
                    from: who, token, ..
                },
            ) if from_peer && who == peer.name && token == peer.token => {
                self.peer_knows = true;
            }
            // A probe from a peer that may not have heard our answer yet (a
            // peer that answered us, or talks to us, needs no answer).
            Ok(Message::Punch {
                from: who, token, ..
            }) if (who == peer.name || who == args.name) && token == peer.token => {
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

    /// Sends one typed line to the peer; reports only failures.
    fn send_chat(&self, sock: &Socket, line: &[u8]) {
        let message = Message::Chat {
            token: self.peer.token,
            text: line.to_vec(),
        };
        let datagram = message.encode();
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

    fn say_bye(&self, sock: &Socket, args: &Args) {
        let bye = Message::Bye {
            from: args.name.clone(),
            to: self.peer.name.clone(),
            token: self.peer.token,
        };
        sock.send(&bye, self.path);
    }
}

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
