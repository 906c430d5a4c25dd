//! A signal that arrives while a thread waits in `recvfrom`, checked on
//! this kernel: signal(7) says a socket call with a receive timeout
//! (SO_RCVTIMEO) is never restarted, even when the handler was installed
//! with SA_RESTART; it fails with EINTR. That is the original's receiver
//! thread: `signal()` installs its handler with SA_RESTART, its socket has
//! a one-second timeout, and any error other than EAGAIN ends its loop.
//! Without the timeout, the same call is restarted.
//!
//! This file is its own test binary: the SIGUSR1 handler it installs is
//! process-wide.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::pthread::{Pthread, pthread_kill, pthread_self};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::socket::{SockaddrStorage, recvfrom};
use testkit::{DEADLINE, LOCALHOST};

static HANDLED: AtomicUsize = AtomicUsize::new(0);

/// Held by each test: the handler's count is process-wide, so the tests of
/// this file take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

extern "C" fn count_signal(_: nix::libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

fn install_handler_with_sa_restart() {
    let action = SigAction::new(
        SigHandler::Handler(count_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only touches an atomic (async-signal-safe).
    unsafe { sigaction(Signal::SIGUSR1, &action) }.expect("install the SIGUSR1 handler");
}

/// Runs `recvfrom` on `socket` in a new thread and signals that thread with
/// SIGUSR1 every 20 ms until the call returns (at most [`DEADLINE`]);
/// returns its result and how many signals were handled meanwhile. With
/// `then_send`, a datagram is sent to the socket after a few signals.
fn recvfrom_under_signals(socket: UdpSocket, then_send: bool) -> (nix::Result<usize>, usize) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    install_handler_with_sa_restart();
    let addr = socket.local_addr().expect("local address");
    let (tx, rx) = mpsc::channel::<Pthread>();
    let receiver = thread::spawn(move || {
        tx.send(pthread_self()).expect("send the thread id");
        let mut buffer = [0; 64];
        recvfrom::<SockaddrStorage>(socket.as_raw_fd(), &mut buffer).map(|(len, _)| len)
    });
    let thread = rx.recv().expect("the receiver's thread id");
    let start = Instant::now();
    let before = HANDLED.load(Ordering::SeqCst);
    let mut sent = false;
    while !receiver.is_finished() {
        assert!(start.elapsed() < DEADLINE, "recvfrom never returned");
        // The thread may not be in recvfrom yet; signals until it returns.
        let _ = pthread_kill(thread, Signal::SIGUSR1);
        thread::sleep(Duration::from_millis(20));
        if then_send && !sent && HANDLED.load(Ordering::SeqCst) - before >= 5 {
            UdpSocket::bind((LOCALHOST, 0))
                .and_then(|sender| sender.send_to(b"hello", addr))
                .expect("send a datagram");
            sent = true;
        }
    }
    let result = receiver.join().expect("receiver thread");
    (result, HANDLED.load(Ordering::SeqCst) - before)
}

#[test]
fn recvfrom_with_rcvtimeo_fails_with_eintr_even_under_sa_restart() {
    let socket = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    // Long enough that only the signal can end the wait within the test.
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (result, handled) = recvfrom_under_signals(socket, false);
    assert!(handled > 0, "no signal was handled");
    assert_eq!(result, Err(Errno::EINTR));
}

#[test]
fn recvfrom_without_a_timeout_is_restarted_under_sa_restart() {
    let socket = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let (result, handled) = recvfrom_under_signals(socket, true);
    assert!(handled >= 5, "only {handled} signals were handled");
    assert_eq!(
        result,
        Ok(5),
        "restarted after each signal, then got the datagram"
    );
}
