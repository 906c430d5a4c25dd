#!/usr/bin/env bash
# Starts lesson 7 on loopback: `just lesson7`.
#
#   lesson7.sh [rendezvous|alice|bob] [ARGS...]
#
# Without a role, in a terminal with tmux installed: the rendezvous and the
# peers alice and bob side by side in one tmux window. Without tmux or a
# terminal, or with a role: that one program here (ARGS go to it, after the
# defaults; a flag given there wins). On loopback there is no NAT, so the
# direct path wins; `just lab p2p --nat1 KIND --nat2 KIND` shows the others.
set -euo pipefail
cd "$(dirname "$0")/.."

role=""
case "${1:-}" in
    rendezvous | alice | bob) role=$1; shift ;;
esac

rendezvous=(--bind 127.0.0.1:55500)
alice=(--bind 127.0.0.1:0 --rendezvous 127.0.0.1:55500 --name alice --peer-name bob)
bob=(--bind 127.0.0.1:0 --rendezvous 127.0.0.1:55500 --name bob --peer-name alice)

# Cargo builds the binaries if stale and says where they are (absolute).
server=$(cargo run -q -p workspace-bin -- lesson7-rendezvous)
peer=$(cargo run -q -p workspace-bin -- lesson7-peer)

case "$role" in
    rendezvous) exec "$server" "${rendezvous[@]}" "$@" ;;
    alice) exec "$peer" "${alice[@]}" "$@" ;;
    bob) exec "$peer" "${bob[@]}" "$@" ;;
esac

if command -v tmux >/dev/null && [ -t 0 ] && [ -t 1 ]; then
    # Each pane waits for Enter once its program ends, so its last lines stay.
    pane() {
        printf '%q ' "$@"
        printf '; printf "\\n[ended: press Enter to close this pane] "; read -r _'
    }
    tmux new-session -s "lesson7-$$" "$(pane "$server" "${rendezvous[@]}")" \; \
        split-window -h "$(pane "$peer" "${alice[@]}" "$@")" \; \
        split-window -v "$(pane "$peer" "${bob[@]}" "$@")" \; select-pane -t 1
else
    echo "No tmux or no terminal: start each one in its own terminal:"
    echo "  just lesson7 rendezvous; just lesson7 alice; just lesson7 bob"
    exit 1
fi
