//! The load generator's single event loop.
//!
//! Thousands of non-blocking TCP connections, one thread, one epoll
//! instance: the design that comes after thread-per-client, used here to
//! measure it. Each connection is a small state machine: connect, send a
//! message, read back its whole echo and compare every byte, then (by mode)
//! send the next message, hold the connection, or close it.
//!
//! Closing is graceful and server-first: the client half-closes
//! (`shutdown(SHUT_WR)`), the server sees end of input and closes, and only
//! then does the client close. The server's side thus ends in TIME-WAIT (see
//! the TIME_WAIT chapter), so tens of thousands of connections in a run do
//! not exhaust the client's ephemeral ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, SockaddrStorage, connect, getsockopt,
    recv, send, setsockopt, shutdown, socket, sockopt,
};

/// What each connection does after a round trip.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Round trips in a closed loop for `duration`, measured from the moment
    /// every connection is up.
    Load { duration: Duration },
    /// Exactly `rounds` round trips per connection, then close.
    Rounds { rounds: u64 },
    /// One round trip, then keep the connection open.
    Hold,
    /// One round trip, close, and open a new connection, `cycles` times in all.
    Churn { cycles: u64 },
}

/// A run: where, how many connections at once, how big a message, what mode.
#[derive(Clone, Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    pub connections: usize,
    pub size: usize,
    pub mode: Mode,
    /// A connection that makes no progress for this long has failed.
    pub stall_timeout: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Every round trip completed, measured or not.
    pub round_trips: u64,
    /// Round trips that started after all connections were up and ended
    /// before the deadline (load mode), the ones the rate is computed from.
    pub measured_round_trips: u64,
    pub measured: Duration,
    /// Latency of the measured round trips, in microseconds.
    pub latency: Histogram<u64>,
    /// Bytes of echo that differed from what was sent.
    pub mismatches: u64,
    /// Connections that failed, by reason.
    pub failures: BTreeMap<String, u64>,
    /// Connections that completed at least one round trip.
    pub served: u64,
    /// From the start until every connection had completed its first round
    /// trip (or failed).
    pub all_served_after: Duration,
    /// The connections kept open in hold mode; dropping them closes them.
    pub held: Vec<OwnedFd>,
}

impl Outcome {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Connecting,
    Sending,
    Receiving,
    Closing,
    Holding,
}

struct Connection {
    fd: OwnedFd,
    /// Numbers every connection of the run; with the round, it seeds the
    /// message, so bytes swapped between connections or rounds are caught.
    id: u64,
    state: State,
    round: u64,
    message: Vec<u8>,
    offset: usize,
    round_start: Instant,
    last_progress: Instant,
    served: bool,
}

/// The message of connection `id` in round `round`: pseudo-random bytes.
pub fn message(id: u64, round: u64, size: usize) -> Vec<u8> {
    let mut state =
        id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ round.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Runs `plan` to the end; `tick` is called about ten times a second with
/// the round trips so far (for a progress bar).
pub fn run(plan: &Plan, mut tick: impl FnMut(u64)) -> Result<Outcome> {
    let mut run = Run::new(plan)?;
    let initial = match plan.mode {
        Mode::Churn { cycles } => plan.connections.min(cycles as usize),
        _ => plan.connections,
    };
    for _ in 0..initial {
        run.open();
    }
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut last_tick = Instant::now();
    while !run.finished() {
        let ready = match run.epoll.wait(&mut events, EpollTimeout::from(50u16)) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => 0,
            Err(err) => return Err(err).context("epoll_wait failed"),
        };
        for event in &events[..ready] {
            run.drive(event.data() as usize);
        }
        if last_tick.elapsed() >= Duration::from_millis(100) {
            last_tick = Instant::now();
            run.expire_stalled();
            tick(run.outcome.round_trips);
        }
    }
    tick(run.outcome.round_trips);
    run.outcome.all_served_after = run.all_served_at.unwrap_or_else(Instant::now) - run.started;
    if let (Some(start), Some(deadline)) = (run.measure_start, run.deadline) {
        run.outcome.measured = deadline - start;
    }
    let held = run
        .connections
        .iter_mut()
        .filter_map(Option::take)
        .map(|connection| connection.fd)
        .collect();
    run.outcome.held = held;
    Ok(run.outcome)
}

struct Run<'a> {
    plan: &'a Plan,
    epoll: Epoll,
    connections: Vec<Option<Connection>>,
    free_slots: Vec<usize>,
    buffer: Vec<u8>,
    outcome: Outcome,
    started: Instant,
    next_id: u64,
    opened: u64,
    /// Connections that are open now.
    open_now: usize,
    /// Connections whose first round trip is done or that failed.
    settled: usize,
    all_served_at: Option<Instant>,
    measure_start: Option<Instant>,
    deadline: Option<Instant>,
}

impl<'a> Run<'a> {
    fn new(plan: &'a Plan) -> Result<Run<'a>> {
        Ok(Run {
            plan,
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create failed")?,
            connections: Vec::new(),
            free_slots: Vec::new(),
            buffer: vec![0; 64 * 1024],
            outcome: Outcome {
                round_trips: 0,
                measured_round_trips: 0,
                measured: Duration::ZERO,
                latency: Histogram::new_with_bounds(1, 60_000_000, 3)
                    .context("histogram bounds")?,
                mismatches: 0,
                failures: BTreeMap::new(),
                served: 0,
                all_served_after: Duration::ZERO,
                held: Vec::new(),
            },
            started: Instant::now(),
            next_id: 0,
            opened: 0,
            open_now: 0,
            settled: 0,
            all_served_at: None,
            measure_start: None,
            deadline: None,
        })
    }

    fn finished(&self) -> bool {
        match self.plan.mode {
            Mode::Hold => self.settled >= self.plan.connections,
            Mode::Churn { cycles } => self.opened >= cycles && self.open_now == 0,
            Mode::Load { .. } | Mode::Rounds { .. } => self.open_now == 0,
        }
    }

    /// Opens one more connection (a failure to open counts as a failed
    /// connection).
    fn open(&mut self) {
        self.opened += 1;
        let family = if self.plan.addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd = match socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        ) {
            Ok(fd) => fd,
            Err(err) => return self.fail_unopened(format!("socket: {err}")),
        };
        // Small messages go out at once instead of waiting for an ACK.
        let _ = setsockopt(&fd, sockopt::TcpNoDelay, &true);
        let state = match connect(fd.as_raw_fd(), &SockaddrStorage::from(self.plan.addr)) {
            Ok(()) | Err(Errno::EINPROGRESS) => State::Connecting,
            Err(err) => return self.fail_unopened(format!("connect: {err}")),
        };
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.connections.push(None);
            self.connections.len() - 1
        });
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        if let Err(err) = self.epoll.add(&fd, EpollEvent::new(flags, slot as u64)) {
            self.free_slots.push(slot);
            return self.fail_unopened(format!("epoll_ctl: {err}"));
        }
        let now = Instant::now();
        self.connections[slot] = Some(Connection {
            fd,
            id: self.next_id,
            state,
            round: 0,
            message: Vec::new(),
            offset: 0,
            round_start: now,
            last_progress: now,
            served: false,
        });
        self.next_id += 1;
        self.open_now += 1;
    }

    fn fail_unopened(&mut self, reason: String) {
        *self.outcome.failures.entry(reason).or_default() += 1;
        self.settle();
    }

    /// One more connection served its first round trip or failed.
    fn settle(&mut self) {
        self.settled += 1;
        if self.settled == self.plan.connections {
            let now = Instant::now();
            self.all_served_at.get_or_insert(now);
            if let Mode::Load { duration } = self.plan.mode {
                self.measure_start = Some(now);
                self.deadline = Some(now + duration);
            }
        }
    }

    /// Advances connection `slot` as far as the socket allows.
    fn drive(&mut self, slot: usize) {
        let Some(mut connection) = self.connections.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if self.advance(&mut connection) {
            self.connections[slot] = Some(connection);
        } else {
            self.retire(slot, connection);
        }
    }

    /// Closes a connection that is done with, and in churn mode opens the
    /// next one.
    fn retire(&mut self, slot: usize, connection: Connection) {
        let _ = self.epoll.delete(&connection.fd);
        drop(connection);
        self.free_slots.push(slot);
        self.open_now -= 1;
        if let Mode::Churn { cycles } = self.plan.mode
            && self.opened < cycles
        {
            self.open();
        }
    }

    /// Returns false when the connection is done with (closed or failed).
    fn advance(&mut self, connection: &mut Connection) -> bool {
        loop {
            match connection.state {
                State::Connecting => match getsockopt(&connection.fd, sockopt::SocketError) {
                    Ok(0) => self.start_round(connection),
                    Ok(code) => {
                        return self
                            .fail(connection, format!("connect: {}", Errno::from_raw(code)));
                    }
                    Err(err) => return self.fail(connection, format!("connect: {err}")),
                },
                State::Sending => {
                    match send(
                        connection.fd.as_raw_fd(),
                        &connection.message[connection.offset..],
                        MsgFlags::MSG_NOSIGNAL,
                    ) {
                        Ok(sent) => {
                            connection.offset += sent;
                            connection.last_progress = Instant::now();
                            if connection.offset == connection.message.len() {
                                connection.offset = 0;
                                connection.state = State::Receiving;
                            }
                        }
                        Err(Errno::EAGAIN) => return true,
                        Err(Errno::EINTR) => {}
                        Err(err) => return self.fail(connection, format!("send: {err}")),
                    }
                }
                State::Receiving | State::Holding | State::Closing => {
                    let received = match recv(
                        connection.fd.as_raw_fd(),
                        &mut self.buffer,
                        MsgFlags::empty(),
                    ) {
                        Ok(received) => received,
                        Err(Errno::EAGAIN) => return true,
                        Err(Errno::EINTR) => continue,
                        Err(err) => return self.fail(connection, format!("recv: {err}")),
                    };
                    if received == 0 {
                        return match connection.state {
                            // The server closed after our half-close: done.
                            State::Closing => false,
                            _ => self.fail(connection, "closed by the server too early".into()),
                        };
                    }
                    connection.last_progress = Instant::now();
                    if connection.state != State::Receiving {
                        // Bytes nobody asked for.
                        self.outcome.mismatches += received as u64;
                        continue;
                    }
                    let expected = &connection.message[connection.offset..];
                    let matching = received.min(expected.len());
                    let extra = received - matching;
                    let differing = self.buffer[..matching]
                        .iter()
                        .zip(expected)
                        .filter(|(got, want)| got != want)
                        .count();
                    self.outcome.mismatches += (differing + extra) as u64;
                    connection.offset += matching;
                    if connection.offset == connection.message.len() {
                        self.finish_round(connection);
                        if connection.state == State::Closing {
                            let _ = shutdown(connection.fd.as_raw_fd(), Shutdown::Write);
                        }
                    }
                }
            }
        }
    }

    fn start_round(&mut self, connection: &mut Connection) {
        connection.message = message(connection.id, connection.round, self.plan.size);
        connection.offset = 0;
        connection.round_start = Instant::now();
        connection.last_progress = connection.round_start;
        connection.state = State::Sending;
    }

    /// A whole echo came back: record it and decide what comes next.
    fn finish_round(&mut self, connection: &mut Connection) {
        let now = Instant::now();
        self.outcome.round_trips += 1;
        connection.round += 1;
        let in_window = self
            .measure_start
            .is_some_and(|start| connection.round_start >= start)
            && self.deadline.is_none_or(|deadline| now <= deadline);
        let measured = match self.plan.mode {
            Mode::Load { .. } => in_window,
            _ => true,
        };
        if measured {
            self.outcome.measured_round_trips += 1;
            let micros = (now - connection.round_start).as_micros().max(1) as u64;
            let _ = self.outcome.latency.record(micros);
        }
        if !connection.served {
            connection.served = true;
            self.outcome.served += 1;
            self.settle();
        }
        let again = match self.plan.mode {
            Mode::Load { .. } => self.deadline.is_none_or(|deadline| now < deadline),
            Mode::Rounds { rounds } => connection.round < rounds,
            Mode::Hold => {
                connection.state = State::Holding;
                return;
            }
            Mode::Churn { .. } => false,
        };
        if again {
            self.start_round(connection);
        } else {
            connection.state = State::Closing;
            connection.last_progress = now;
        }
    }

    fn fail(&mut self, connection: &Connection, reason: String) -> bool {
        *self.outcome.failures.entry(reason).or_default() += 1;
        if !connection.served {
            self.settle();
        }
        false
    }

    /// Fails connections that made no progress for the stall timeout.
    fn expire_stalled(&mut self) {
        let now = Instant::now();
        for slot in 0..self.connections.len() {
            let stalled = self.connections[slot].as_ref().is_some_and(|connection| {
                connection.state != State::Holding
                    && now - connection.last_progress > self.plan.stall_timeout
            });
            if stalled && let Some(connection) = self.connections[slot].take() {
                let what = match connection.state {
                    State::Connecting => "connect",
                    State::Closing => "close",
                    _ => "echo",
                };
                self.fail(&connection, format!("timed out waiting for {what}"));
                self.retire(slot, connection);
            }
        }
    }
}
