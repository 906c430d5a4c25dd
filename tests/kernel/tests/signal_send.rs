//! Lesson 3's third reason for a short `send`, checked on this kernel: a
//! blocking TCP `send` that a signal handler interrupts after it queued
//! some bytes returns that count: signal(7) says such a call "will return a
//! success status (normally, the number of bytes transferred)". Whether the
//! handler was installed with `SA_RESTART` changes nothing, since the call
//! did not fail.
//!
//! The receiver never reads, so the send fills the send buffer and the
//! receiver's receive buffer, then waits for room that never comes, until
//! the signal arrives.

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::libc;
use nix::sys::pthread::{pthread_kill, pthread_self};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::socket::{MsgFlags, send};
use testkit::tcp::buffer_max;
use testkit::{DEADLINE, LOCALHOST};

/// How many times the handler ran.
static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    // An atomic add is async-signal-safe.
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// What one interrupted send did.
#[derive(Debug)]
struct Interrupted {
    asked: usize,
    result: nix::Result<usize>,
    /// How many bytes the receiver got in all.
    delivered: usize,
}

/// Sends more than the connection's buffers can ever hold to a receiver that
/// does not read, with a handler for SIGALRM installed with `flags`; sends
/// SIGALRM to the sending thread once the send has blocked for 200 ms.
fn interrupted_send(flags: SaFlags) -> Interrupted {
    let action = SigAction::new(SigHandler::Handler(count_signal), flags, SigSet::empty());
    // SAFETY: the handler only does an atomic add, which is
    // async-signal-safe.
    let previous = unsafe { sigaction(Signal::SIGALRM, &action) }.expect("install the handler");

    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind a listener");
    let sender = TcpStream::connect(listener.local_addr().expect("the listener's address"))
        .expect("connect");
    let (mut receiver, _) = listener.accept().expect("accept");
    receiver
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");

    // More than the send buffer and the receive buffer hold at their
    // largest: the send cannot complete while nobody reads.
    let asked = buffer_max("tcp_wmem") + buffer_max("tcp_rmem") + 1024 * 1024;
    let data = vec![7u8; asked];
    let handled_before = HANDLED.load(Ordering::SeqCst);

    let (started_tx, started) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let sending = {
        let sender = sender.try_clone().expect("clone the sender");
        thread::spawn(move || {
            started_tx.send(pthread_self()).expect("report the thread");
            let result = send(sender.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL);
            done_tx.send(result).expect("report the result");
        })
    };
    let thread = started.recv_timeout(DEADLINE).expect("the sending thread");
    thread::sleep(Duration::from_millis(200));
    assert!(
        matches!(done.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "the send of {asked} bytes returned although nobody reads"
    );
    pthread_kill(thread, Signal::SIGALRM).expect("signal the sending thread");

    let result = done.recv_timeout(DEADLINE).unwrap_or_else(|_| {
        // Wake the send (it fails with EPIPE or returns short) so the
        // thread ends, then fail.
        let _ = sender.shutdown(Shutdown::Both);
        panic!("the send was still blocked {DEADLINE:?} after the signal")
    });
    sending.join().expect("the sending thread");
    // SAFETY: puts back the action found before, as it was.
    unsafe { sigaction(Signal::SIGALRM, &previous) }.expect("restore SIGALRM's action");
    assert_eq!(
        HANDLED.load(Ordering::SeqCst),
        handled_before + 1,
        "the handler ran once"
    );

    // The count is what was queued: the receiver gets exactly that much
    // before the end of the stream.
    drop(sender);
    let mut delivered = 0;
    let mut buffer = vec![0; 1024 * 1024];
    loop {
        match receiver.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => delivered += n,
            Err(err) => panic!("reading after {delivered} bytes: {err}"),
        }
    }
    Interrupted {
        asked,
        result,
        delivered,
    }
}

#[test]
fn a_blocking_send_interrupted_by_a_signal_after_progress_returns_short() {
    for (flags, name) in [
        (SaFlags::empty(), "without SA_RESTART"),
        (SaFlags::SA_RESTART, "with SA_RESTART"),
    ] {
        let interrupted = interrupted_send(flags);
        eprintln!("{name}: {interrupted:?}");
        let Interrupted {
            asked,
            result,
            delivered,
            ..
        } = interrupted;
        let sent = result.unwrap_or_else(|err| {
            panic!("{name}: a send interrupted after some progress succeeds, got {err}")
        });
        assert!(
            0 < sent && sent < asked,
            "{name}: the send returns a short count, got {sent} of {asked} bytes"
        );
        assert_eq!(
            delivered, sent,
            "{name}: the count is exactly what the kernel queued"
        );
    }
}
