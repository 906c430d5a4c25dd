//! Why the lessons' `send_all` loops, checked on this kernel: on Linux a
//! blocking TCP `send` waits until the kernel has queued every byte, so it
//! returns short only when something cuts the wait: a send timeout
//! (`SO_SNDTIMEO`), a non-blocking socket, or a signal after some progress
//! (that last case has a file of its own, `signal_send.rs`).
//! The loop costs nothing and keeps the code right in all three cases (and
//! on systems that behave otherwise).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, send, setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use testkit::{DEADLINE, LOCALHOST};

/// Far more than a loopback connection's send and receive buffers hold
/// together (a few MiB at most with the default sysctls).
const MUCH: usize = 32 * 1024 * 1024;

/// A connected pair on loopback: (the sender's end, the receiver's end).
fn connection() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind a listener");
    let sender = TcpStream::connect(listener.local_addr().expect("the listener's address"))
        .expect("connect");
    let (receiver, _) = listener.accept().expect("accept");
    receiver
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    (sender, receiver)
}

/// Reads from `receiver` until the sender closes; returns the byte count.
fn drain(mut receiver: TcpStream) -> usize {
    let mut buffer = vec![0; 1024 * 1024];
    let mut total = 0;
    loop {
        match receiver.read(&mut buffer) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(err) => panic!("reading after {total} bytes: {err}"),
        }
    }
}

#[test]
fn blocking_send_queues_everything_before_returning() {
    let (sender, receiver) = connection();
    // The reader starts late, so the send must wait for room: it still
    // returns only once every byte is queued.
    let reader = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        drain(receiver)
    });
    let data = vec![7u8; MUCH];
    let sent = send(sender.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL).expect("send");
    assert_eq!(sent, MUCH, "one blocking send took every byte");
    drop(sender);
    assert_eq!(reader.join().expect("reader thread"), MUCH);
}

#[test]
fn send_with_sndtimeo_returns_short() {
    let (sender, _receiver) = connection(); // Never read.
    setsockopt(&sender, sockopt::SendTimeout, &TimeVal::milliseconds(100))
        .expect("set SO_SNDTIMEO");
    let data = vec![7u8; MUCH];
    let sent = send(sender.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL).expect("send");
    assert!(
        0 < sent && sent < MUCH,
        "the timeout cut the send short after some progress: {sent} of {MUCH}"
    );
    // The buffers may still grow (the kernel tunes them) and take a little
    // more; once nothing fits before the timeout, the send is an error.
    assert_eq!(
        send_until_error(&sender, &data),
        Errno::EAGAIN,
        "a send that queues nothing before the timeout fails with EAGAIN"
    );
}

#[test]
fn nonblocking_send_returns_short_when_the_buffer_is_full() {
    let (sender, _receiver) = connection(); // Never read.
    sender.set_nonblocking(true).expect("make non-blocking");
    let data = vec![7u8; MUCH];
    let sent = send(sender.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL).expect("send");
    assert!(
        0 < sent && sent < MUCH,
        "a non-blocking send takes what fits: {sent} of {MUCH}"
    );
    assert_eq!(
        send_until_error(&sender, &data),
        Errno::EAGAIN,
        "once the buffer is full, nothing fits: EAGAIN"
    );
}

/// Sends `data` again and again (each send short, as the tests above show)
/// until one fails; returns its error. Bounded: the buffers cannot grow
/// forever.
fn send_until_error(sender: &TcpStream, data: &[u8]) -> Errno {
    for _ in 0..100 {
        match send(sender.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(sent) => assert!(sent < data.len(), "a send took all {sent} bytes"),
            Err(err) => return err,
        }
    }
    panic!(
        "100 sends of {} bytes into an unread connection all succeeded",
        data.len()
    );
}
