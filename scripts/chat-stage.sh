#!/usr/bin/env bash
# Starts a UDP chat stage (lesson 1, 2 or 5) on loopback: `just lesson1`, `just lesson2`.
#
#   chat-stage.sh BIN [a|b] [ARGS...]
#
# BIN is the chat program: lesson1-chat, lesson2-chat or lesson5-chat; its
# `just` recipe is its name up to the dash (lesson1).
#
# Without a|b, in a terminal with tmux installed: both peers side by side in
# one tmux window (the current window is split when already inside tmux).
# Without tmux or a terminal: peer A, with how to start peer B. `a` or `b`
# starts that one peer here. ARGS go to the program(s) after the defaults,
# and a flag given there wins (`just lesson1 a --peer 192.168.1.20:55577`).
# The programs print the flags that start the other peer; this script says
# the `just` form, which is shorter.
set -euo pipefail
# cargo must run inside the workspace, wherever the script is called from.
cd "$(dirname "$0")/.."

chat=$1
shift
role=""
case "${1:-}" in
    a | b) role=$1; shift ;;
esac
recipe=${chat%%-*} # lesson1-chat -> lesson1

peer_a=(--bind 127.0.0.1:55566 --peer 127.0.0.1:55577)
peer_b=(--bind 127.0.0.1:55577 --peer 127.0.0.1:55566)

# Cargo builds the binary if it is stale and says where it is (absolute, so
# a tmux pane may start in another folder; CARGO_TARGET_DIR is honoured).
bin=$(cargo run -q -p workspace-bin -- "$chat")

# How to start the other peer: with the defaults, the `just` recipe says it
# all; with flags of your own, add the flags this peer prints.
hint() {
    if [ $# -eq 0 ]; then
        echo "just $recipe $other"
    else
        echo "just $recipe $other, then the flags after 'start the peer with:' below"
    fi
}

case "$role" in
    a)
        other=b
        echo "Starting peer A. Start peer B in a second terminal: $(hint "$@")"
        exec "$bin" "${peer_a[@]}" "$@"
        ;;
    b)
        other=a
        echo "Starting peer B. Start peer A in a second terminal: $(hint "$@")"
        exec "$bin" "${peer_b[@]}" "$@"
        ;;
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
    other=b
    echo "Starting peer A. Start peer B in a second terminal: $(hint "$@")"
    exec "$bin" "${peer_a[@]}" "$@"
fi
