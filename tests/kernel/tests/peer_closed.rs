//! Writing to a connection whose peer has closed, checked on this kernel.
//!
//! The peer's `close` sends a FIN, which only says "I will send no more":
//! this side cannot tell whether the peer still reads. So the first write
//! after it succeeds. The peer's socket is not gone: it waits in FIN-WAIT-2
//! for this side's FIN. But no program can read it any more, and data that
//! arrives after `close` is answered with an RST (RFC 1122, 4.2.2.13: a TCP
//! that closes both ways "SHOULD send a RST to show that data was lost";
//! Linux: `tcp_timewait_state_process` for the orphan in FIN-WAIT-2,
//! `tcp_rcv_state_process` for a full socket). A socket that only shut its
//! sending side down takes the same data. After the RST a write fails: with
//! EPIPE, and the signal SIGPIPE, whose default action kills the process,
//! unless the write passes MSG_NOSIGNAL.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{MsgFlags, send};
use testkit::{DEADLINE, LOCALHOST, TcpState, tcp_sockets};

/// A connection on loopback: (the accepted end, the client's end).
fn connection() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind a listener");
    let client = TcpStream::connect(listener.local_addr().expect("the listener's address"))
        .expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    client
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    (accepted, client)
}

/// A connection whose accepted end was closed; returns the client's end
/// once it has read the end of stream (it sits in CLOSE-WAIT) and the
/// accepted end, which no process owns any more, waits in FIN-WAIT-2.
fn peer_closed() -> TcpStream {
    let (accepted, mut client) = connection();
    drop(accepted); // close(): the peer's FIN.
    assert_eq!(client.read(&mut [0; 8]).expect("read"), 0, "end of stream");
    let local = client.local_addr().expect("the client's address");
    let remote = client.peer_addr().expect("the peer's address");
    wait_for_state(remote, local, TcpState::FinWait2);
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

/// Waits until the row `local` → `remote` is in `state`.
fn wait_for_state(local: SocketAddr, remote: SocketAddr, state: TcpState) {
    let start = Instant::now();
    loop {
        let found = state_of(local, remote);
        if found == Some(state) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{local} → {remote} is {found:?}, not {state:?}, after {DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
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

/// The closed side still has its socket when the data arrives: a
/// FIN-WAIT-2 row, which `peer_closed` waited for. The data draws an RST
/// that ends both rows.
#[test]
fn first_send_after_the_peer_closed_succeeds_and_draws_an_rst() {
    let client = peer_closed();
    let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    assert_eq!(state_of(local, remote), Some(TcpState::CloseWait));
    assert_eq!(
        state_of(remote, local),
        Some(TcpState::FinWait2),
        "the closed side's socket is still there as the data leaves"
    );
    assert_eq!(
        send(client.as_raw_fd(), b"hello?", MsgFlags::MSG_NOSIGNAL),
        Ok(6),
        "the first send after the peer's FIN succeeds"
    );
    // The FIN-WAIT-2 socket answers the data with an RST and is dropped;
    // the RST closes this side's socket.
    wait_until_closed(remote, local);
    wait_until_closed(local, remote);
}

/// The contrast: the same FIN, from `shutdown(SHUT_WR)` instead of `close`.
/// The peer's socket waits in the same FIN-WAIT-2 state, but its program may
/// still read, so the data is taken and no RST comes: what draws the RST
/// is the data arriving after `close`, not the state.
#[test]
fn after_a_half_close_the_same_data_is_read_not_reset() {
    let (accepted, mut client) = connection();
    accepted
        .shutdown(Shutdown::Write)
        .expect("shutdown(SHUT_WR)");
    assert_eq!(client.read(&mut [0; 8]).expect("read"), 0, "end of stream");
    let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    wait_for_state(remote, local, TcpState::FinWait2);
    assert_eq!(
        send(client.as_raw_fd(), b"hello?", MsgFlags::MSG_NOSIGNAL),
        Ok(6)
    );
    accepted
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    let mut received = [0; 6];
    (&accepted)
        .read_exact(&mut received)
        .expect("the half-closed side reads the data");
    assert_eq!(&received, b"hello?");
    assert_eq!(state_of(local, remote), Some(TcpState::CloseWait), "no RST");
    assert_eq!(state_of(remote, local), Some(TcpState::FinWait2));
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
