//! The command line of lesson 5's chat: lesson 2's, without
//! `--recv-timeout-ms`.
//!
//! Lesson 2's receive timeout existed only so that the receiver thread could
//! look at a flag now and then. Here nothing waits with a timeout: `poll`
//! returns the moment a datagram, a typed line or a signal arrives, so the
//! flag has nothing left to tune. The other flags and their defaults are
//! lesson 2's, so the two lessons' peers start alike and talk to each other.

use std::net::SocketAddr;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

// ANCHOR: args
/// A UDP peer-to-peer chat in one thread: poll(2) waits for the keyboard,
/// the socket and Ctrl+C at once, so a message shows the moment it arrives.
#[derive(Parser, Debug)]
#[command(name = "lesson5-chat", version)]
pub struct Args {
    /// The address this peer receives on (the original's MY_IP_ADDRESS_STR and
    /// MY_PORT). Port 0 lets the kernel pick a free one.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:55566")]
    pub bind: SocketAddr,

    /// The address the other peer receives on (PEER_IP_ADDRESS_STR and
    /// PEER_PORT). IPv6 works too: `[::1]:55577`.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:55577")]
    pub peer: SocketAddr,

    /// Show datagrams from any sender, as the original does. By default only
    /// the peer's are shown; others are dropped with a warning.
    #[arg(long)]
    pub accept_any: bool,
}
// ANCHOR_END: args

impl Args {
    /// Parses the command line, exiting with clap's usage error (status 2)
    /// when it makes no sense.
    pub fn parse_checked() -> Args {
        let args = Args::parse();
        // One socket has one address family: an IPv4 socket cannot send to
        // an IPv6 peer, nor the other way round.
        if args.bind.is_ipv4() != args.peer.is_ipv4() {
            Args::command()
                .error(
                    ErrorKind::ArgumentConflict,
                    format!(
                        "--bind {} and --peer {} must both be IPv4 or both IPv6: one UDP socket speaks one family",
                        args.bind, args.peer
                    ),
                )
                .exit();
        }
        args
    }

    /// The command that starts the other peer on this machine: it binds our
    /// peer address and sends to the address we actually bound.
    pub fn peer_command(&self, bound: SocketAddr) -> String {
        let program = std::env::current_exe()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|_| "lesson5-chat".into());
        let mut command = format!("{program} --bind {} --peer {bound}", self.peer);
        if self.accept_any {
            command += " --accept-any";
        }
        command
    }
}
