//! The load generator's single event loop.
//!
//! Thousands of non-blocking TCP connections, one thread, one epoll
//! instance: the design that comes after thread-per-client, used here to
//! measure it. Each connection is a small state machine: connect, send a
//! message, read back its whole echo and compare every byte, then (by mode)
//! send the next message, wait for its next scheduled send, hold the
//! connection, or close it.
//!
//! Every round counts. A measured run has a window: it opens when every
//! connection is up and closes after the run's duration. A round answered
//! inside the window is recorded with its latency; a round still
//! unanswered when the window closes is recorded at its age then. Without
//! that, the rounds of starved connections would never be recorded and the
//! latency figures would describe only the connections the server favoured
//! (the closed-loop check of Little's law in `report.rs` catches exactly
//! that). A round sent before the window opened counts from the opening:
//! the run measures the window, and what came before it is warm-up (with a
//! backlog that overflows, connecting alone can take seconds).
//!
//! Closing is graceful: the client half-closes (`shutdown(SHUT_WR)`), reads
//! the rest of the echo until the server closes too, and only then closes.
//! The client sent the first FIN, so its socket is the one left in
//! TIME-WAIT; Linux reuses such ports for new loopback connections
//! (`net.ipv4.tcp_tw_reuse`, 2 by default, allows it on loopback), so tens
//! of thousands of connections in a run do not run out of ports.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, SockaddrStorage, connect, getsockopt,
    recv, send, setsockopt, shutdown, socket, sockopt,
};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// What each connection does after a round trip.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Closed loop: each connection sends its next message as soon as the
    /// echo of the last one is back, for `duration` from the moment every
    /// connection is up.
    Load { duration: Duration },
    /// Open loop, wrk2-style: `rate` messages per second in all, each on a
    /// fixed schedule. A message that cannot go out on time (its connection
    /// still waits for the previous echo) goes out late, and its latency
    /// counts from when it was due: a slow server cannot hide its stalls by
    /// slowing the generator down (coordinated omission).
    Open { rate: f64, duration: Duration },
    /// Exactly `rounds` round trips per connection, then close.
    Rounds { rounds: u64 },
    /// One round trip, then keep the connection open.
    Hold,
    /// One round trip, close, and open a new connection, `cycles` times in all.
    Churn { cycles: u64 },
}

impl Mode {
    fn duration(self) -> Option<Duration> {
        match self {
            Mode::Load { duration } | Mode::Open { duration, .. } => Some(duration),
            _ => None,
        }
    }
}

/// Which rounds a measured run records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accounting {
    /// Every round: answered in the window, or unanswered at its end (at
    /// its age then).
    EveryRound,
    /// Only rounds that started and were answered inside the window: how
    /// this tool counted before, kept to show what the Little's-law check
    /// catches. Starved connections drop out of the latency figures.
    AnsweredOnly,
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
    pub accounting: Accounting,
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Every round trip completed, measured or not.
    pub round_trips: u64,
    /// Round trips answered inside the window (load and open modes; every
    /// round trip otherwise): the rate is computed from these.
    pub measured_round_trips: u64,
    /// Rounds still unanswered when the window closed, recorded at their
    /// age then (open loop: also the sends that were due but could not go
    /// out yet).
    pub unanswered: u64,
    /// Open loop: how many sends the schedule asked for inside the window.
    pub scheduled: u64,
    /// The window's length (zero when the run has none).
    pub measured: Duration,
    /// Latency of every recorded round, in microseconds.
    pub latency: Histogram<u64>,
    /// Round trips answered inside the window, per connection (load and
    /// open modes): the fairness figures come from these.
    pub rounds_per_connection: Vec<u64>,
    /// Bytes of echo that differed from what was sent.
    pub mismatches: u64,
    /// Connections that failed, by reason.
    pub failures: BTreeMap<String, u64>,
    /// Connections that failed before the window closed (the others were
    /// in flight all through it).
    pub failed_in_window: u64,
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
    /// Open loop: connected, waiting for the next scheduled send.
    Waiting,
    Sending,
    Receiving,
    /// Half-closed: reading what is left of the echo until the server closes.
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
    /// Bytes of `message` sent so far.
    sent: usize,
    /// Bytes of its echo received so far.
    received: usize,
    /// When the round started: the send (closed loop) or when it was due
    /// (open loop).
    round_start: Instant,
    /// Open loop: when the next send is due.
    next_due: Option<Instant>,
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

/// The epoll token of the open loop's timer (connections use their slot).
const TIMER: u64 = u64::MAX;

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
        if run.schedule_pending {
            run.schedule_first_sends();
        }
        run.close_window_if_due();
        run.start_due_rounds();
        run.arm_timer()?;
        let ready = match run.epoll.wait(&mut events, EpollTimeout::from(50u16)) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => 0,
            Err(err) => return Err(err).context("epoll_wait failed"),
        };
        for event in &events[..ready] {
            if event.data() == TIMER {
                // Only clears the expiration; the loop starts due rounds.
                let _ = run.timer.wait();
            } else {
                run.drive(event.data() as usize);
            }
        }
        if last_tick.elapsed() >= Duration::from_millis(100) {
            last_tick = Instant::now();
            run.expire_stalled();
            tick(run.outcome.round_trips);
        }
    }
    tick(run.outcome.round_trips);
    run.outcome.all_served_after = run.all_served_at.unwrap_or_else(Instant::now) - run.started;
    if let (Some(start), Some(deadline)) = (run.window_start, run.deadline) {
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
    timer: TimerFd,
    connections: Vec<Option<Connection>>,
    free_slots: Vec<usize>,
    buffer: Vec<u8>,
    outcome: Outcome,
    started: Instant,
    next_id: u64,
    opened: u64,
    /// Connections that are open now.
    open_now: usize,
    /// Connections that are up (connected) or failed.
    connected: usize,
    /// Connections whose first round trip is done or that failed.
    settled: usize,
    all_served_at: Option<Instant>,
    window_start: Option<Instant>,
    deadline: Option<Instant>,
    window_closed: bool,
    /// Open loop: (when due, slot), soonest first.
    schedule: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Open loop: the time between two sends of one connection.
    interval: Duration,
    /// Open loop: every connection is up, the first sends are to be scheduled.
    schedule_pending: bool,
}

impl<'a> Run<'a> {
    fn new(plan: &'a Plan) -> Result<Run<'a>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create failed")?;
        // The open loop's schedule needs a clock finer than epoll_wait's
        // milliseconds: a timerfd counts in nanoseconds.
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .context("timerfd_create failed")?;
        epoll
            .add(timer.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TIMER))
            .context("epoll_ctl on the timer failed")?;
        let interval = match plan.mode {
            Mode::Open { rate, .. } => {
                Duration::from_secs_f64(plan.connections as f64 / rate.max(1e-3))
            }
            _ => Duration::ZERO,
        };
        Ok(Run {
            plan,
            epoll,
            timer,
            connections: Vec::new(),
            free_slots: Vec::new(),
            buffer: vec![0; 64 * 1024],
            outcome: Outcome {
                round_trips: 0,
                measured_round_trips: 0,
                unanswered: 0,
                scheduled: 0,
                measured: Duration::ZERO,
                latency: Histogram::new_with_bounds(1, 600_000_000, 3)
                    .context("histogram bounds")?,
                rounds_per_connection: Vec::new(),
                mismatches: 0,
                failures: BTreeMap::new(),
                failed_in_window: 0,
                served: 0,
                all_served_after: Duration::ZERO,
                held: Vec::new(),
            },
            started: Instant::now(),
            next_id: 0,
            opened: 0,
            open_now: 0,
            connected: 0,
            settled: 0,
            all_served_at: None,
            window_start: None,
            deadline: None,
            window_closed: false,
            schedule: BinaryHeap::new(),
            interval,
            schedule_pending: false,
        })
    }

    fn finished(&self) -> bool {
        match self.plan.mode {
            Mode::Hold => self.settled >= self.plan.connections,
            Mode::Churn { cycles } => self.opened >= cycles && self.open_now == 0,
            Mode::Load { .. } | Mode::Open { .. } | Mode::Rounds { .. } => self.open_now == 0,
        }
    }

    fn measured_mode(&self) -> bool {
        self.plan.mode.duration().is_some()
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
            sent: 0,
            received: 0,
            round_start: now,
            next_due: None,
            last_progress: now,
            served: false,
        });
        self.next_id += 1;
        self.open_now += 1;
    }

    fn fail_unopened(&mut self, reason: String) {
        *self.outcome.failures.entry(reason).or_default() += 1;
        self.outcome.failed_in_window += 1;
        self.count_connected();
        self.settle();
    }

    /// One more connection is up or failed; when all are, the measured
    /// window opens.
    fn count_connected(&mut self) {
        self.connected += 1;
        if self.connected != self.plan.connections {
            return;
        }
        let Some(duration) = self.plan.mode.duration() else {
            return;
        };
        let now = Instant::now();
        self.window_start = Some(now);
        self.deadline = Some(now + duration);
        self.outcome.rounds_per_connection = vec![0; self.plan.connections];
        if let Mode::Open { .. } = self.plan.mode {
            // The connection that came up last may be out of its slot right
            // now (it is being driven); the loop schedules them all next.
            self.schedule_pending = true;
        }
    }

    /// Open loop, once every connection is up: spreads the connections'
    /// first sends evenly over one interval, so the offered load is smooth
    /// rather than a burst from every connection at once.
    fn schedule_first_sends(&mut self) {
        let Some(start) = self.window_start else {
            return;
        };
        self.schedule_pending = false;
        let step = self.interval.div_f64(self.plan.connections as f64);
        let deadline = self.deadline.unwrap_or(start);
        for (slot, connection) in self.connections.iter_mut().enumerate() {
            if let Some(connection) = connection
                && connection.state == State::Waiting
            {
                let first = start + step * connection.id as u32;
                connection.next_due = Some(first);
                self.schedule.push(Reverse((first, slot)));
                // How many sends the schedule asks of this connection in
                // the window: every due time before the deadline.
                let mut due = first;
                while due < deadline {
                    self.outcome.scheduled += 1;
                    due += self.interval;
                }
            }
        }
    }

    /// One more connection served its first round trip or failed.
    fn settle(&mut self) {
        self.settled += 1;
        if self.settled == self.plan.connections {
            self.all_served_at.get_or_insert_with(Instant::now);
        }
    }

    /// Open loop: starts the round of every connection whose send is due.
    fn start_due_rounds(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((due, slot))) = self.schedule.peek() {
            if due > now || self.window_closed {
                break;
            }
            self.schedule.pop();
            if self.deadline.is_some_and(|deadline| due >= deadline) {
                // Due at or after the deadline: outside the window.
                continue;
            }
            let Some(mut connection) = self.connections.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            if connection.state == State::Waiting && connection.next_due == Some(due) {
                self.start_round(&mut connection, due);
                if !self.advance(&mut connection) {
                    self.retire(slot, connection);
                    continue;
                }
            }
            self.connections[slot] = Some(connection);
        }
    }

    /// Arms the timer for the next scheduled send (open loop only).
    fn arm_timer(&self) -> Result<()> {
        let Some(&Reverse((due, _))) = self.schedule.peek() else {
            return Ok(());
        };
        let wait = due
            .saturating_duration_since(Instant::now())
            .max(Duration::from_micros(1));
        self.timer
            .set(
                Expiration::OneShot(TimeSpec::from_duration(wait)),
                TimerSetTimeFlags::empty(),
            )
            .context("timerfd_settime failed")
    }

    /// At the deadline: records every round still unanswered at its age,
    /// then half-closes every connection.
    fn close_window_if_due(&mut self) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if self.window_closed || Instant::now() < deadline {
            return;
        }
        self.window_closed = true;
        self.schedule.clear();
        for slot in 0..self.connections.len() {
            let Some(mut connection) = self.connections[slot].take() else {
                continue;
            };
            if self.plan.accounting == Accounting::EveryRound {
                match connection.state {
                    State::Sending | State::Receiving => {
                        let start = self.in_window(connection.round_start);
                        self.record(deadline.saturating_duration_since(start));
                        self.outcome.unanswered += 1;
                        // Open loop: `next_due` is this round's due time.
                        if let Some(due) = connection.next_due {
                            self.record_overdue(due + self.interval, deadline);
                        }
                    }
                    State::Waiting => {
                        if let Some(due) = connection.next_due {
                            self.record_overdue(due, deadline);
                        }
                    }
                    _ => {}
                }
            }
            match connection.state {
                State::Sending | State::Receiving | State::Waiting => {
                    // What was sent of this round still comes back and is
                    // still checked; nothing more is sent.
                    connection.message.truncate(connection.sent);
                    connection.state = State::Closing;
                    connection.last_progress = Instant::now();
                    let _ = shutdown(connection.fd.as_raw_fd(), Shutdown::Write);
                }
                State::Connecting | State::Closing | State::Holding => {}
            }
            self.connections[slot] = Some(connection);
        }
    }

    /// When a round's time starts to count: its start, or the window's
    /// opening if it started before.
    fn in_window(&self, start: Instant) -> Instant {
        self.window_start
            .map_or(start, |opening| start.max(opening))
    }

    /// Open loop: sends due from `due` on, one interval apart, that had not
    /// gone out by the deadline (they waited for the echo of the one
    /// before) are unanswered rounds too, recorded at their age.
    fn record_overdue(&mut self, mut due: Instant, deadline: Instant) {
        while due < deadline {
            self.record(deadline - due);
            self.outcome.unanswered += 1;
            due += self.interval;
        }
    }

    fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).max(1);
        self.outcome.latency.saturating_record(micros);
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
                    Ok(0) => self.connected(connection),
                    Ok(code) => {
                        return self
                            .fail(connection, format!("connect: {}", Errno::from_raw(code)));
                    }
                    Err(err) => return self.fail(connection, format!("connect: {err}")),
                },
                State::Waiting => {
                    // Nothing is due; anything that arrives is unasked for.
                    match self.receive(connection) {
                        Ok(Some(received)) => self.outcome.mismatches += received as u64,
                        Ok(None) => return true,
                        Err(()) => return false,
                    }
                }
                State::Sending => {
                    match send(
                        connection.fd.as_raw_fd(),
                        &connection.message[connection.sent..],
                        MsgFlags::MSG_NOSIGNAL,
                    ) {
                        Ok(sent) => {
                            connection.sent += sent;
                            connection.last_progress = Instant::now();
                            if connection.sent == connection.message.len() {
                                connection.state = State::Receiving;
                            }
                        }
                        Err(Errno::EAGAIN) => return true,
                        Err(Errno::EINTR) => {}
                        Err(err) => return self.fail(connection, format!("send: {err}")),
                    }
                }
                State::Receiving | State::Holding | State::Closing => {
                    let received = match self.receive(connection) {
                        Ok(Some(received)) => received,
                        Ok(None) => return true,
                        Err(()) => return false,
                    };
                    if connection.state == State::Holding {
                        // Bytes nobody asked for.
                        self.outcome.mismatches += received as u64;
                        continue;
                    }
                    let expected = &connection.message[connection.received..];
                    let matching = received.min(expected.len());
                    let extra = received - matching;
                    let differing = self.buffer[..matching]
                        .iter()
                        .zip(expected)
                        .filter(|(got, want)| got != want)
                        .count();
                    self.outcome.mismatches += (differing + extra) as u64;
                    connection.received += matching;
                    if connection.state == State::Receiving
                        && connection.received == connection.message.len()
                    {
                        self.finish_round(connection);
                        if connection.state == State::Closing {
                            let _ = shutdown(connection.fd.as_raw_fd(), Shutdown::Write);
                        }
                    }
                }
            }
        }
    }

    /// Reads what is there: Ok(Some(n)) bytes into the buffer, Ok(None) when
    /// nothing is left for now, Err(()) when the connection is done with
    /// (closed after our half-close, or failed).
    fn receive(&mut self, connection: &mut Connection) -> Result<Option<usize>, ()> {
        loop {
            match recv(
                connection.fd.as_raw_fd(),
                &mut self.buffer,
                MsgFlags::empty(),
            ) {
                Ok(0) => {
                    if connection.state == State::Closing {
                        // After our half-close: done. Bytes the server did
                        // not echo before closing are lost.
                        let missing = connection.message.len() - connection.received;
                        self.outcome.mismatches += missing as u64;
                    } else {
                        self.fail(connection, "closed by the server too early".into());
                    }
                    return Err(());
                }
                Ok(received) => {
                    connection.last_progress = Instant::now();
                    return Ok(Some(received));
                }
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => {}
                Err(err) => {
                    self.fail(connection, format!("recv: {err}"));
                    return Err(());
                }
            }
        }
    }

    /// The connection is up: the first round starts now, except in the
    /// open loop, whose rounds start on schedule once every connection is up.
    fn connected(&mut self, connection: &mut Connection) {
        if let Mode::Open { .. } = self.plan.mode {
            connection.state = State::Waiting;
            connection.last_progress = Instant::now();
            self.count_connected();
        } else {
            self.start_round(connection, Instant::now());
            self.count_connected();
        }
    }

    fn start_round(&mut self, connection: &mut Connection, start: Instant) {
        connection.message = message(connection.id, connection.round, self.plan.size);
        connection.sent = 0;
        connection.received = 0;
        connection.round_start = start;
        connection.last_progress = Instant::now();
        connection.state = State::Sending;
    }

    /// A whole echo came back: record it and decide what comes next.
    fn finish_round(&mut self, connection: &mut Connection) {
        let now = Instant::now();
        self.outcome.round_trips += 1;
        connection.round += 1;
        let past_deadline = self.deadline.is_some_and(|deadline| now > deadline);
        if self.measured_mode() {
            let in_window = match self.window_start {
                Some(start) => {
                    !past_deadline
                        && (self.plan.accounting == Accounting::EveryRound
                            || connection.round_start >= start)
                }
                None => false,
            };
            if in_window {
                self.outcome.measured_round_trips += 1;
                self.outcome.rounds_per_connection[connection.id as usize] += 1;
                self.record(now - self.in_window(connection.round_start));
            } else if past_deadline
                && self.plan.accounting == Accounting::EveryRound
                && let Some(deadline) = self.deadline
            {
                // Answered after the deadline, before the loop closed the
                // window: it was unanswered at the deadline.
                self.record(
                    deadline.saturating_duration_since(self.in_window(connection.round_start)),
                );
                self.outcome.unanswered += 1;
                if let Some(due) = connection.next_due {
                    self.record_overdue(due + self.interval, deadline);
                }
            }
        } else {
            self.outcome.measured_round_trips += 1;
            self.record(now - connection.round_start);
        }
        if !connection.served {
            connection.served = true;
            self.outcome.served += 1;
            self.settle();
        }
        let again = match self.plan.mode {
            Mode::Load { .. } | Mode::Open { .. } => !self.window_closed && !past_deadline,
            Mode::Rounds { rounds } => connection.round < rounds,
            Mode::Hold => {
                connection.state = State::Holding;
                return;
            }
            Mode::Churn { .. } => false,
        };
        if !again {
            connection.state = State::Closing;
            connection.last_progress = now;
        } else if let Mode::Open { .. } = self.plan.mode {
            // The next send is due one interval after this one was due; if
            // that time has passed already, it goes now, and its latency
            // still counts from when it was due.
            let Some(due) = connection.next_due.map(|due| due + self.interval) else {
                return;
            };
            connection.next_due = Some(due);
            if self.window_start.is_some() && due > now {
                connection.state = State::Waiting;
                // The slot is found again by the connection's id: open-loop
                // connections are never replaced, so slot == id.
                self.schedule.push(Reverse((due, connection.id as usize)));
            } else {
                self.start_round(connection, due);
            }
        } else {
            self.start_round(connection, now);
        }
    }

    fn fail(&mut self, connection: &Connection, reason: String) -> bool {
        *self.outcome.failures.entry(reason).or_default() += 1;
        if !self.window_closed {
            self.outcome.failed_in_window += 1;
        }
        if connection.state == State::Connecting {
            self.count_connected();
        }
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
                !matches!(connection.state, State::Holding | State::Waiting)
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
