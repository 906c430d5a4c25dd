//! A lesson binary running under test: type into it, wait for what it prints,
//! signal it, and collect what it printed for the book.
//!
//! Two reader threads copy the child's stdout and stderr into one shared log as
//! the bytes arrive, so a test can wait for a line with a deadline instead of
//! sleeping and hoping. The log also records what the test typed, in order,
//! which turns a run into a transcript that looks like a terminal session.
//!
//! This is the workspace's one "child process, reader threads, wait with a
//! deadline": netlab's packet captures run tcpdump through it too
//! ([`Running::try_start`], [`Running::wait_until`]).

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use wait_timeout::ChildExt;

use crate::DEADLINE;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    Stdout,
    Stderr,
    Typed,
}

#[derive(Default)]
struct LogState {
    /// Every chunk in the order it arrived (or was typed).
    events: Vec<(Source, Vec<u8>)>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// How far `expect_*` calls have consumed each stream.
    stdout_seen: usize,
    stderr_seen: usize,
    /// Output streams that have not reached end of file yet.
    open_streams: usize,
}

impl LogState {
    fn stream(&mut self, source: Source) -> (&Vec<u8>, &mut usize) {
        match source {
            Source::Stdout => (&self.stdout, &mut self.stdout_seen),
            _ => (&self.stderr, &mut self.stderr_seen),
        }
    }
}

#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, source: Source, bytes: &[u8]) {
        let mut state = self.lock();
        match source {
            Source::Stdout => state.stdout.extend_from_slice(bytes),
            Source::Stderr => state.stderr.extend_from_slice(bytes),
            Source::Typed => {}
        }
        match state.events.last_mut() {
            Some((last, chunk)) if *last == source => chunk.extend_from_slice(bytes),
            _ => state.events.push((source, bytes.to_vec())),
        }
        self.changed.notify_all();
    }
}

/// What a program printed so far, as [`Running::wait_until`] shows it.
#[derive(Debug)]
pub struct Output<'a> {
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    /// Both streams reached end of file: nothing more will come.
    pub closed: bool,
}

/// A binary started by a test, with all three standard streams piped.
///
/// Dropping it kills the process, so a failing test leaves nothing behind.
pub struct Running {
    name: String,
    command_line: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: Arc<Log>,
    exit: Option<ExitStatus>,
}

impl Running {
    /// Starts `command`; `name` labels it in failure messages ("peer A").
    pub fn start(name: &str, command: Command) -> Running {
        Running::try_start(name, command).unwrap_or_else(|err| panic!("{name}: {err}"))
    }

    /// Like [`Running::start`], but a program that cannot be started is an
    /// error (naming the command line), not a panic.
    pub fn try_start(name: &str, mut command: Command) -> std::io::Result<Running> {
        let program = std::path::Path::new(command.get_program())
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let args: Vec<String> = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let command_line = std::iter::once(program)
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| {
                std::io::Error::new(err.kind(), format!("cannot start `{command_line}`: {err}"))
            })?;
        let log = Arc::new(Log::default());
        log.lock().open_streams = 2;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_reader(stdout, Source::Stdout, Arc::clone(&log));
        spawn_reader(stderr, Source::Stderr, Arc::clone(&log));
        Ok(Running {
            name: name.to_owned(),
            command_line,
            stdin: child.stdin.take(),
            child,
            log,
            exit: None,
        })
    }

    /// The program's file name and its arguments, as a reader would type them.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// A duplicate of the program's descriptor `fd`, taken with
    /// pidfd_getfd(2) (Linux 5.6+; allowed to a parent, or to root), so a
    /// test can act on a socket inside the program, e.g. shut its listener
    /// down. An error says why it could not.
    pub fn duplicate_fd(&self, fd: i32) -> std::io::Result<std::os::fd::OwnedFd> {
        use nix::libc;
        use std::os::fd::FromRawFd;
        // SAFETY: plain system calls on integers; each returned descriptor is
        // new and owned by exactly one OwnedFd.
        unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, self.child.id(), 0);
            if pidfd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let pidfd = std::os::fd::OwnedFd::from_raw_fd(pidfd as i32);
            let duplicate = libc::syscall(
                libc::SYS_pidfd_getfd,
                std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                fd,
                0,
            );
            if duplicate < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(std::os::fd::OwnedFd::from_raw_fd(duplicate as i32))
        }
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        self.type_bytes(format!("{line}\n").as_bytes());
    }

    /// Writes raw bytes to the program's stdin.
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{name}: stdin already closed"));
        // Logged before it is written: the program's reply to it can only
        // come after, so the transcript keeps the terminal's order.
        self.log.append(Source::Typed, bytes);
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|err| panic!("{name}: cannot write to stdin: {err}"));
    }

    /// Closes stdin: the program reads end of input (Ctrl+D in a terminal).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `sig` to the program.
    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig)
            .unwrap_or_else(|err| panic!("{}: cannot send {sig}: {err}", self.name));
    }

    /// Waits until stdout, past what earlier calls consumed, contains
    /// `needle`; returns the text up to and including it.
    pub fn expect_stdout(&self, needle: &str) -> String {
        self.expect(Source::Stdout, needle, false)
    }

    /// Waits for a whole stdout line containing `needle`; returns the line.
    pub fn expect_stdout_line(&self, needle: &str) -> String {
        self.expect(Source::Stdout, needle, true)
    }

    /// Waits for a whole stderr line containing `needle`; returns the line.
    pub fn expect_stderr_line(&self, needle: &str) -> String {
        self.expect(Source::Stderr, needle, true)
    }

    fn expect(&self, source: Source, needle: &str, whole_line: bool) -> String {
        let mut found = None;
        let done = self.wait_state(DEADLINE, |state| {
            let (bytes, seen) = state.stream(source);
            if let Some((start, end)) = find(bytes, *seen, needle.as_bytes(), whole_line) {
                found = Some(String::from_utf8_lossy(&bytes[start..end]).into_owned());
                *seen = end;
                return true;
            }
            false
        });
        match found {
            Some(found) if done => found.trim_end_matches('\n').to_owned(),
            _ => panic!(
                "{}: no {}{source:?} output containing {needle:?} within {DEADLINE:?}\n{}",
                self.name,
                if whole_line { "line of " } else { "" },
                self.describe()
            ),
        }
    }

    /// Waits until `done(output)` holds, at most `limit`, or until the
    /// program closed both output streams (then `done` had its last look).
    /// An error describes the program and all it printed.
    pub fn wait_until(
        &self,
        limit: Duration,
        mut done: impl FnMut(&Output<'_>) -> bool,
    ) -> Result<(), String> {
        let met = self.wait_state(limit, |state| {
            done(&Output {
                stdout: &state.stdout,
                stderr: &state.stderr,
                closed: state.open_streams == 0,
            })
        });
        if met { Ok(()) } else { Err(self.describe()) }
    }

    /// The one wait on the log: until `done(state)`, at most `limit`, or
    /// until both output streams are closed. Returns whether `done` held.
    fn wait_state(&self, limit: Duration, mut done: impl FnMut(&mut LogState) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.log.lock();
        loop {
            if done(&mut state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || state.open_streams == 0 {
                return false;
            }
            state = self
                .log
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Everything the program wrote to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().stdout).into_owned()
    }

    /// Everything the program wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().stderr).into_owned()
    }

    /// Stdout, stderr and what was typed, interleaved in the order they
    /// happened: what the reader would see in a terminal, starting with the
    /// command line after a `$ ` prompt.
    pub fn transcript(&self) -> String {
        let state = self.log.lock();
        let mut text = format!("$ {}\n", self.command_line);
        for (_, chunk) in &state.events {
            text.push_str(&String::from_utf8_lossy(chunk));
        }
        text
    }

    /// Waits for the program to exit (at most [`DEADLINE`]) and for its
    /// output to be read to the end; kills it and fails the test otherwise.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.wait_exit_within(DEADLINE)
    }

    /// Waits at most `limit` for the program to exit; if it is still
    /// running then, kills it and returns `None`, so that the caller can say
    /// what it did and what it expected.
    pub fn try_wait_exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            match self.child.wait_timeout(limit) {
                Ok(Some(_)) => {}
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
        Some(self.wait_exit_within(limit))
    }

    /// Like [`Running::wait_exit`] with a bound of `limit`.
    pub fn wait_exit_within(&mut self, limit: Duration) -> ExitStatus {
        self.try_wait_exit(limit)
            .unwrap_or_else(|err| panic!("{}: {err}", self.name))
    }

    /// Like [`Running::wait_exit_within`], but a program still running
    /// after `limit` (killed then) is an error, not a panic.
    pub fn try_wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        let status = match self.child.wait_timeout(limit) {
            Ok(Some(status)) => status,
            Ok(None) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "still running after {limit:?}; killed it\n{}",
                    self.describe()
                ));
            }
            Err(err) => return Err(format!("cannot wait for the process: {err}")),
        };
        self.exit = Some(status);
        // The pipes close when the process is gone (unless it left children
        // holding them); give the readers a moment to drain them.
        self.wait_state(Duration::from_secs(2), |state| state.open_streams == 0);
        Ok(status)
    }

    /// Kills the program with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// The name, the command and all output so far, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- {} ($ {})\n--- stdout:\n{}\n--- stderr:\n{}\n---",
            self.name,
            self.command_line,
            tail(&self.stdout()),
            tail(&self.stderr())
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_reader(mut pipe: impl Read + Send + 'static, source: Source, log: Arc<Log>) {
    thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => log.append(source, &buffer[..n]),
            }
        }
        log.lock().open_streams -= 1;
        log.changed.notify_all();
    });
}

/// Finds `needle` in `haystack[from..]`; returns the consumed range: up to the
/// needle's end, or with `whole_line` the whole line holding it (which must
/// be finished by a newline).
fn find(haystack: &[u8], from: usize, needle: &[u8], whole_line: bool) -> Option<(usize, usize)> {
    let at = haystack[from..]
        .windows(needle.len().max(1))
        .position(|window| window == needle)?
        + from;
    if !whole_line {
        return Some((from, at + needle.len()));
    }
    let line_start = haystack[from..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(from, |i| from + i + 1);
    let line_end = haystack[at..].iter().position(|&b| b == b'\n')? + at + 1;
    Some((line_start, line_end))
}

/// The last few thousand characters of `text`, so that a failure caused by a
/// megabyte of output stays readable.
fn tail(text: &str) -> &str {
    const KEEP: usize = 4000;
    if text.len() <= KEEP {
        return text;
    }
    let mut start = text.len() - KEEP;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
