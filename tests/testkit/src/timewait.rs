//! The post's TIME_WAIT reproduction, once: lesson 4's test checks it and
//! stores what it showed for the book (docs/src/generated/timewait.txt), and
//! `just timewait` runs the same steps live and narrates them.
//!
//! With each server on a fresh port: start it, two clients chat, Ctrl+C the
//! server first, then the clients, start the server again at once, list the
//! TIME-WAIT sockets. Lesson 3's restart fails; lesson 4's succeeds.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::Signal;

use crate::tcp::{
    Terminal, book_replacements, client_chat, command_default_signals, ss_time_wait, start_client,
    start_server, wait_for_socket,
};
use crate::{LOCALHOST, Running, TcpState, find_socket_addr, normalize};

/// Stops `program` the way Ctrl+C does: SIGINT, no handler, killed by it.
pub fn ctrl_c(program: &mut Running) {
    program.signal(Signal::SIGINT);
    let status = program.wait_exit();
    assert_eq!(
        status.signal(),
        Some(Signal::SIGINT as i32),
        "{}",
        program.describe()
    );
}

/// What a run showed, and the addresses it used (to normalize them).
#[derive(Debug, Default)]
pub struct Reproduction {
    /// What a reader at the terminals would have seen, window by window.
    pub story: String,
    /// The servers' addresses, lesson 3's first.
    pub servers: Vec<SocketAddr>,
    /// The clients' addresses, in the order they connected.
    pub clients: Vec<SocketAddr>,
}

impl Reproduction {
    /// Runs the post's steps with lesson 3's server, then lesson 4's on a
    /// fresh port. `narrate` receives the story piece by piece as it
    /// happens. Panics if a step does not go as the book says.
    pub fn run(narrate: &mut dyn FnMut(&str)) -> Reproduction {
        let mut run = Reproduction::default();
        run.tell(narrate, "=== lesson 3 ===\n");
        run.reproduce("lesson3-server", narrate);
        run.tell(
            narrate,
            "=== lesson 4: the same steps on a fresh port (lesson 3's TIME-WAIT sockets still hold the old one) ===\n",
        );
        run.reproduce("lesson4-server", narrate);
        run
    }

    /// The story as a reader running the defaults would see it: every
    /// server on 127.0.0.1:8890, clients on 127.0.0.1:50001, ….
    pub fn for_the_book(&self) -> String {
        let mut text = normalize(
            &self.story,
            &book_replacements(&self.servers, &self.clients),
        );
        for server in &self.servers {
            text = text.replace(&format!("sport = :{}\n", server.port()), "sport = :8890\n");
        }
        text
    }

    fn tell(&mut self, narrate: &mut dyn FnMut(&str), text: &str) {
        narrate(text);
        self.story.push_str(text);
    }

    /// One server's part: the steps above with server `name`.
    fn reproduce(&mut self, name: &str, narrate: &mut dyn FnMut(&str)) {
        let (server, addr) = start_server(name, SocketAddr::new(LOCALHOST, 0), &[]);
        self.servers.push(addr);
        let mut server = Terminal::new(server);
        let mut terminals = Vec::new();
        let mut client_addrs = Vec::new();
        for (i, text) in [
            "hello from the first client",
            "hello from the second client",
        ]
        .iter()
        .enumerate()
        {
            let mut client = start_client(&format!("client {}", i + 1), addr);
            let line = server.running.expect_stdout_line("connected");
            let client_addr = find_socket_addr(&line).expect("client address");
            client_chat(&mut client, text);
            server
                .running
                .expect_stdout_line(&format!("recv from {client_addr}"));
            terminals.push(Terminal::new(client));
            client_addrs.push(client_addr);
        }
        let shown = server.more();
        self.tell(narrate, &format!("--- terminal 1: {name} ---\n{shown}"));
        for (i, client) in terminals.iter_mut().enumerate() {
            let shown = client.more();
            self.tell(
                narrate,
                &format!("--- terminal {}: client {} ---\n{shown}", i + 2, i + 1),
            );
        }

        self.tell(
            narrate,
            "--- terminal 1: Ctrl+C stops the server first ---\n^C\n",
        );
        ctrl_c(&mut server.running);
        for (i, (client, &client_addr)) in terminals.iter_mut().zip(&client_addrs).enumerate() {
            self.tell(
                narrate,
                &format!(
                    "--- terminal {}: then Ctrl+C stops client {} ---\n^C\n",
                    i + 2,
                    i + 1
                ),
            );
            ctrl_c(&mut client.running);
            wait_for_socket("TIME-WAIT socket of the server", addr.port(), |s| {
                s.state == TcpState::TimeWait && s.local == addr && s.remote == client_addr
            });
        }

        self.tell(
            narrate,
            "--- terminal 1: start the server again at once ---\n",
        );
        let bind = addr.to_string();
        let restarted = Running::start(name, command_default_signals(name, &["--bind", &bind]));
        let mut restarted = Terminal::new(restarted);
        if name == "lesson3-server" {
            let status = restarted.running.wait_exit();
            assert_eq!(status.code(), Some(1), "{}", restarted.running.describe());
        } else {
            restarted.running.expect_stdout_line("listening on");
        }
        let shown = restarted.more();
        self.tell(narrate, &shown);
        let mut listing = format!(
            "--- terminal 4: the old connections ---\n$ ss -tan state time-wait sport = :{}\n",
            addr.port()
        );
        // In the clients' order, as their ports in the stored file will be.
        let mut lines = ss_time_wait(addr);
        lines[1..].sort_by_key(|line| {
            client_addrs
                .iter()
                .position(|c| line.contains(&c.to_string()))
        });
        for line in lines {
            listing.push_str(&line);
            listing.push('\n');
        }
        self.tell(narrate, &listing);
        self.clients.extend(client_addrs);
    }
}
