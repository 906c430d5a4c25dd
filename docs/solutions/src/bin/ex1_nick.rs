//! Exercise 1.3: a `/nick` command for lesson 1's chat.
//!
//! A typed line `/nick NAME` is not sent: it sets the name that prefixes
//! every later message (`NAME: text`). This program feeds typed lines to
//! the function that step b would call, sends what it returns through a
//! real UDP socket, and checks what arrives on the other one.

use std::net::UdpSocket;
use std::time::Duration;

use anyhow::{Result, ensure};

// ANCHOR: solution
/// What a typed line becomes: `Ok(Some(bytes))` to send, `Ok(None)` when
/// the line was a command, `Err` with a one-line reason for a bad command.
fn outgoing(line: &[u8], nick: &mut Option<Vec<u8>>) -> Result<Option<Vec<u8>>, String> {
    if let Some(name) = line.strip_prefix(b"/nick ") {
        let name = name.trim_ascii();
        if name.is_empty() {
            return Err("usage: /nick NAME (the name cannot be empty)".into());
        }
        *nick = Some(name.to_vec());
        return Ok(None);
    }
    Ok(Some(match nick {
        Some(name) => [name.as_slice(), b": ", line].concat(),
        None => line.to_vec(),
    }))
}
// ANCHOR_END: solution

fn main() -> Result<()> {
    let me = UdpSocket::bind("127.0.0.1:0")?;
    let peer = UdpSocket::bind("127.0.0.1:0")?;
    peer.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut nick = None;
    let typed: [&[u8]; 5] = [b"hello", b"/nick alice", b"hi again", b"/nick  ", b"bye"];
    let mut refused = 0;
    for line in typed {
        match outgoing(line, &mut nick) {
            Ok(Some(message)) => {
                me.send_to(&message, peer.local_addr()?)?;
            }
            Ok(None) => println!("name set: {}", String::from_utf8_lossy(line)),
            Err(reason) => {
                println!("refused {:?}: {reason}", String::from_utf8_lossy(line));
                refused += 1;
            }
        }
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    for _ in 0..3 {
        let (len, _) = peer.recv_from(&mut buffer)?;
        received.push(String::from_utf8_lossy(&buffer[..len]).into_owned());
    }
    println!("the peer received: {received:?}");
    ensure!(
        received == ["hello", "alice: hi again", "alice: bye"],
        "expected the name on the messages after /nick, and no command sent"
    );
    ensure!(refused == 1, "an empty name must be refused");
    Ok(())
}
