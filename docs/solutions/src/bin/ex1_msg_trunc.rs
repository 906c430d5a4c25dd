//! Exercise 1.1: notice a datagram that did not fit the buffer.
//!
//! recvfrom(2) silently drops the part of a datagram that does not fit.
//! recvmsg(2) says so: the kernel sets MSG_TRUNC in the returned flags. This
//! program receives a 100-byte datagram into 16 bytes and reports it.

use std::io::IoSliceMut;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use anyhow::{Context, Result, ensure};
use nix::sys::socket::{MsgFlags, SockaddrStorage, recvmsg};

// ANCHOR: solution
/// Receives one datagram into `buffer`; returns its length and whether the
/// kernel had to cut it.
fn receive_checked(socket: &UdpSocket, buffer: &mut [u8]) -> Result<(usize, bool)> {
    let mut iov = [IoSliceMut::new(buffer)];
    let message = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, None, MsgFlags::empty())
        .context("recvmsg failed")?;
    Ok((message.bytes, message.flags.contains(MsgFlags::MSG_TRUNC)))
}
// ANCHOR_END: solution

fn main() -> Result<()> {
    let receiver = UdpSocket::bind("127.0.0.1:0")?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    sender.send_to(&[b'x'; 100], receiver.local_addr()?)?;
    let mut small = [0u8; 16];
    let (len, truncated) = receive_checked(&receiver, &mut small)?;
    println!("received {len} bytes, truncated: {truncated}");
    ensure!(truncated && len == 16, "expected a cut datagram");
    Ok(())
}
