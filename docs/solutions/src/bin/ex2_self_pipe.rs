//! Exercise 2.3: close lesson 2's check-then-read race.
//!
//! Lesson 2 checks RUNNING, then calls read(2). A signal that lands between
//! the two is only noticed after the next line. The self-pipe trick: the
//! handler writes a byte into a pipe, and the main thread waits with poll(2)
//! on both stdin and the pipe, so a signal at any moment wakes it.
//!
//! This demo raises SIGINT at itself *before* it starts waiting, the exact
//! moment lesson 2 would miss, and still ends at once.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result, ensure};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{pipe2, write};

// ANCHOR: solution
/// The pipe's write end, for the handler (a plain integer: handlers get no
/// arguments, and writing to a descriptor is async-signal-safe).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn handle_signal(_: nix::libc::c_int) {
    let fd: RawFd = WAKE_FD.load(Ordering::SeqCst);
    // SAFETY: the descriptor stays open for the program's whole life.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = write(fd, b"!");
}

/// Waits until stdin is readable (true) or a signal arrived (false).
fn wait_for_input_or_signal(wake_read: &OwnedFd) -> Result<bool> {
    let stdin = std::io::stdin();
    loop {
        let mut fds = [
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake_read.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            result => result.context("poll")?,
        };
        if fds[1]
            .revents()
            .is_some_and(|events| events.contains(PollFlags::POLLIN))
        {
            return Ok(false);
        }
        if fds[0].revents().is_some_and(|events| !events.is_empty()) {
            return Ok(true);
        }
    }
}
// ANCHOR_END: solution

fn main() -> Result<()> {
    let (wake_read, wake_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    WAKE_FD.store(wake_write.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(wake_write); // open until exit, for the handler
    let action = SigAction::new(
        SigHandler::Handler(handle_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only writes a byte to a pipe.
    unsafe { signal::sigaction(Signal::SIGINT, &action) }?;

    // The signal arrives before the wait starts: lesson 2's race window.
    signal::raise(Signal::SIGINT)?;
    let input = wait_for_input_or_signal(&wake_read)?;
    println!("woke up: {}", if input { "input" } else { "signal" });
    ensure!(!input, "the signal should have woken the wait");
    Ok(())
}
