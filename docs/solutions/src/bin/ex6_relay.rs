//! Exercise 6.3: a relay for when punching fails.
//!
//! When no probe finds a hole, two peers can still talk through a server
//! both can reach, as TURN does: each peer announces itself to the relay
//! with the session's token, and the relay forwards every datagram of one
//! to the other. The relay learns each public endpoint from the source
//! address, as lesson 6's rendezvous does, and forwards only between the
//! two endpoints of a token: a stranger who knows the token gets nothing
//! through. The demonstration runs on loopback.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use anyhow::{Result, ensure};

/// The endpoints that announced themselves for one token, by name.
type Pair = Vec<(String, SocketAddr)>;

// ANCHOR: relay
/// Serves forever: `RELAY token name` announces a peer (answered `OK`, or
/// `FULL` when two others hold the token); `DATA token text` from one of
/// a token's two endpoints goes, unchanged, to the other. All else: dropped.
fn relay(socket: UdpSocket) -> Result<()> {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut buffer = [0u8; 2048];
    loop {
        let (len, from) = socket.recv_from(&mut buffer)?;
        let datagram = &buffer[..len];
        let text = String::from_utf8_lossy(datagram);
        let mut fields = text.splitn(3, ' ');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("RELAY"), Some(token), Some(name)) => {
                let pair = pairs.entry(token.to_owned()).or_default();
                pair.retain(|(known, _)| known != name);
                let answer: &[u8] = if pair.len() < 2 {
                    pair.push((name.to_owned(), from));
                    b"OK"
                } else {
                    b"FULL"
                };
                socket.send_to(answer, from)?;
            }
            (Some("DATA"), Some(token), Some(_)) => {
                let Some(pair) = pairs.get(token) else {
                    continue;
                };
                // Only from one of the pair, only to the other one.
                if pair.len() == 2 && pair.iter().any(|(_, addr)| *addr == from) {
                    let (_, to) = pair
                        .iter()
                        .find(|(_, addr)| *addr != from)
                        .unwrap_or(&pair[0]);
                    socket.send_to(datagram, *to)?;
                }
            }
            _ => {}
        }
    }
}
// ANCHOR_END: relay

fn peer(relay: SocketAddr, token: &str, name: &str) -> Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.send_to(format!("RELAY {token} {name}").as_bytes(), relay)?;
    let answer = heard(&socket)?;
    ensure!(answer.as_deref() == Some("OK"), "{name} got {answer:?}");
    Ok(socket)
}

/// The next datagram, or None when nothing came within the read timeout.
fn heard(socket: &UdpSocket) -> Result<Option<String>> {
    let mut buffer = [0u8; 2048];
    match socket.recv_from(&mut buffer) {
        Ok((len, _)) => Ok(Some(String::from_utf8_lossy(&buffer[..len]).into_owned())),
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

fn main() -> Result<()> {
    let server = UdpSocket::bind("127.0.0.1:0")?;
    let addr = server.local_addr()?;
    thread::spawn(move || relay(server));

    let alice = peer(addr, "42", "alice")?;
    let bob = peer(addr, "42", "bob")?;
    alice.send_to(b"DATA 42 hello bob", addr)?;
    ensure!(
        heard(&bob)?.as_deref() == Some("DATA 42 hello bob"),
        "bob hears alice"
    );
    bob.send_to(b"DATA 42 hi alice", addr)?;
    ensure!(
        heard(&alice)?.as_deref() == Some("DATA 42 hi alice"),
        "alice hears bob"
    );

    // A stranger with the right token: refused as a third, and not relayed.
    let mallory = UdpSocket::bind("127.0.0.1:0")?;
    mallory.set_read_timeout(Some(Duration::from_secs(2)))?;
    mallory.send_to(b"RELAY 42 mallory", addr)?;
    ensure!(
        heard(&mallory)?.as_deref() == Some("FULL"),
        "a third peer is refused"
    );
    mallory.send_to(b"DATA 42 I am alice", addr)?;
    alice.send_to(b"DATA 7 an unknown token", addr)?;
    for socket in [&alice, &bob] {
        socket.set_read_timeout(Some(Duration::from_millis(300)))?;
        let stray = heard(socket)?;
        ensure!(stray.is_none(), "relayed what it must not: {stray:?}");
    }
    println!("the relay carried alice's and bob's lines, and nobody else's");
    Ok(())
}
