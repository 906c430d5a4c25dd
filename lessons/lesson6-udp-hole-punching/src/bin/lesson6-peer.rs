//! The peer of lesson 6: a UDP chat that finds its peer through a
//! rendezvous server and punches through both NATs to reach it directly.
//!
//! Three phases, one socket, one thread:
//! 1. `meet`: register with the rendezvous and learn the peer's public and
//!    private endpoints (and the session's token).
//! 2. `punch`: probe both endpoints until one answers. Each probe sent to
//!    the peer's public endpoint also opens our own NAT for the peer's
//!    probes: that is the hole.
//! 3. `chat`: lesson 5's loop, `poll` on standard input and the socket, plus
//!    keepalives that stop the NATs from forgetting the hole.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, MsgFlags, SockFlag, SockType, SockaddrStorage};
use nix::unistd;

use lesson6_udp_hole_punching::protocol::{self, Message, Token};
use lesson6_udp_hole_punching::{family, show_ms, to_socket_addr};

/// How often requests to the rendezvous are repeated until it answers
/// (UDP may lose them), and how often they are refreshed while waiting.
const RETRY: Duration = Duration::from_secs(1);
const REFRESH: Duration = Duration::from_secs(5);
/// How long the rendezvous may stay silent before we give up on it: longer
/// than a refresh period plus a lost answer or two.
const RENDEZVOUS_SILENCE: Duration = Duration::from_secs(8);
/// How often probes go out while punching.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

const PROMPT: &str = "Enter message ('quit' to exit): ";

// ANCHOR: args
/// A UDP chat between two peers behind NATs: they meet at a rendezvous
/// server, punch holes in their NATs, then talk directly.
#[derive(Parser, Debug)]
#[command(name = "lesson6-peer", version)]
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
// ANCHOR_END: args

/// What the rendezvous told us about the peer.
struct PeerInfo {
    name: String,
    public: SocketAddr,
    private: SocketAddr,
    token: Token,
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
    // ANCHOR: socket
    // One socket for everything: the hole a NAT opens is for this socket's
    // port, so the rendezvous, the probes and the chat must all use it.
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
    println!("bound to {bound}");
    // ANCHOR_END: socket
    let private = private_endpoint(bound, args.rendezvous)?;
    println!("private endpoint: {private}");

    let peer = meet(&fd, args, private)?;
    let (path, peer_knows) = punch(&fd, args, &peer, private)?;
    chat(&fd, args, &peer, path, peer_knows)
}

// ANCHOR: private_endpoint
/// The endpoint the peer reports as private: our address on the local
/// network and our port.
///
/// Bound to 0.0.0.0, the socket has no single address; the one the kernel
/// would use toward the rendezvous is the one a neighbour on our LAN can
/// reach. `connect` on a UDP socket sends nothing: it only picks the route
/// and the source address, which `getsockname` then reads.
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
/// Phase 1: registers and asks for the peer until the rendezvous sends the
/// peer's endpoints.
fn meet(fd: &OwnedFd, args: &Args, private: SocketAddr) -> Result<PeerInfo> {
    let start = Instant::now();
    let give_up = start + Duration::from_millis(args.wait_ms);
    // `registered`: the rendezvous confirmed us once; `connect_next`: the
    // next request is CONNECT (after each REGISTERED), else REGISTER.
    let (mut registered, mut waiting, mut connect_next) = (false, false, false);
    let mut last_heard = start;
    let mut next_send = start;
    let mut buffer = vec![0u8; 65_536];
    loop {
        let now = Instant::now();
        if now >= next_send {
            // REGISTER until the rendezvous confirms it, then CONNECT until
            // it answers. Each is repeated, as UDP may lose a request or
            // its answer; while waiting, both again every REFRESH, which
            // keeps the registration and our NAT's mapping alive (and
            // registers us again if the rendezvous restarted).
            let request = if connect_next {
                Message::Connect {
                    name: args.name.clone(),
                    peer: args.peer_name.clone(),
                }
            } else {
                Message::Register {
                    name: args.name.clone(),
                    private,
                }
            };
            send(fd, &request, args.rendezvous);
            next_send = now + if waiting { REFRESH } else { RETRY };
        }
        let silent_for = now - last_heard;
        if silent_for >= RENDEZVOUS_SILENCE || (now >= give_up && !registered) {
            bail!(
                "no answer from the rendezvous at {} for {}: is lesson6-rendezvous running there, and can UDP reach it?",
                args.rendezvous,
                show_ms(silent_for.as_millis() as u64)
            );
        }
        if now >= give_up {
            bail!(
                "{} did not come to the rendezvous within {}",
                args.peer_name,
                show_ms(args.wait_ms)
            );
        }
        let Some((len, from)) = receive(fd, &mut buffer, next_send.min(give_up))? else {
            continue;
        };
        if from != args.rendezvous {
            eprintln!(
                "warning: ignored a {len}-byte datagram from {from}: not the rendezvous {}",
                args.rendezvous
            );
            continue;
        }
        last_heard = Instant::now();
        match protocol::parse(&buffer[..len]) {
            Ok(Message::Registered { public, .. }) => {
                if !registered {
                    println!(
                        "registered as {} at {}; it sees us at {public} (our public endpoint)",
                        args.name, args.rendezvous
                    );
                }
                registered = true;
                connect_next = true;
                next_send = Instant::now();
            }
            Ok(Message::Waiting { peer }) if peer == args.peer_name => {
                if !waiting {
                    println!("waiting for {peer} to come to the rendezvous...");
                }
                waiting = true;
                connect_next = false;
                next_send = Instant::now() + REFRESH;
            }
            Ok(Message::Waiting { .. }) => {}
            Ok(Message::Peer {
                peer,
                public,
                private,
                token,
            }) if peer == args.peer_name => {
                println!("{peer} is at public {public}, private {private}");
                return Ok(PeerInfo {
                    name: peer,
                    public,
                    private,
                    token,
                });
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
    }
}
// ANCHOR_END: meet

// ANCHOR: punch
/// Phase 2: probes the peer's public and private endpoints until a probe
/// or an answer with the session's token arrives; returns where it came
/// from (the path that works), and whether the peer knows that path too
/// (it answered us) or may still need our answer.
fn punch(
    fd: &OwnedFd,
    args: &Args,
    peer: &PeerInfo,
    own: SocketAddr,
) -> Result<(SocketAddr, bool)> {
    let mut endpoints = vec![peer.public];
    if peer.private == own {
        // Both homes may use the same private range, even the same
        // address: a probe to that endpoint would only reach ourselves.
        println!(
            "probing {} at {} (public); its private endpoint {} is our own (same private addresses at both ends)",
            peer.name, peer.public, peer.private
        );
    } else if peer.private == peer.public {
        println!(
            "probing {} at {} (public and private: no NAT between)",
            peer.name, peer.public
        );
    } else {
        endpoints.push(peer.private);
        println!(
            "probing {} at {} (public) and {} (private)",
            peer.name, peer.public, peer.private
        );
    }
    let start = Instant::now();
    let give_up = start + Duration::from_millis(args.punch_timeout_ms);
    let mut next_probe = start + Duration::from_millis(args.probe_delay_ms);
    let mut own_probe_seen = false;
    let mut buffer = vec![0u8; 65_536];
    let probe = Message::Punch {
        from: args.name.clone(),
        to: peer.name.clone(),
        token: peer.token,
    };
    loop {
        let now = Instant::now();
        if now >= give_up {
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
            bail!(
                "no answer from {} within {} at {}. The rendezvous reached us both, so UDP gets \
                 through; the probes must have met a NAT that gives each destination a new port \
                 (a symmetric NAT), which defeats hole punching: such peers need a relay (TURN)",
                peer.name,
                show_ms(args.punch_timeout_ms),
                tried.join(" or ")
            );
        }
        if now >= next_probe {
            for &endpoint in &endpoints {
                send(fd, &probe, endpoint);
            }
            next_probe = now + PROBE_INTERVAL;
        }
        let Some((len, from)) = receive(fd, &mut buffer, next_probe.min(give_up))? else {
            continue;
        };
        match protocol::parse(&buffer[..len]) {
            // The peer's probe: answer it where it came from. Its arrival
            // proves the path; our answer proves it to the peer.
            Ok(Message::Punch {
                from: who,
                to,
                token,
            }) if who == peer.name && to == args.name && token == peer.token => {
                let ack = Message::PunchAck {
                    from: args.name.clone(),
                    to: peer.name.clone(),
                    token: peer.token,
                };
                send(fd, &ack, from);
                return Ok((report_path(peer, from), false));
            }
            Ok(Message::PunchAck {
                from: who,
                to,
                token,
            }) if who == peer.name && to == args.name && token == peer.token => {
                return Ok((report_path(peer, from), true));
            }
            // Our own probe, back to us: the peer's private endpoint is
            // another of our own addresses (the same range at both ends).
            Ok(Message::Punch {
                from: who, token, ..
            }) if who == args.name && token == peer.token => {
                if !own_probe_seen {
                    own_probe_seen = true;
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
            Err(reason) => {
                eprintln!("warning: ignored a {len}-byte datagram from {from}: {reason}")
            }
        }
    }
}

/// Prints which of the peer's endpoints answered, and returns it.
fn report_path(peer: &PeerInfo, path: SocketAddr) -> SocketAddr {
    let kind = if path == peer.private {
        "private"
    } else if path == peer.public {
        "public"
    } else {
        "unexpected"
    };
    println!("path: {kind} {path}: talking to {} directly", peer.name);
    path
}
// ANCHOR_END: punch

// ANCHOR: chat
/// Phase 3: the chat. One `poll` waits for a line typed, a datagram, or the
/// time of the next keepalive, whichever comes first.
fn chat(
    fd: &OwnedFd,
    args: &Args,
    peer: &PeerInfo,
    path: SocketAddr,
    mut peer_knows: bool,
) -> Result<()> {
    println!("Ready: type a message and press Enter to send it; 'quit' exits.");
    prompt();
    let keepalive = (args.keepalive_ms > 0).then(|| Duration::from_millis(args.keepalive_ms));
    let mut last_sent = Instant::now();
    let mut stdin = LineReader::default();
    let mut buffer = vec![0u8; 65_536];
    loop {
        let timeout = match keepalive {
            Some(every) => {
                PollTimeout::try_from((last_sent + every).saturating_duration_since(Instant::now()))
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let stdin_fd = std::io::stdin();
        let mut fds = [
            PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(fd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => return Err(err).context("poll failed"),
        }
        let ready = |pollfd: &PollFd| {
            pollfd.revents().is_some_and(|events| {
                events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let (stdin_ready, socket_ready) = (ready(&fds[0]), ready(&fds[1]));

        if socket_ready && !receive_chat(fd, args, peer, path, &mut peer_knows, &mut buffer) {
            return Ok(());
        }
        if stdin_ready {
            let at_end = stdin.fill().context("cannot read standard input")?;
            while let Some(line) = stdin.next_line(at_end) {
                if line == b"quit" {
                    println!("[main] quitting...");
                    say_bye(fd, args, peer, path);
                    return Ok(());
                }
                if !line.is_empty() {
                    send_chat(fd, &line, peer, path);
                    last_sent = Instant::now();
                }
                prompt();
            }
            if at_end {
                println!("\n[main] end of input, quitting...");
                say_bye(fd, args, peer, path);
                return Ok(());
            }
        }
        // ANCHOR: keepalive
        // A NAT forgets a mapping that carried nothing for a while (for
        // Linux conntrack: nf_conntrack_udp_timeout_stream, 120 s by
        // default, often 30 s or less in home routers). A small datagram
        // now and then keeps the hole open while nobody types.
        if let Some(every) = keepalive
            && last_sent.elapsed() >= every
        {
            let message = Message::Keepalive {
                from: args.name.clone(),
                to: peer.name.clone(),
                token: peer.token,
            };
            send(fd, &message, path);
            last_sent = Instant::now();
        }
        // ANCHOR_END: keepalive
    }
}
// ANCHOR_END: chat

// ANCHOR: receive_chat
/// Handles one datagram during the chat; false when the peer left.
fn receive_chat(
    fd: &OwnedFd,
    args: &Args,
    peer: &PeerInfo,
    path: SocketAddr,
    peer_knows: &mut bool,
    buffer: &mut [u8],
) -> bool {
    let (len, from) = match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), buffer) {
        Ok((len, Some(from))) => match to_socket_addr(&from) {
            Some(from) => (len, from),
            None => return true,
        },
        Ok((_, None)) | Err(Errno::EAGAIN | Errno::EINTR) => return true,
        Err(err) => {
            eprintln!("warning: {err} reported on the socket; still chatting");
            return true;
        }
    };
    // The peer's datagrams come from one of its endpoints; the token is
    // what proves they are its own.
    let from_peer = from == path || from == peer.public || from == peer.private;
    let message = protocol::parse(&buffer[..len]);
    if let Ok(
        Message::Chat { token, .. }
        | Message::Keepalive { token, .. }
        | Message::PunchAck { token, .. },
    ) = &message
        && from_peer
        && *token == peer.token
    {
        // The peer answered us, or talks to us: it has found the path too.
        *peer_knows = true;
    }
    match message {
        Ok(Message::Chat { token, text }) if from_peer && token == peer.token => {
            // Exactly the bytes sent; not UTF-8 shows as U+FFFD.
            println!("\n[from {}] {}", peer.name, String::from_utf8_lossy(&text));
            prompt();
        }
        Ok(Message::Keepalive {
            from: who, token, ..
        }) if who == peer.name && token == peer.token => {}
        // A probe from a peer that may not have heard our answer yet. (A
        // peer that answered us, or talks to us, has found the path: its
        // late probes need no answer.)
        Ok(Message::Punch {
            from: who, token, ..
        }) if who == peer.name && token == peer.token && !*peer_knows => {
            let ack = Message::PunchAck {
                from: args.name.clone(),
                to: peer.name.clone(),
                token: peer.token,
            };
            send(fd, &ack, from);
        }
        Ok(
            Message::PunchAck {
                from: who, token, ..
            }
            | Message::Punch {
                from: who, token, ..
            },
        ) if (who == peer.name || who == args.name) && token == peer.token => {}
        Ok(Message::Bye {
            from: who, token, ..
        }) if who == peer.name && token == peer.token => {
            println!("\n{} left the chat; bye.", peer.name);
            return false;
        }
        _ if from == args.rendezvous => {}
        _ => eprintln!(
            "warning: dropped a {len}-byte datagram from {from}: not from {} in this session",
            peer.name
        ),
    }
    true
}
// ANCHOR_END: receive_chat

// ANCHOR: send_chat
/// Sends one typed line to the peer; reports only failures.
fn send_chat(fd: &OwnedFd, line: &[u8], peer: &PeerInfo, path: SocketAddr) {
    let message = Message::Chat {
        token: peer.token,
        text: line.to_vec(),
    };
    let datagram = message.encode();
    match socket::sendto(
        fd.as_raw_fd(),
        &datagram,
        &SockaddrStorage::from(path),
        MsgFlags::empty(),
    ) {
        Ok(_) => {}
        Err(Errno::EMSGSIZE) => eprintln!(
            "error: cannot send to {}: {}: a UDP datagram holds at most 65,507 bytes; the line has {} and the header {} more; nothing was sent",
            peer.name,
            Errno::EMSGSIZE,
            line.len(),
            datagram.len() - line.len()
        ),
        Err(err) => eprintln!("error: cannot send to {} at {path}: {err}", peer.name),
    }
}
// ANCHOR_END: send_chat

fn say_bye(fd: &OwnedFd, args: &Args, peer: &PeerInfo, path: SocketAddr) {
    let bye = Message::Bye {
        from: args.name.clone(),
        to: peer.name.clone(),
        token: peer.token,
    };
    send(fd, &bye, path);
}

/// Sends a protocol message; a failure is reported, and nothing stops: the
/// next retry, probe or keepalive goes out anyway.
fn send(fd: &OwnedFd, message: &Message, to: SocketAddr) {
    if let Err(err) = socket::sendto(
        fd.as_raw_fd(),
        &message.encode(),
        &SockaddrStorage::from(to),
        MsgFlags::empty(),
    ) {
        eprintln!("warning: cannot send {} to {to}: {err}", message.kind());
    }
}

/// Waits until `until` for a datagram; `None` when the time is up first.
fn receive(fd: &OwnedFd, buffer: &mut [u8], until: Instant) -> Result<Option<(usize, SocketAddr)>> {
    let timeout = PollTimeout::try_from(until.saturating_duration_since(Instant::now()))
        .unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(0) | Err(Errno::EINTR) => return Ok(None),
        Ok(_) => {}
        Err(err) => return Err(err).context("poll failed"),
    }
    match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), buffer) {
        Ok((len, Some(from))) => Ok(to_socket_addr(&from).map(|from| (len, from))),
        Ok((_, None)) | Err(Errno::EAGAIN | Errno::EINTR) => Ok(None),
        // An ICMP error for an earlier probe: that endpoint is closed, the
        // other may still answer.
        Err(Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH) => Ok(None),
        Err(err) => Err(err).context("cannot receive"),
    }
}

// ANCHOR: read_line
/// Standard input, read with read(2) only when `poll` says it is ready, and
/// cut into lines.
#[derive(Default)]
struct LineReader {
    pending: Vec<u8>,
}

impl LineReader {
    /// One read(2): never blocks after `poll` reported input (or its end).
    /// True at the end of input.
    fn fill(&mut self) -> nix::Result<bool> {
        let mut chunk = [0u8; 65_536];
        loop {
            match unistd::read(std::io::stdin().as_fd(), &mut chunk) {
                Ok(read) => {
                    self.pending.extend_from_slice(&chunk[..read]);
                    return Ok(read == 0);
                }
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// The next complete line without its "\n" (or "\r\n"). At the end of
    /// input, a last line without a newline is a line too: nothing typed
    /// is lost.
    fn next_line(&mut self, at_end: bool) -> Option<Vec<u8>> {
        if let Some(newline) = self.pending.iter().position(|&byte| byte == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=newline).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Some(line);
        }
        (at_end && !self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}
// ANCHOR_END: read_line

fn prompt() {
    print!("{PROMPT}");
    // A prompt that cannot be shown is no reason to stop chatting.
    let _ = std::io::stdout().flush();
}
