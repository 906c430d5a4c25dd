#!/usr/bin/env bash
# Starts a UDP chat stage (lesson 1, 2 or 5) on loopback: `just lesson1`, `just lesson2`.
#
#   chat-stage.sh CRATE [a|b] [ARGS...]
#
# The program is the crate's binary of the same name, or $CHAT_BIN when set
# (lesson 5's crate holds three programs; its chat is `lesson5-chat`).
#
# Without a|b, in a terminal with tmux installed: both peers side by side in
# one tmux window (the current window is split when already inside tmux).
# Without tmux or a terminal: peer A, with how to start peer B. `a` or `b`
# starts that one peer here. ARGS go to the program(s), e.g. --accept-any.
set -euo pipefail

crate=$1
shift
role=""
case "${1:-}" in
    a | b) role=$1; shift ;;
esac
recipe=${crate%%-*} # lesson1-udp-alternating -> lesson1

peer_a=(--bind 127.0.0.1:55566 --peer 127.0.0.1:55577)
peer_b=(--bind 127.0.0.1:55577 --peer 127.0.0.1:55566)

cargo build -q -p "$crate"
# Absolute: a tmux pane may start in another folder.
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/${CHAT_BIN:-$crate}"

case "$role" in
    a) exec "$bin" "${peer_a[@]}" "$@" ;;
    b) exec "$bin" "${peer_b[@]}" "$@" ;;
esac

if command -v tmux >/dev/null && [ -t 0 ] && [ -t 1 ]; then
    # Each pane runs one peer and, once it ends, waits for Enter so that its
    # last lines stay readable.
    pane() {
        printf '%q ' "$bin" "$@"
        printf '; printf "\\n[%s ended: press Enter to close this pane] "; read -r _' "$recipe"
    }
    command_a=$(pane "${peer_a[@]}" "$@")
    command_b=$(pane "${peer_b[@]}" "$@")
    if [ -n "${TMUX:-}" ]; then
        tmux split-window -h "$command_b"
        tmux select-pane -L
        eval "$command_a"
    else
        tmux new-session -s "$recipe-$$" "$command_a" \; split-window -h "$command_b" \; select-pane -L
    fi
else
    echo "Starting peer A. Start peer B in a second terminal: just $recipe b"
    exec "$bin" "${peer_a[@]}" "$@"
fi
