//! A process-per-client echo server: the design that came before a thread
//! per client, and the one the series' previous post built.
//!
//! The parent only accepts. For each client it forks: the child closes its
//! copy of the listening socket, echoes until the client leaves, and exits;
//! the parent closes its copy of the client's socket and accepts the next.
//! A child that exits stays a zombie (its exit status kept for the parent)
//! until the parent waits for it, so a SIGCHLD handler reaps every child
//! that has exited. It is a peer in `tools/echo-bench`, not a lesson: the
//! benchmark shows what a process per client costs.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, SockaddrStorage, accept4, bind,
    getsockname, listen, recv, send, setsockopt, socket, sockopt,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

/// A TCP echo server: one process per client.
#[derive(Parser, Debug)]
#[command(name = "fork-echo-server", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8890")]
    bind: SocketAddr,
    /// Length of the queue of connections not accepted yet.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(i32).range(1..=nix::libc::SOMAXCONN as i64))]
    backlog: i32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Err(err) = run(&args);
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}

fn run(args: &Args) -> Result<Infallible> {
    reap_children_on_sigchld()?;
    let family = match args.bind {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let listener = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .context("cannot create a TCP socket")?;
    setsockopt(&listener, sockopt::ReuseAddr, &true).context("cannot set SO_REUSEADDR")?;
    bind(listener.as_raw_fd(), &SockaddrStorage::from(args.bind))
        .with_context(|| format!("cannot bind TCP socket to {}", args.bind))?;
    let backlog =
        Backlog::new(args.backlog).with_context(|| format!("invalid backlog {}", args.backlog))?;
    listen(&listener, backlog).with_context(|| format!("cannot listen on {}", args.bind))?;
    let local: SockaddrStorage =
        getsockname(listener.as_raw_fd()).context("cannot read the bound address")?;
    println!("listening on {local}");
    let _ = std::io::stdout().flush();

    loop {
        let raw_fd = match accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(raw_fd) => raw_fd,
            // SA_RESTART restarts accept after SIGCHLD; EINTR can still come
            // from other signals.
            Err(Errno::EINTR) => continue,
            Err(err @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                eprintln!("cannot accept a client: {err}; retrying in 100 ms");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(err @ (Errno::EBADF | Errno::EINVAL | Errno::ENOTSOCK | Errno::EFAULT)) => {
                return Err(err).context("cannot accept on the listening socket");
            }
            Err(err) => {
                eprintln!("cannot accept a client: {err}");
                continue;
            }
        };
        // SAFETY: accept4 just returned this descriptor; nothing else owns it.
        let client = unsafe { OwnedFd::from_raw_fd(raw_fd) };
        // SAFETY: this program has one thread, so the child is a complete
        // copy of it, and it only makes system calls until it exits.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // The child serves one client: it needs no listener (and
                // holding it would keep the port open after the parent exits).
                drop(listener);
                echo(&client);
                // The child never returns to the accept loop.
                std::process::exit(0);
            }
            Ok(ForkResult::Parent { .. }) => {
                // The child has its own copy; the parent's would keep the
                // connection open after the child closes it.
                drop(client);
            }
            Err(err) => {
                // EAGAIN (a limit on processes) or ENOMEM: this client only
                // is dropped; the others go on.
                eprintln!("cannot fork for a client: {err}; dropped it");
            }
        }
    }
}

/// Echoes everything the client sends back to it until it leaves.
fn echo(client: &OwnedFd) {
    let mut buffer = [0u8; 4096];
    loop {
        let received = match recv(client.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
            Ok(0) => return,
            Ok(received) => received,
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        };
        let mut data = &buffer[..received];
        while !data.is_empty() {
            match send(client.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
                Ok(sent) => data = &data[sent..],
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// Installs the SIGCHLD handler that reaps exited children. SA_RESTART
/// resumes the parent's `accept` after the handler instead of failing it
/// with EINTR; SA_NOCLDSTOP skips children that merely stopped.
fn reap_children_on_sigchld() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(reap_children),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler only calls waitpid and reads and restores errno,
    // all async-signal-safe.
    unsafe { sigaction(Signal::SIGCHLD, &action) }.context("cannot install the SIGCHLD handler")?;
    Ok(())
}

/// Waits for every child that has exited. Signals of one kind do not queue:
/// several children may exit before the handler runs and it is called
/// once, so it loops until no exited child is left (WNOHANG: without
/// waiting for the living ones).
extern "C" fn reap_children(_: nix::libc::c_int) {
    // waitpid sets errno when no child is left; the code this handler
    // interrupted may be about to read errno.
    let saved = Errno::last_raw();
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
    Errno::set_raw(saved);
}
