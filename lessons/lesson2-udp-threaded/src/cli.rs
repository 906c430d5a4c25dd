//! The command line of lesson 2: lesson 1's, plus `--accept-any`.
//!
//! The original configures itself with `#define`s that must be edited and
//! recompiled on each machine; here the same four values are flags with the
//! original's ports as defaults. clap parses the addresses into
//! `SocketAddr`s, so a malformed address never reaches a socket call.

use std::net::SocketAddr;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// Peer A's addresses when none are given: the original's ports.
const DEFAULT_BIND: &str = "127.0.0.1:55566";
const DEFAULT_PEER: &str = "127.0.0.1:55577";

/// The original's receive timeout: one second.
const DEFAULT_RECV_TIMEOUT_MS: u64 = 1000;

// ANCHOR: args
/// A UDP peer-to-peer chat: a receiver thread prints messages as they
/// arrive while the main thread sends the lines you type.
#[derive(Parser, Debug)]
// args_override_self: a later occurrence of a flag replaces an earlier one,
// so a flag typed after a `just` recipe overrides the recipe's default.
#[command(name = "lesson2-udp-threaded", version, args_override_self = true)]
pub struct Args {
    /// The address this peer receives on (the original's MY_IP_ADDRESS_STR and
    /// MY_PORT). Port 0 lets the kernel pick a free one.
    #[arg(long, value_name = "IP:PORT", default_value = DEFAULT_BIND)]
    pub bind: SocketAddr,

    /// The address the other peer receives on (PEER_IP_ADDRESS_STR and
    /// PEER_PORT). IPv6 works too: `[::1]:55577`.
    #[arg(long, value_name = "IP:PORT", default_value = DEFAULT_PEER)]
    pub peer: SocketAddr,

    /// How long each receive waits before the receiver thread checks whether
    /// it should stop, in milliseconds: the longest a shutdown can take. 0 is
    /// refused: for SO_RCVTIMEO it means "wait forever", and the thread
    /// would never notice the shutdown.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_RECV_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub recv_timeout_ms: u64,

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

    /// The command that starts the other peer on this machine, as a
    /// learner types it: `just lesson1 b` for lesson 1's peer A with the
    /// defaults, `just lesson1 a` for its peer B, and otherwise peer B with
    /// the addresses spelled out. It binds our peer address and sends to the
    /// address we actually bound.
    pub fn peer_command(&self, bound: SocketAddr) -> String {
        // The crate's name up to its first dash: the `just` recipe.
        let recipe = env!("CARGO_PKG_NAME").split('-').next().unwrap_or_default();
        let (peer, bound) = (self.peer.to_string(), bound.to_string());
        let mut command = if (peer.as_str(), bound.as_str()) == (DEFAULT_PEER, DEFAULT_BIND) {
            format!("just {recipe} b")
        } else if (peer.as_str(), bound.as_str()) == (DEFAULT_BIND, DEFAULT_PEER) {
            format!("just {recipe} a")
        } else {
            format!("just {recipe} b --bind {peer} --peer {bound}")
        };
        if self.recv_timeout_ms != DEFAULT_RECV_TIMEOUT_MS {
            command += &format!(" --recv-timeout-ms {}", self.recv_timeout_ms);
        }
        if self.accept_any {
            command += " --accept-any";
        }
        command
    }
}
