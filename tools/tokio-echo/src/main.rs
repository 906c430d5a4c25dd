//! A TCP echo server as production Rust would write it: tokio's default
//! multi-threaded runtime (one worker thread per CPU the process may use),
//! a task per client. A task is a small state machine, not a thread: the
//! runtime's workers wait for readiness with epoll, as lesson 5 does by
//! hand, and run whichever tasks can make progress. It is a peer in
//! `tools/echo-bench`, not a lesson.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP echo server: one tokio task per client.
#[derive(Parser, Debug)]
#[command(name = "tokio-echo-server", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8890")]
    bind: SocketAddr,
    /// Length of the queue of connections not accepted yet.
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    backlog: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    let socket = match args.bind {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .context("cannot create a TCP socket")?;
    socket
        .set_reuseaddr(true)
        .context("cannot set SO_REUSEADDR")?;
    socket
        .bind(args.bind)
        .with_context(|| format!("cannot bind TCP socket to {}", args.bind))?;
    let listener = socket
        .listen(args.backlog)
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(echo(client));
            }
            Err(err) if matches!(err.raw_os_error(), Some(code) if is_resource_error(code)) => {
                // Out of descriptors: the connection stays queued, so
                // retrying at once would spin.
                eprintln!("cannot accept a client: {err}; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => eprintln!("cannot accept a client: {err}"),
        }
    }
}

fn is_resource_error(code: i32) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(code, 24 | 23 | 105 | 12)
}

/// Echoes everything the client sends back to it until it leaves.
async fn echo(mut client: TcpStream) {
    let mut buffer = [0u8; 4096];
    loop {
        let received = match client.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(received) => received,
        };
        if client.write_all(&buffer[..received]).await.is_err() {
            return;
        }
    }
}
