//! The rendezvous server of lesson 6: where two peers behind NATs learn
//! each other's endpoints.
//!
//! A peer cannot know its own public endpoint: its NAT rewrites the source
//! of every datagram it sends. The server sees the rewritten source, so it
//! records it next to the private endpoint the peer reports. When two peers
//! have asked for each other, the server sends each one the other's two
//! endpoints and a fresh token; from then on the peers talk directly, and
//! the server is not needed any more. One socket, one thread: `poll` wakes
//! the loop for a datagram or for the next sweep of expired registrations.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, MsgFlags, SockFlag, SockType, SockaddrStorage};

use lesson6_udp_hole_punching::protocol::{self, MAX_REQUEST, Message, Token};
use lesson6_udp_hole_punching::{family, show_ms, to_socket_addr};

/// The rendezvous server of lesson 6: peers register under a name, and two
/// peers that ask for each other learn each other's public and private
/// endpoints.
#[derive(Parser, Debug)]
#[command(name = "lesson6-rendezvous", version)]
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

// ANCHOR: registration
/// What the server knows about one registered peer.
struct Registration {
    /// Where its datagrams come from, as the server sees them: after every
    /// NAT on the way. Requests naming this peer must come from here.
    public: SocketAddr,
    /// The address its socket is bound to, as the peer itself reported it.
    private: SocketAddr,
    /// The peer it asked to talk to, if any.
    wants: Option<String>,
    /// When it last registered or asked: registrations expire.
    last_seen: Instant,
}
// ANCHOR_END: registration

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
    // ANCHOR: socket
    // One UDP socket, bound to the address peers send to. The server never
    // connects it: every datagram may come from a different peer.
    let fd = socket::socket(
        family(args.bind),
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("cannot create a UDP socket")?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(args.bind))
        .with_context(|| format!("cannot bind UDP socket to {}", args.bind))?;
    let bound: SockaddrStorage =
        socket::getsockname(fd.as_raw_fd()).context("cannot read the bound address")?;
    let bound = to_socket_addr(&bound).unwrap_or(args.bind);
    println!(
        "rendezvous listening on {bound}; registrations expire after {}",
        show_ms(args.expire_ms)
    );
    // ANCHOR_END: socket

    let mut server = Rendezvous {
        fd,
        expire: Duration::from_millis(args.expire_ms),
        peers: HashMap::new(),
        tokens: HashMap::new(),
    };
    server.serve()
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
            match socket::recvfrom::<SockaddrStorage>(self.fd.as_raw_fd(), &mut buffer) {
                Ok((len, Some(from))) => match to_socket_addr(&from) {
                    Some(from) => self.handle(&buffer[..len], from),
                    None => eprintln!("ignored a {len}-byte datagram from a non-IP sender"),
                },
                Ok((len, None)) => eprintln!("ignored a {len}-byte datagram without a sender"),
                // An ICMP error for an earlier answer (a peer that left),
                // or a signal: neither is a reason to stop serving.
                Err(err @ (Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH)) => {
                    eprintln!("warning: {err} reported on the socket; still serving");
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(err) => return Err(err).context("cannot receive"),
            }
        }
    }
    // ANCHOR_END: serve

    // ANCHOR: handle
    /// One datagram: a request to answer, or something to log and ignore.
    fn handle(&mut self, datagram: &[u8], from: SocketAddr) {
        if datagram.len() > MAX_REQUEST {
            eprintln!(
                "ignored a {}-byte datagram from {from}: longer than any request ({MAX_REQUEST} bytes)",
                datagram.len()
            );
            return;
        }
        match protocol::parse(datagram) {
            Ok(Message::Register { name, private }) => self.register(name, private, from),
            Ok(Message::Connect { name, peer }) => self.connect(name, peer, from),
            Ok(other) => eprintln!(
                "ignored a {} message from {from}: not a request to the rendezvous",
                other.kind()
            ),
            Err(reason) => eprintln!(
                "ignored a {}-byte datagram from {from}: {reason}: \"{}\"",
                datagram.len(),
                protocol::preview(datagram)
            ),
        }
    }
    // ANCHOR_END: handle

    // ANCHOR: register
    /// REGISTER: remember (or refresh) `name` at the public address `from`.
    fn register(&mut self, name: String, private: SocketAddr, from: SocketAddr) {
        let now = Instant::now();
        if let Some(known) = self.peers.get_mut(&name) {
            if known.public != from {
                // Someone else holds the name until it expires: a second
                // "alice" must not steal the first one's introductions.
                eprintln!(
                    "refused REGISTER {name} from {from}: {name} is registered from {}",
                    known.public
                );
                self.send(
                    &Message::Error {
                        reason: format!("the name {name} is taken"),
                    },
                    from,
                );
                return;
            }
            known.private = private;
            known.last_seen = now;
        } else {
            println!("registered {name}: public {from}, private {private}");
            self.peers.insert(
                name.clone(),
                Registration {
                    public: from,
                    private,
                    wants: None,
                    last_seen: now,
                },
            );
        }
        self.send(&Message::Registered { name, public: from }, from);
    }
    // ANCHOR_END: register

    // ANCHOR: connect
    /// CONNECT: `name` wants `peer`. If `peer` wants `name` too, introduce
    /// them; otherwise tell `name` to wait (the server will write to it
    /// when `peer` asks, through the hole its requests keep open).
    fn connect(&mut self, name: String, peer: String, from: SocketAddr) {
        let Some(asking) = self.peers.get_mut(&name) else {
            eprintln!("ignored CONNECT {name} {peer} from {from}: {name} is not registered");
            return;
        };
        if asking.public != from {
            // Anyone can write "CONNECT alice mallory"; only alice's own
            // address may. (Source addresses can be forged too, but then
            // the answer goes to alice, not to the forger.)
            eprintln!(
                "ignored a forged CONNECT {name} {peer} from {from}: {name} is registered from {}",
                asking.public
            );
            return;
        }
        asking.last_seen = Instant::now();
        let first_ask = asking.wants.as_deref() != Some(peer.as_str());
        asking.wants = Some(peer.clone());
        let mutual = self
            .peers
            .get(&peer)
            .is_some_and(|other| other.wants.as_deref() == Some(name.as_str()));
        if !mutual {
            if first_ask {
                println!("{name} asks for {peer}: waiting for {peer} to ask for {name}");
            }
            self.send(&Message::Waiting { peer }, from);
            return;
        }
        self.introduce(&name, &peer);
    }

    /// Sends each of the two peers the other's endpoints and their token.
    fn introduce(&mut self, a: &str, b: &str) {
        let key = if a < b {
            (a.to_owned(), b.to_owned())
        } else {
            (b.to_owned(), a.to_owned())
        };
        let token = match self.tokens.get(&key) {
            Some(token) => *token,
            None => {
                let token = match Token::random() {
                    Ok(token) => token,
                    Err(err) => {
                        eprintln!("error: cannot read /dev/urandom for a token: {err}");
                        return;
                    }
                };
                self.tokens.insert(key, token);
                token
            }
        };
        let (Some(reg_a), Some(reg_b)) = (self.peers.get(a), self.peers.get(b)) else {
            return;
        };
        let to_a = Message::Peer {
            peer: b.to_owned(),
            public: reg_b.public,
            private: reg_b.private,
            token,
        };
        let to_b = Message::Peer {
            peer: a.to_owned(),
            public: reg_a.public,
            private: reg_a.private,
            token,
        };
        println!(
            "introduced {a} (public {}, private {}) and {b} (public {}, private {})",
            reg_a.public, reg_a.private, reg_b.public, reg_b.private
        );
        let (public_a, public_b) = (reg_a.public, reg_b.public);
        self.send(&to_a, public_a);
        self.send(&to_b, public_b);
    }
    // ANCHOR_END: connect

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
            println!(
                "{name} expired: no request from it for {}",
                show_ms(expire.as_millis() as u64)
            );
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
            eprintln!("warning: cannot send {} to {to}: {err}", message.kind());
        }
    }
}
