//! Practice, lesson 7: this is lesson 6's rendezvous, renamed
//! lesson7-rendezvous.
//!
//! Given: the crate's library, lesson 7's whole (its `protocol` module
//! knows MAPPING, MAPPED, the role in PEER, ALLOCATE and ALLOCATED:
//! parsing is not this lesson's subject), and lesson 6's server on top of
//! it, changed only to compile: it knows no roles, so it tells every pair
//! to punch. Yours: lesson 7's change. A second port that checks each
//! peer's mapping, and an introduction that waits for both mappings and
//! gives each peer its role (the chapter, "Who is hard?"); the relay, with
//! its options and its rules (the chapter, "The relay"). Check your work
//! with `just check 7`, or let `just practice 7` check it on every save.
//! The solution is lesson 7 itself.

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

use lesson7_nat_traversal::protocol::{self, Cookie, MAX_REQUEST, Message, Role, Token};
use lesson7_nat_traversal::{family, show_ms, to_socket_addr};

/// The rendezvous server of lesson 6: peers register under a name, and two
/// peers that ask for each other learn each other's public and private
/// endpoints.
#[derive(Parser, Debug)]
#[command(name = "lesson7-rendezvous", version)]
struct Args {
    /// The address to receive requests on.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:55500")]
    bind: SocketAddr,

    /// A registration not refreshed for this long is forgotten, in
    /// milliseconds. Peers refresh theirs every 5 s while they wait.
    #[arg(long, value_name = "MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    expire_ms: u64,
}

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
}

/// The server's whole state: registrations by name, and the token of each
/// pair introduced, so that a repeated CONNECT gets the same answer.
struct Rendezvous {
    fd: OwnedFd,
    expire: Duration,
    peers: HashMap<String, Registration>,
    tokens: HashMap<(String, String), Token>,
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
    // One UDP socket, bound to the address peers send to, never connected:
    // every datagram may come from a different peer. Non-blocking, as in
    // lesson 5: a readiness that finds nothing is EAGAIN, not a hang.
    let fd = socket::socket(
        family(args.bind),
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("cannot create a UDP socket")?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(args.bind))
        .with_context(|| format!("cannot bind UDP socket to {}", args.bind))?;
    let bound: SockaddrStorage =
        socket::getsockname(fd.as_raw_fd()).context("cannot read the bound address")?;
    let bound = to_socket_addr(&bound).unwrap_or(args.bind);
    log(format_args!(
        "rendezvous listening on {bound}; registrations expire after {}",
        show_ms(args.expire_ms)
    ));

    let mut server = Rendezvous {
        fd,
        expire: Duration::from_millis(args.expire_ms),
        peers: HashMap::new(),
        tokens: HashMap::new(),
    };
    server.serve()
}

impl Rendezvous {
    /// Receives and answers requests until an error that is not the
    /// request's fault. `poll` wakes at least every quarter of the expiry
    /// time, so an idle server still forgets expired peers on time.
    fn serve(&mut self) -> Result<()> {
        // A buffer for the largest UDP payload: an oversized datagram is
        // received whole, so its length can be logged, then ignored.
        let mut buffer = vec![0u8; 65_536];
        let sweep = PollTimeout::try_from(self.expire / 4).unwrap_or(PollTimeout::MAX);
        loop {
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, sweep) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(err) => return Err(err).context("poll failed"),
            }
            let readable = fds[0]
                .revents()
                .is_some_and(|events| events.contains(PollFlags::POLLIN));
            self.forget_expired();
            if !readable {
                continue;
            }
            self.receive(&mut buffer)?;
        }
    }

    /// Takes the datagram `poll` saw off the socket, and handles it.
    fn receive(&mut self, buffer: &mut [u8]) -> Result<()> {
        match socket::recvfrom::<SockaddrStorage>(self.fd.as_raw_fd(), buffer) {
            Ok((len, Some(from))) => match to_socket_addr(&from) {
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

    /// One datagram: a request to answer, or something to log and ignore.
    fn handle(&mut self, datagram: &[u8], from: SocketAddr) {
        if datagram.len() > MAX_REQUEST {
            log_error(format_args!(
                "ignored a {}-byte datagram from {from}: longer than any request ({MAX_REQUEST} bytes)",
                datagram.len()
            ));
            return;
        }
        match protocol::parse(datagram) {
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
        };
        self.peers.insert(name.to_owned(), registration);
        Some(cookie)
    }

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
        self.introduce(&name, &peer);
    }

    /// Sends each of the two peers the other's endpoints and their token.
    fn introduce(&mut self, a: &str, b: &str) {
        let Some(token) = self.token(a, b) else {
            return;
        };
        let (Some(reg_a), Some(reg_b)) = (self.peers.get(a), self.peers.get(b)) else {
            return;
        };
        // Lesson 6 knows no roles: every pair punches (lesson 7, "Who is
        // hard?", gives each peer its own).
        let to_a = Message::Peer {
            peer: b.to_owned(),
            public: reg_b.public,
            private: reg_b.private,
            token,
            role: Role::Punch,
        };
        let to_b = Message::Peer {
            peer: a.to_owned(),
            public: reg_a.public,
            private: reg_a.private,
            token,
            role: Role::Punch,
        };
        log(format_args!(
            "introduced {a} (public {}, private {}) and {b} (public {}, private {})",
            reg_a.public, reg_a.private, reg_b.public, reg_b.private
        ));
        let (public_a, public_b) = (reg_a.public, reg_b.public);
        self.send(&to_a, public_a);
        self.send(&to_b, public_b);
    }

    /// The token of the pair `a`, `b`: the one they were given before (a
    /// repeated CONNECT gets the same answer), or a fresh one.
    fn token(&mut self, a: &str, b: &str) -> Option<Token> {
        let key = if a < b {
            (a.to_owned(), b.to_owned())
        } else {
            (b.to_owned(), a.to_owned())
        };
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
    }

    /// Sends `message` to `to`; a failure is logged, and serving goes on.
    fn send(&self, message: &Message, to: SocketAddr) {
        if let Err(err) = socket::sendto(
            self.fd.as_raw_fd(),
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
