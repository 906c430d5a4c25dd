//! What happens to datagrams while lesson 1 waits for you to type.
//!
//! The program is not in recvfrom then, but the kernel still receives for
//! it: each datagram waits in the socket's receive buffer, and every turn of
//! the loop (every Enter) takes one, oldest first. The buffer is bounded
//! (`net.core.rmem_default` bytes, counting each datagram's bookkeeping
//! too); once it is full, the kernel drops what arrives, tells neither side,
//! and only counts it in the `drops` column of /proc/net/udp.

use std::time::Instant;

use testkit::udp::{FAST, PROMPT, SocketPeer, udp_drops};
use testkit::{DEADLINE, LOCALHOST};

const BIN: &str = "lesson1-chat";

/// Presses Enter and returns what the program printed up to its next
/// prompt (a `[from …]` line, or nothing when no datagram was queued).
fn one_turn(chat: &mut SocketPeer) -> String {
    chat.app.type_line("");
    chat.app.expect_stdout(PROMPT).replace(PROMPT, "")
}

#[test]
fn datagrams_sent_while_waiting_for_input_are_shown_one_per_loop() {
    // SocketPeer::start waited for the prompt: the program reads stdin.
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    let from = format!("[from {}]", chat.socket_addr());
    for text in ["first", "second", "third"] {
        chat.send(text.as_bytes());
    }
    for text in ["first", "second", "third"] {
        assert_eq!(
            one_turn(&mut chat).trim(),
            format!("{from} {text}"),
            "one datagram per turn, oldest first\n{}",
            chat.app.describe()
        );
    }
    assert_eq!(
        one_turn(&mut chat).trim(),
        "",
        "three datagrams were queued, no more"
    );
    chat.app.type_line("quit");
    assert!(chat.app.wait_exit().success(), "{}", chat.app.describe());
}

#[test]
fn datagrams_beyond_the_receive_buffer_are_dropped_silently() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    assert_eq!(udp_drops(chat.app_addr), Some(0), "no drops before");

    // Three times more bytes than the default receive buffer holds.
    let rmem: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(212_992);
    let payload = 1000;
    let sent = (rmem * 3 / payload).clamp(100, 50_000);
    for i in 0..sent {
        chat.send(format!("{i:06} {}", "x".repeat(payload - 7)).as_bytes());
    }
    let start = Instant::now();
    let drops = loop {
        match udp_drops(chat.app_addr) {
            Some(drops) if drops > 0 => break drops as usize,
            _ => assert!(start.elapsed() < DEADLINE, "no drops counted"),
        }
    };
    assert!(drops < sent, "{drops} of {sent} dropped: none kept?");

    // The kept ones are the oldest, shown in order; the rest never show.
    let kept = sent - drops;
    let from = format!("[from {}] ", chat.socket_addr());
    for i in 0..kept {
        let shown = one_turn(&mut chat);
        assert!(
            shown.trim().starts_with(&format!("{from}{i:06} ")),
            "turn {i} of {kept} kept ({drops} dropped): {:?}",
            &shown[..shown.len().min(80)]
        );
    }
    assert_eq!(
        one_turn(&mut chat).trim(),
        "",
        "{kept} kept + {drops} dropped = {sent} sent: nothing else"
    );
    assert_eq!(chat.app.stderr(), "", "the drops are silent");
    chat.app.type_line("quit");
    assert!(chat.app.wait_exit().success(), "{}", chat.app.describe());
}
