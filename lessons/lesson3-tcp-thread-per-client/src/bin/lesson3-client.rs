//! Lesson 3's client: sends each line typed on stdin to the echo server and
//! prints the echo.
//!
//! The steps follow the post: create the socket, connect, then a loop that
//! reads a line, sends it and reads the echo. Typing `exit` (or ending the
//! input with Ctrl+D) quits. It serves lesson 4's server as well.
//!
//! Two limits of this design, kept from the post (lesson 5's client, one
//! thread waiting on the terminal and the socket at once, has neither):
//! - It sends a whole line before reading any of the echo. The server
//!   echoes as it reads, so a line larger than what both sockets' buffers
//!   hold fills them: the server blocks sending the echo nobody reads, stops
//!   reading, and the client blocks sending. Neither ever moves again.
//! - While it waits for you to type, it does not look at the socket: if the
//!   server dies, the client notices only when it next sends.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, connect, recv, send, socket,
};

/// A line-oriented client for the echo server.
#[derive(Parser, Debug)]
// A later occurrence of a flag replaces an earlier one.
#[command(name = "lesson3-client", version, args_override_self = true)]
struct Args {
    /// Address of the echo server (IPv4 or IPv6, e.g. `[::1]:8890`).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8890")]
    server: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(server: SocketAddr) -> Result<()> {
    let family = match server {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };

    // ANCHOR: connect
    // 1. Create the socket: TCP, of the server address's family.
    let socket = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .context("cannot create a TCP socket")?;

    // 2. Connect to the server. The kernel picks this side's port.
    match connect(socket.as_raw_fd(), &SockaddrStorage::from(server)) {
        Ok(()) => {}
        Err(Errno::ECONNREFUSED) => {
            bail!(
                "cannot connect to {server}: {}; is the server running?",
                Errno::ECONNREFUSED
            )
        }
        Err(err) => return Err(anyhow!(err).context(format!("cannot connect to {server}"))),
    }
    say(format_args!("connected to {server}"))?;
    // ANCHOR_END: connect

    // ANCHOR: chat_loop
    // 3. Send each line typed and print its echo.
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Raw bytes, not a String: a line that is not UTF-8 is still sent
        // as typed, byte for byte.
        if stdin
            .read_until(b'\n', &mut line)
            .context("cannot read standard input")?
            == 0
        {
            return Ok(()); // End of input (Ctrl+D).
        }
        // Fix: the original sends "exit" to the server and quits without
        // reading its echo. The word is a command to this client, so it is
        // not sent at all.
        if trim_newline(&line) == b"exit" {
            return say(format_args!("goodbye"));
        }
        send_all(&socket, &line).with_context(|| format!("cannot send to server {server}"))?;
        let echo = read_echo(&socket, line.len(), server)?;
        let text = String::from_utf8_lossy(trim_newline(&echo));
        say(format_args!("client receive: {text}"))?;
    }
    // ANCHOR_END: chat_loop
}

/// Sends every byte of `data`. On Linux a blocking send queues everything
/// before it returns, unless a signal interrupts it after some progress (or
/// a send timeout or non-blocking mode is set, which this client does not
/// do); the loop sends whatever is left.
fn send_all(socket: &OwnedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        // MSG_NOSIGNAL: if the server is gone, a send fails with EPIPE (the
        // first one after the server closed usually still succeeds) rather
        // than killing the client with SIGPIPE before it can say why.
        match send(socket.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(sent) => data = &data[sent..],
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

// ANCHOR: read_echo
/// Receives exactly `len` bytes: the echo of the line just sent.
///
/// Fix: the original calls recv once and prints whatever came. TCP is a
/// byte stream, not a stream of messages: one recv may return part of the
/// echo, and the next one the rest together with the start of another.
/// Counting bytes keeps each echo whole and apart.
fn read_echo(socket: &OwnedFd, len: usize, server: SocketAddr) -> Result<Vec<u8>> {
    let mut echo = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match recv(socket.as_raw_fd(), &mut echo[filled..], MsgFlags::empty()) {
            Ok(0) => bail!(
                "server {server} closed the connection ({filled} of {len} bytes of the echo came back)"
            ),
            Ok(received) => filled += received,
            Err(Errno::EINTR) => {}
            Err(err) => {
                return Err(anyhow!(err).context(format!("cannot receive from server {server}")));
            }
        }
    }
    Ok(echo)
}
// ANCHOR_END: read_echo

/// `line` without its line ending ("\n" or "\r\n").
fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Prints one line to stdout; an error (stdout closed) is returned, not a
/// panic as with `println!`.
fn say(line: std::fmt::Arguments) -> Result<()> {
    writeln!(std::io::stdout().lock(), "{line}").context("cannot write to standard output")
}
