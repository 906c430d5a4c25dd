//! The rendezvous server of lesson 7: lesson 6's, plus two jobs. A second
//! port sees each peer's mapping a second time, so the server knows which
//! NAT gives each destination a new port and gives each peer its role (the
//! chapter, "Who is hard?"). And it relays a pair's session when no punch
//! got through, under rules that make it no open relay and no amplifier
//! (the chapter, "The relay"). Two sockets, one thread, one `poll`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, MsgFlags, SockFlag, SockType, SockaddrStorage};

use lesson7_nat_traversal::protocol::{self, Cookie, MAX_REQUEST, Message, RELAY_MAX, Role, Token};
use lesson7_nat_traversal::{family, show_ms, to_socket_addr};

/// The rendezvous server of lesson 7: peers register under a name, two
/// peers that ask for each other learn each other's endpoints and their
/// roles, and the server relays the pairs that no punch could join.
#[derive(Parser, Debug)]
#[command(name = "lesson7-rendezvous", version)]
struct Args {
    /// The address to receive requests on.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:55500")]
    bind: SocketAddr,

    /// The second port, on the same address, that checks each peer's
    /// mapping; by default the next port after --bind's (any free port
    /// when --bind's is 0).
    #[arg(long, value_name = "PORT")]
    second_port: Option<u16>,

    /// The longest datagram the relay forwards, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = RELAY_MAX,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(64..=65_507))]
    relay_max_bytes: usize,

    /// How many datagrams a second the relay forwards from each peer (a
    /// burst of as many, then that rate).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    relay_rate: u32,

    /// A relayed pair that forwarded nothing for this long is forgotten, in
    /// milliseconds. Peers send a keepalive every 10 s.
    #[arg(long, value_name = "MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    relay_idle_ms: u64,

    /// A registration not refreshed for this long is forgotten, in
    /// milliseconds. Peers refresh theirs every 5 s while they wait.
    #[arg(long, value_name = "MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    expire_ms: u64,
}

// ANCHOR: registration
/// What the server knows about one registered peer.
struct Registration {
    /// Where its datagrams come from, as the server sees them: after every
    /// NAT on the way. Requests naming this peer must come from here.
    public: SocketAddr,
    /// The address its socket is bound to, as the peer itself reported it.
    private: SocketAddr,
    /// The secret sent to `public` in REGISTERED: every later request in
    /// this name must carry it (see the chapter, "The protocol").
    cookie: Cookie,
    /// The peer it asked to talk to, if any.
    wants: Option<String>,
    /// When it last registered or asked: registrations expire.
    last_seen: Instant,
    /// Where the second port saw it (MAPPING): another port than `public`
    /// means its NAT maps each destination to a new port.
    mapping: Option<SocketAddr>,
}
// ANCHOR_END: registration

// ANCHOR: allocation
/// One peer of a relayed pair: where the relay saw it, whether it asked to
/// be relayed, and its budget of datagrams (a token bucket).
struct RelayEnd {
    name: String,
    public: SocketAddr,
    asked: bool,
    budget: f64,
    refilled: Instant,
    /// Datagrams dropped since the last one forwarded (over the rate).
    dropped: u64,
}

/// A relayed pair, by its session's token.
struct Allocation {
    ends: [RelayEnd; 2],
    last_active: Instant,
}
// ANCHOR_END: allocation

/// The relay's limits (the arguments).
struct Limits {
    max_bytes: usize,
    rate: f64,
    idle: Duration,
}

/// The server's whole state: registrations by name, the token of each pair
/// introduced (a repeated CONNECT gets the same answer), the relayed pairs.
struct Rendezvous {
    fd: OwnedFd,
    second: OwnedFd,
    expire: Duration,
    peers: HashMap<String, Registration>,
    tokens: HashMap<(String, String), Token>,
    relay: Limits,
    allocations: HashMap<Token, Allocation>,
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
    let (fd, bound) = open(args.bind)?;
    log(format_args!(
        "rendezvous listening on {bound}; registrations expire after {}",
        show_ms(args.expire_ms)
    ));
    // ANCHOR: second_port
    // The second port: a NAT that gives each destination its own port shows
    // the two ports two different mappings of one peer socket.
    let port = args.second_port.unwrap_or(if bound.port() == 0 {
        0
    } else {
        bound.port().wrapping_add(1)
    });
    let (second, second_bound) = open(SocketAddr::new(bound.ip(), port))?;
    log(format_args!("mapping check on {second_bound}"));
    // ANCHOR_END: second_port
    let mut server = Rendezvous {
        fd,
        second,
        expire: Duration::from_millis(args.expire_ms),
        peers: HashMap::new(),
        tokens: HashMap::new(),
        relay: Limits {
            max_bytes: args.relay_max_bytes,
            rate: f64::from(args.relay_rate),
            idle: Duration::from_millis(args.relay_idle_ms),
        },
        allocations: HashMap::new(),
    };
    server.serve()
}

/// One UDP socket bound to `addr`, never connected, non-blocking (as in
/// lesson 6), and the address it got.
fn open(addr: SocketAddr) -> Result<(OwnedFd, SocketAddr)> {
    let fd = socket::socket(
        family(addr),
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("cannot create a UDP socket")?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))
        .with_context(|| format!("cannot bind UDP socket to {addr}"))?;
    let bound: SockaddrStorage =
        socket::getsockname(fd.as_raw_fd()).context("cannot read the bound address")?;
    Ok((fd, to_socket_addr(&bound).unwrap_or(addr)))
}

impl Rendezvous {
    // ANCHOR: serve
    /// Receives and answers requests until an error that is not the
    /// request's fault. `poll` wakes at least every quarter of the expiry
    /// time, so an idle server still forgets expired peers on time.
    fn serve(&mut self) -> Result<()> {
        // A buffer for the largest UDP payload: an oversized datagram is
        // received whole, so its length can be logged, then ignored.
        let mut buffer = vec![0u8; 65_536];
        let sweep = PollTimeout::try_from(self.expire / 4).unwrap_or(PollTimeout::MAX);
        let sweep = sweep.min(PollTimeout::try_from(self.relay.idle / 4).unwrap_or(sweep));
        loop {
            let mut fds = [
                PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.second.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, sweep) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(err) => return Err(err).context("poll failed"),
            }
            let readable = |at: usize| {
                fds[at]
                    .revents()
                    .is_some_and(|events| events.contains(PollFlags::POLLIN))
            };
            let (first, second) = (readable(0), readable(1));
            self.forget_expired();
            if first {
                self.receive(&mut buffer, false)?;
            }
            if second {
                self.receive(&mut buffer, true)?;
            }
        }
    }
    // ANCHOR_END: serve

    // ANCHOR: receive
    /// Takes the datagram `poll` saw off one socket (`second`: the second
    /// port's), and handles it.
    fn receive(&mut self, buffer: &mut [u8], second: bool) -> Result<()> {
        let fd = if second { &self.second } else { &self.fd };
        match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), buffer) {
            Ok((len, Some(from))) => match to_socket_addr(&from) {
                Some(from) if second => self.handle_second(&buffer[..len], from),
                Some(from) => self.handle(&buffer[..len], from),
                None => log_error(format_args!(
                    "ignored a {len}-byte datagram from a non-IP sender"
                )),
            },
            Ok((len, None)) => log_error(format_args!(
                "ignored a {len}-byte datagram without a sender"
            )),
            // Nothing there after all (select(2), BUGS): wait again.
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(err) => return Err(err).context("cannot receive"),
        }
        Ok(())
    }
    // ANCHOR_END: receive

    // ANCHOR: handle
    /// One datagram: a request to answer, or something to log and ignore.
    fn handle(&mut self, datagram: &[u8], from: SocketAddr) {
        let longest = MAX_REQUEST.max(self.relay.max_bytes);
        if datagram.len() > longest {
            log_error(format_args!(
                "ignored a {}-byte datagram from {from}: longer than any request or relayed message ({longest} bytes)",
                datagram.len()
            ));
            return;
        }
        let parsed = protocol::parse(datagram);
        if let Some(token) = parsed.as_ref().ok().and_then(protocol::session_token) {
            self.forward(datagram, token, from);
            return;
        }
        if datagram.len() > MAX_REQUEST {
            log_error(format_args!(
                "ignored a {}-byte datagram from {from}: longer than any request ({MAX_REQUEST} bytes)",
                datagram.len()
            ));
            return;
        }
        match parsed {
            Ok(Message::Register {
                name,
                private,
                cookie,
            }) => self.register(name, private, cookie, from),
            Ok(Message::Connect { name, peer, cookie }) => {
                if self.check(&name, Some(cookie), from, &format!("CONNECT {name} {peer}")) {
                    self.connect(name, peer, from);
                }
            }
            Ok(Message::Allocate {
                name,
                peer,
                token,
                cookie,
            }) => {
                if self.check(
                    &name,
                    Some(cookie),
                    from,
                    &format!("ALLOCATE {name} {peer}"),
                ) {
                    self.allocate(&name, &peer, token, from);
                }
            }
            Ok(other) => log_error(format_args!(
                "ignored a {} message from {from}: not a request to the rendezvous",
                other.kind()
            )),
            Err(reason) => log_error(format_args!(
                "ignored a {}-byte datagram from {from}: {reason}: \"{}\"",
                datagram.len(),
                protocol::preview(datagram)
            )),
        }
    }
    // ANCHOR_END: handle

    // ANCHOR: check
    /// Whether a request in `name`'s name is `name`'s own: it must come from
    /// its public endpoint *and* carry its cookie, which only that endpoint
    /// was sent. A forger can spoof the address, not read the answer.
    // As TURN's NONCE (RFC 8656), the server picks it and requests echo it;
    // STUN's transaction id (RFC 8489) is the mirror: the client picks it.
    fn check(&self, name: &str, cookie: Option<Cookie>, from: SocketAddr, request: &str) -> bool {
        let why = match self.peers.get(name) {
            None => format!("{name} is not registered"),
            Some(known) if known.public != from => {
                format!("{name} is registered from {}", known.public)
            }
            Some(known) if cookie == Some(known.cookie) => return true,
            Some(_) if cookie.is_none() => format!("no cookie for {name}"),
            Some(_) => format!("wrong cookie for {name}"),
        };
        log_error(format_args!("ignored {request} from {from}: {why}"));
        false
    }
    // ANCHOR_END: check

    // ANCHOR: register
    /// REGISTER: remember `name` at the public address `from`, or refresh
    /// a registration with its cookie.
    fn register(
        &mut self,
        name: String,
        private: SocketAddr,
        cookie: Option<Cookie>,
        from: SocketAddr,
    ) {
        let cookie = match self.peers.get(&name) {
            None => match self.add(&name, private, from) {
                Some(cookie) => cookie,
                None => return,
            },
            Some(known) if known.public != from => {
                // A second "alice" must not steal the first one's
                // introductions; she hears why, at her own address.
                log_error(format_args!(
                    "refused REGISTER {name} from {from}: {name} is registered from {}",
                    known.public
                ));
                let reason = format!("the name {name} is taken");
                self.send(&Message::Error { reason }, from);
                return;
            }
            // Our REGISTERED may have been lost, and the peer asks again
            // without a cookie. Its endpoint has the cookie already: send the
            // same answer there, and change nothing (a forger may be asking).
            Some(known) if cookie.is_none() => {
                log_error(format_args!(
                    "answered REGISTER {name} {private} from {from} again: no cookie, so nothing changed"
                ));
                known.cookie
            }
            Some(_) => {
                if !self.check(&name, cookie, from, &format!("REGISTER {name} {private}")) {
                    return;
                }
                let Some(known) = self.peers.get_mut(&name) else {
                    return;
                };
                known.private = private;
                known.last_seen = Instant::now();
                known.cookie
            }
        };
        let public = from;
        self.send(
            &Message::Registered {
                name,
                public,
                cookie,
            },
            from,
        );
    }

    /// A new registration, with a fresh cookie (none if the kernel has no
    /// random bytes to give: logged, and the peer will ask again).
    fn add(&mut self, name: &str, private: SocketAddr, from: SocketAddr) -> Option<Cookie> {
        let cookie = match Cookie::random() {
            Ok(cookie) => cookie,
            Err(err) => {
                log_error(format_args!(
                    "error: cannot read /dev/urandom for a cookie: {err}"
                ));
                return None;
            }
        };
        log(format_args!(
            "registered {name}: public {from}, private {private}"
        ));
        let registration = Registration {
            public: from,
            private,
            cookie,
            wants: None,
            last_seen: Instant::now(),
            mapping: None,
        };
        self.peers.insert(name.to_owned(), registration);
        Some(cookie)
    }
    // ANCHOR_END: register

    // ANCHOR: connect
    /// CONNECT (checked): `name` wants `peer`. If `peer` wants `name` too,
    /// introduce them; otherwise tell `name` to wait (the server will write
    /// to it when `peer` asks, through the hole its requests keep open).
    fn connect(&mut self, name: String, peer: String, from: SocketAddr) {
        let Some(asking) = self.peers.get_mut(&name) else {
            return;
        };
        asking.last_seen = Instant::now();
        let first_ask = asking.wants.as_deref() != Some(peer.as_str());
        asking.wants = Some(peer.clone());
        let mutual = self
            .peers
            .get(&peer)
            .is_some_and(|other| other.wants.as_deref() == Some(name.as_str()));
        if !mutual {
            if first_ask {
                log(format_args!(
                    "{name} asks for {peer}: waiting for {peer} to ask for {name}"
                ));
            }
            self.send(&Message::Waiting { peer }, from);
            return;
        }
        // Roles need both mappings: without one, say nothing; the peer
        // repeats its CONNECT, and its MAPPING, within a second.
        let unmapped = [&name, &peer]
            .into_iter()
            .find(|who| self.peers.get(*who).is_none_or(|reg| reg.mapping.is_none()));
        if let Some(who) = unmapped {
            log(format_args!(
                "{name} and {peer} ask for each other: waiting for {who}'s MAPPING"
            ));
            return;
        }
        self.introduce(&name, &peer);
    }

    /// Sends each of the two peers the other's endpoints, their token, and
    /// its role.
    fn introduce(&mut self, a: &str, b: &str) {
        let Some(token) = self.token(a, b) else {
            return;
        };
        let (Some(reg_a), Some(reg_b)) = (self.peers.get(a), self.peers.get(b)) else {
            return;
        };
        let (role_a, role_b) = roles(reg_a.hard(), reg_b.hard());
        let to_a = Message::Peer {
            peer: b.to_owned(),
            public: reg_b.public,
            private: reg_b.private,
            token,
            role: role_a,
        };
        let to_b = Message::Peer {
            peer: a.to_owned(),
            public: reg_a.public,
            private: reg_a.private,
            token,
            role: role_b,
        };
        log(format_args!(
            "introduced {a} (public {}, private {}, {}) and {b} (public {}, private {}, {})",
            reg_a.public,
            reg_a.private,
            role_a.name(),
            reg_b.public,
            reg_b.private,
            role_b.name()
        ));
        let (public_a, public_b) = (reg_a.public, reg_b.public);
        self.send(&to_a, public_a);
        self.send(&to_b, public_b);
    }
    // ANCHOR_END: connect

    /// The token of the pair `a`, `b`: the one they were given before (a
    /// repeated CONNECT gets the same answer), or a fresh one.
    fn token(&mut self, a: &str, b: &str) -> Option<Token> {
        let key = pair_key(a, b);
        if let Some(token) = self.tokens.get(&key) {
            return Some(*token);
        }
        match Token::random() {
            Ok(token) => Some(*self.tokens.entry(key).or_insert(token)),
            Err(err) => {
                log_error(format_args!(
                    "error: cannot read /dev/urandom for a token: {err}"
                ));
                None
            }
        }
    }

    /// Forgets registrations not refreshed within the expiry time, and the
    /// tokens of the pairs they were part of.
    fn forget_expired(&mut self) {
        let expire = self.expire;
        let expired: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, reg)| reg.last_seen.elapsed() >= expire)
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.peers.remove(&name);
            self.tokens.retain(|(a, b), _| *a != name && *b != name);
            log(format_args!(
                "{name} expired: no request from it for {}",
                show_ms(expire.as_millis() as u64)
            ));
        }
        let idle = self.relay.idle;
        self.allocations.retain(|_, pair| {
            let alive = pair.last_active.elapsed() < idle;
            if !alive {
                log(format_args!(
                    "relay for {} and {} expired: nothing to forward for {}",
                    pair.ends[0].name,
                    pair.ends[1].name,
                    show_ms(idle.as_millis() as u64)
                ));
            }
            alive
        });
    }

    /// Sends `message` to `to`; a failure is logged, and serving goes on.
    fn send(&self, message: &Message, to: SocketAddr) {
        send_on(&self.fd, message, to);
    }
}

impl Registration {
    /// Whether its NAT gave the second port another mapping than the first:
    /// address-and-port-dependent mapping, in RFC 4787's terms.
    fn hard(&self) -> bool {
        self.mapping.is_some_and(|seen| seen != self.public)
    }
}

// ANCHOR: roles
/// The roles of two peers, from whether each one's NAT is hard: one hard
/// side sprays, the easy side scans; two hard sides leave only the relay.
fn roles(hard_a: bool, hard_b: bool) -> (Role, Role) {
    match (hard_a, hard_b) {
        (false, false) => (Role::Punch, Role::Punch),
        (true, false) => (Role::Spray, Role::Scan),
        (false, true) => (Role::Scan, Role::Spray),
        (true, true) => (Role::Relay, Role::Relay),
    }
}
// ANCHOR_END: roles

impl Rendezvous {
    // ANCHOR: mapping
    /// A datagram to the second port: only MAPPING, with the cookie of a
    /// registration from the same IP address. The port may differ: that is
    /// what the check is for.
    fn handle_second(&mut self, datagram: &[u8], from: SocketAddr) {
        let (name, cookie) = match protocol::parse(datagram) {
            Ok(Message::Mapping { name, cookie }) if datagram.len() <= MAX_REQUEST => {
                (name, cookie)
            }
            Ok(other) => {
                let kind = other.kind();
                log_error(format_args!(
                    "ignored a {kind} from {from} on the second port: only MAPPING goes there"
                ));
                return;
            }
            Err(reason) => {
                let len = datagram.len();
                log_error(format_args!(
                    "ignored a {len}-byte datagram from {from} on the second port: {reason}"
                ));
                return;
            }
        };
        let Some(known) = self.peers.get_mut(&name) else {
            log_error(format_args!(
                "ignored MAPPING {name} from {from}: not registered"
            ));
            return;
        };
        if known.public.ip() != from.ip() || known.cookie != cookie {
            log_error(format_args!(
                "ignored MAPPING {name} from {from}: wrong cookie, or not from {}",
                known.public.ip()
            ));
            return;
        }
        if known.mapping != Some(from) {
            let kind = if from == known.public {
                "the same port as"
            } else {
                "another port than"
            };
            log(format_args!(
                "{name}'s mapping: {from} on the second port, {kind} {}",
                known.public
            ));
        }
        known.mapping = Some(from);
        let answer = Message::Mapped { name, public: from };
        send_on(&self.second, &answer, from);
    }
    // ANCHOR_END: mapping

    // ANCHOR: allocate
    /// ALLOCATE (checked): `name` asks to relay its session with `peer`.
    /// The token must be the pair's; the endpoints are the registrations'.
    /// ALLOCATED once both asked; until then WAITING (each answer goes
    /// to the checked endpoint that asked, one per request).
    fn allocate(&mut self, name: &str, peer: &str, token: Token, from: SocketAddr) {
        let key = pair_key(name, peer);
        if self.tokens.get(&key) != Some(&token) {
            log_error(format_args!(
                "ignored ALLOCATE {name} {peer} from {from}: not the token of that pair"
            ));
            return;
        }
        if let Some(asking) = self.peers.get_mut(name) {
            asking.last_seen = Instant::now();
        }
        let Some(other) = self.peers.get(peer).map(|reg| reg.public) else {
            let reason = format!("{peer} is not registered");
            self.send(&Message::Error { reason }, from);
            return;
        };
        let now = Instant::now();
        let rate = self.relay.rate;
        let end = |name: &str, public| RelayEnd {
            name: name.to_owned(),
            public,
            asked: false,
            budget: rate,
            refilled: now,
            dropped: 0,
        };
        let pair = self.allocations.entry(token).or_insert_with(|| Allocation {
            ends: [end(name, from), end(peer, other)],
            last_active: now,
        });
        let Some(asker) = pair.ends.iter_mut().find(|end| end.public == from) else {
            log_error(format_args!(
                "ignored ALLOCATE {name} {peer} from {from}: the relay knows that pair at other endpoints"
            ));
            return;
        };
        let first_ask = !asker.asked;
        asker.asked = true;
        let both = pair.ends.iter().all(|end| end.asked);
        let answer = if both {
            if first_ask {
                let [a, b] = &pair.ends;
                log(format_args!(
                    "relaying {} ({}) and {} ({})",
                    a.name, a.public, b.name, b.public
                ));
            }
            let max = self.relay.max_bytes;
            let peer = peer.to_owned();
            Message::Allocated { peer, token, max }
        } else {
            Message::Waiting {
                peer: peer.to_owned(),
            }
        };
        self.send(&answer, from);
    }
    // ANCHOR_END: allocate

    // ANCHOR: forward
    /// A message between peers (it carries their token): forwarded as it
    /// is, if it comes from one end of an allocation both asked for, to the
    /// other end, within the size and the sender's rate; else dropped.
    fn forward(&mut self, datagram: &[u8], token: Token, from: SocketAddr) {
        let len = datagram.len();
        let drop = |why: &str| {
            log_error(format_args!(
                "dropped a {len}-byte message from {from}: {why}"
            ));
        };
        let Some(pair) = self.allocations.get_mut(&token) else {
            return drop("no relayed pair has that token");
        };
        let Some(at) = pair.ends.iter().position(|end| end.public == from) else {
            return drop("not from an endpoint of the pair with that token");
        };
        if !pair.ends.iter().all(|end| end.asked) {
            return drop("both peers must ask for the relay first");
        }
        if len > self.relay.max_bytes {
            return drop(&format!("longer than {} bytes", self.relay.max_bytes));
        }
        let sender = &mut pair.ends[at];
        let rate = self.relay.rate;
        let now = Instant::now();
        let refill = now.duration_since(sender.refilled).as_secs_f64() * rate;
        sender.budget = (sender.budget + refill).min(rate);
        sender.refilled = now;
        if sender.budget < 1.0 {
            if sender.dropped == 0 {
                drop(&format!("{} sends over {rate} a second", sender.name));
            }
            sender.dropped += 1;
            return;
        }
        sender.budget -= 1.0;
        if sender.dropped > 0 {
            let (name, dropped) = (sender.name.clone(), sender.dropped);
            log(format_args!(
                "dropped {dropped} of {name}'s messages over the rate"
            ));
            sender.dropped = 0;
        }
        pair.last_active = now;
        let to = pair.ends[1 - at].public;
        if let Err(err) = socket::sendto(
            self.fd.as_raw_fd(),
            datagram,
            &SockaddrStorage::from(to),
            MsgFlags::empty(),
        ) {
            log_error(format_args!("warning: cannot relay to {to}: {err}"));
        }
    }
    // ANCHOR_END: forward
}

/// The key of the pair `a`, `b` in the token table, whoever asks.
fn pair_key(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// Sends `message` to `to` on socket `fd`; a failure is logged.
fn send_on(fd: &OwnedFd, message: &Message, to: SocketAddr) {
    if let Err(err) = socket::sendto(
        fd.as_raw_fd(),
        &message.encode(),
        &SockaddrStorage::from(to),
        MsgFlags::empty(),
    ) {
        log_error(format_args!(
            "warning: cannot send {} to {to}: {err}",
            message.kind()
        ));
    }
}

/// Prints one line to stdout. A log line that cannot be written (stdout
/// closed) is not a reason to stop serving.
fn log(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints one line to stderr, like [`log`].
fn log_error(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
