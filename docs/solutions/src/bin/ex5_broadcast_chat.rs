//! Exercise 5.3: an epoll broadcast chat.
//!
//! Lesson 5's server, changed so that every complete line a client sends
//! goes to every other client, prefixed with the sender's address, and
//! never back to the sender. One thread and one epoll instance, as in the
//! lesson; the demonstration connects three clients on loopback.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use anyhow::{Result, ensure};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

const LISTENER: u64 = 0;
/// A member whose unsent lines pass this is too slow for the room: closed.
const MAX_PENDING: usize = 64 * 1024;

/// One client in the room.
struct Member {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes of a line not finished yet.
    partial: Vec<u8>,
    /// Other members' lines not sent to this one yet.
    pending: Vec<u8>,
    interest: EpollFlags,
}

// ANCHOR: broadcast
/// Serves the room until the listener or epoll fails.
fn serve(listener: TcpListener) -> Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
    let mut members: HashMap<u64, Member> = HashMap::new();
    let mut next_token = LISTENER + 1;
    let mut events = [EpollEvent::empty(); 64];
    loop {
        let ready = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        };
        for event in &events[..ready] {
            let token = event.data();
            if token == LISTENER {
                while let Ok((stream, peer)) = listener.accept() {
                    stream.set_nonblocking(true)?;
                    epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, next_token))?;
                    let welcome = format!("welcome, {} in the room\n", members.len() + 1);
                    let member = Member {
                        stream,
                        peer,
                        partial: Vec::new(),
                        pending: welcome.into_bytes(),
                        interest: EpollFlags::EPOLLIN,
                    };
                    members.insert(next_token, member);
                    settle(&epoll, &mut members, &[next_token])?;
                    next_token += 1;
                }
                continue;
            }
            // Tokens are never reused: one closed earlier in the batch is gone.
            let Some(member) = members.get_mut(&token) else {
                continue;
            };
            let (lines, gone) = member.receive(event.events());
            if gone {
                // Dropping the stream closes it and takes it out of epoll.
                members.remove(&token);
                continue;
            }
            let mut touched = vec![token];
            for (&other, member) in members.iter_mut().filter(|(t, _)| **t != token) {
                for line in &lines {
                    member.pending.extend_from_slice(line);
                }
                if !lines.is_empty() {
                    touched.push(other);
                }
            }
            settle(&epoll, &mut members, &touched)?;
        }
    }
}

/// Sends what fits to each touched member, closes the ones that failed or
/// fell too far behind, and asks for EPOLLOUT only while lines wait.
fn settle(epoll: &Epoll, members: &mut HashMap<u64, Member>, touched: &[u64]) -> Result<()> {
    for token in touched {
        let Some(member) = members.get_mut(token) else {
            continue;
        };
        if member.flush().is_err() || member.pending.len() > MAX_PENDING {
            members.remove(token);
            continue;
        }
        let mut wanted = EpollFlags::EPOLLIN;
        if !member.pending.is_empty() {
            wanted |= EpollFlags::EPOLLOUT;
        }
        if wanted != member.interest {
            epoll.modify(&member.stream, &mut EpollEvent::new(wanted, *token))?;
            member.interest = wanted;
        }
    }
    Ok(())
}
// ANCHOR_END: broadcast

impl Member {
    /// Reads once (level-triggered, as in the lesson); returns the lines now
    /// complete, each prefixed with the sender, and whether the member left.
    fn receive(&mut self, events: EpollFlags) -> (Vec<Vec<u8>>, bool) {
        let mut lines = Vec::new();
        let readable = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        if events.intersects(readable) {
            let mut buffer = [0u8; 4096];
            match self.stream.read(&mut buffer) {
                Ok(0) => return (lines, true),
                Ok(received) => self.partial.extend_from_slice(&buffer[..received]),
                Err(err) if is_not_now(&err) => {}
                Err(_) => return (lines, true),
            }
            while let Some(end) = self.partial.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                lines.push([format!("{}: ", self.peer).into_bytes(), line].concat());
            }
        }
        if events.contains(EpollFlags::EPOLLOUT) && self.flush().is_err() {
            return (lines, true);
        }
        (lines, false)
    }

    /// Sends as much of the pending lines as the kernel takes now.
    fn flush(&mut self) -> std::io::Result<()> {
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(sent) => {
                    self.pending.drain(..sent);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

fn is_not_now(err: &std::io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// A member of the demonstration: its stream and a line reader on it.
struct Client {
    stream: TcpStream,
    lines: BufReader<TcpStream>,
    /// How the server knows us: the prefix of our lines.
    me: SocketAddr,
}

impl Client {
    fn join(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut client = Client {
            lines: BufReader::new(stream.try_clone()?),
            me: stream.local_addr()?,
            stream,
        };
        // Once the welcome is here, the server has made us a member.
        let welcome = client.line()?;
        ensure!(welcome.starts_with("welcome"), "got {welcome:?}");
        Ok(client)
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.lines.read_line(&mut line)?;
        Ok(line)
    }

    fn says(&self, line: &str) -> String {
        format!("{}: {line}", self.me)
    }
}

fn main() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || serve(listener));
    let mut alice = Client::join(addr)?;
    let mut bob = Client::join(addr)?;
    let mut carol = Client::join(addr)?;

    // A line in two pieces arrives whole, at the two others only.
    alice.stream.write_all(b"hello from")?;
    thread::sleep(Duration::from_millis(100));
    alice.stream.write_all(b" alice\n")?;
    let expected = alice.says("hello from alice\n");
    ensure!(bob.line()? == expected, "bob hears alice");
    ensure!(carol.line()? == expected, "carol hears alice");

    bob.stream.write_all(b"hi, bob here\n")?;
    let from_bob = bob.says("hi, bob here\n");
    // alice's next line is bob's: her own never came back to her.
    ensure!(alice.line()? == from_bob, "alice hears bob, not herself");
    ensure!(carol.line()? == from_bob, "carol hears bob");

    // A member who leaves is dropped; the others go on.
    drop(carol);
    alice.stream.write_all(b"still here\n")?;
    ensure!(
        bob.line()? == alice.says("still here\n"),
        "the room goes on"
    );
    println!("a line from one client reached the two others, and never its sender");
    Ok(())
}
