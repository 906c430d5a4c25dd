//! Writing to a connection whose peer has closed, checked on this kernel.
//!
//! The peer's `close` sends a FIN, which only says "I will send no more":
//! this side cannot tell whether the peer still reads. So the first write
//! after it succeeds; the peer's kernel, whose socket is gone, answers with
//! an RST, and only a later write fails: with EPIPE, and the signal SIGPIPE,
//! whose default action kills the process, unless the write passes
//! MSG_NOSIGNAL.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{MsgFlags, send};
use testkit::{DEADLINE, LOCALHOST, TcpState, tcp_sockets};

/// A connection whose accepted end was closed; returns the client's end
/// once it has read the end of stream (it sits in CLOSE-WAIT).
fn peer_closed() -> TcpStream {
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind a listener");
    let mut client = TcpStream::connect(listener.local_addr().expect("the listener's address"))
        .expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    drop(accepted); // The peer's FIN.
    client
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    assert_eq!(client.read(&mut [0; 8]).expect("read"), 0, "end of stream");
    client
}

/// The state of the row `local` → `remote` in the TCP table (`None`: no
/// row, the socket is CLOSED). Both ends are matched: another test's old
/// socket may have had the same local port.
fn state_of(local: SocketAddr, remote: SocketAddr) -> Option<TcpState> {
    tcp_sockets()
        .into_iter()
        .find(|socket| socket.local == local && socket.remote == remote)
        .map(|socket| socket.state)
}

/// Waits until `local` → `remote` has no row any more: an RST closed it.
fn wait_until_closed(local: SocketAddr, remote: SocketAddr) {
    let start = Instant::now();
    while let Some(state) = state_of(local, remote) {
        assert!(
            start.elapsed() < DEADLINE,
            "{local} → {remote} still {state:?} after {DEADLINE:?}: no RST came"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn first_send_after_the_peer_closed_succeeds_and_draws_an_rst() {
    let client = peer_closed();
    let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    assert_eq!(state_of(local, remote), Some(TcpState::CloseWait));
    assert_eq!(
        send(client.as_raw_fd(), b"hello?", MsgFlags::MSG_NOSIGNAL),
        Ok(6),
        "the first send after the peer's FIN succeeds"
    );
    // The peer's kernel answers the data with an RST: the socket is closed.
    wait_until_closed(local, remote);
}

#[test]
fn next_send_fails_with_epipe() {
    let client = peer_closed();
    let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    send(client.as_raw_fd(), b"hello?", MsgFlags::MSG_NOSIGNAL).expect("first send");
    wait_until_closed(local, remote);
    assert_eq!(
        send(client.as_raw_fd(), b"still there?", MsgFlags::MSG_NOSIGNAL),
        Err(Errno::EPIPE),
        "after the RST, a send fails with EPIPE"
    );

    // Without MSG_NOSIGNAL the same send also raises SIGPIPE in the sending
    // thread. Rust programs ignore SIGPIPE, and an ignored signal is thrown
    // away; a blocked one is kept pending, so block it here to see it.
    let sigpipe = SigSet::from_iter([Signal::SIGPIPE]);
    sigpipe.thread_block().expect("block SIGPIPE");
    assert_eq!(
        send(client.as_raw_fd(), b"and now?", MsgFlags::empty()),
        Err(Errno::EPIPE)
    );
    let raised = sigpipe_pending();
    if raised {
        sigpipe.wait().expect("take the pending SIGPIPE");
    }
    sigpipe.thread_unblock().expect("unblock SIGPIPE");
    assert!(raised, "a send without MSG_NOSIGNAL raised SIGPIPE");
}

/// Whether SIGPIPE is pending for this thread (sigpending(2); nix has no
/// wrapper for it).
fn sigpipe_pending() -> bool {
    use nix::libc;
    // SAFETY: `set` is a valid sigset_t that sigpending fills in, and
    // sigismember only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        assert_eq!(libc::sigpending(&mut set), 0, "sigpending");
        libc::sigismember(&set, libc::SIGPIPE) == 1
    }
}
