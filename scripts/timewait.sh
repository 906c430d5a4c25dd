#!/usr/bin/env bash
# Reproduces the post's restart bug live on loopback and narrates it: lesson 3's
# server, stopped while clients are connected, cannot bind its port again because
# its old connections sit in TIME-WAIT; lesson 4's server (SO_REUSEADDR) can.
#
# It drives the real binaries (built by cargo if stale): servers in the
# background, clients fed from FIFOs as if typed, Ctrl+C sent as SIGINT. Each run
# uses fresh ports picked by the kernel (--bind 127.0.0.1:0), so it works while a
# server of yours runs on 8890.
#
# Needs `ss` (iproute2), `mkfifo` and GNU coreutils 8.31 or later (for
# `env --default-signal`); it checks for them first and says what to install.
set -euo pipefail
# cargo must run inside the workspace, wherever the script is called from.
cd "$(dirname "$0")/.."

missing=()
command -v ss >/dev/null 2>&1 || missing+=("ss (install iproute2: apt-get install iproute2, dnf install iproute)")
command -v mkfifo >/dev/null 2>&1 || missing+=("mkfifo (install coreutils)")
if ! env --default-signal=INT true >/dev/null 2>&1; then
    missing+=("env --default-signal (GNU coreutils 8.31 or later; yours: $(env --version 2>/dev/null | head -n 1 || echo unknown))")
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "timewait.sh: cannot run; missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi

# A script's background commands start with SIGINT ignored (bash does that
# without job control), so SIGINT could not stop them the way Ctrl+C does;
# `env --default-signal=INT` gives it back its default action.
# And without job control a background command's stdin is /dev/null unless
# redirected on the command itself, hence the explicit `<&0`: the caller's
# redirection (a client's FIFO) reaches the program.
background() { env --default-signal=INT "$@" <&0 & }

# Where each binary is: cargo builds it if stale and prints its path, so a
# CARGO_TARGET_DIR elsewhere works. (`bin NAME` prints it.)
declare -A bins
for name in lesson3-server lesson3-client lesson4-server; do
    bins[$name]=$(cargo run -q -p workspace-bin -- "$name")
done
bin() { printf '%s' "${bins[$1]}"; }
work=$(mktemp -d)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
show() { sed 's/^/    | /' "$1"; }

# wait_for FILE TEXT: waits (at most 5 s) until FILE contains TEXT.
wait_for() {
    for _ in $(seq 100); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "timewait.sh: no \"$2\" in $1 after 5 s:" >&2
    cat "$1" >&2
    exit 1
}

# stop PID: Ctrl+C, i.e. SIGINT; the lessons have no handler, so it kills them.
stop() {
    kill -INT "$1"
    for _ in $(seq 100); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.02
    done
    echo "timewait.sh: process $1 ignored SIGINT (started with it ignored?); killing it" >&2
    kill -KILL "$1"
}

# started PID LOG: waits until the server PID listens (status 0) or exits
# (status 1, its exit status in $status).
started() {
    for _ in $(seq 250); do
        grep -q "listening on" "$2" && return 0
        if ! kill -0 "$1" 2>/dev/null; then
            if wait "$1" 2>/dev/null; then status=0; else status=$?; fi
            return 1
        fi
        sleep 0.02
    done
    echo "timewait.sh: server $1 neither listens nor exits after 5 s" >&2
    exit 1
}

# list STATE PORT: waits (at most 2 s) until two sockets with local port PORT
# are in STATE (one per client), then prints them as `ss` does.
list() {
    for _ in $(seq 100); do
        [ "$(ss -Htan state "$1" sport = ":$2" | wc -l)" -ge 2 ] && break
        sleep 0.02
    done
    echo "    \$ ss -tan state $1 sport = :$2"
    ss -tan state "$1" sport = ":$2" | sed 's/^/    | /'
}

# start_server NAME LOG BIND: starts server NAME in the background; sets $server_pid.
start_server() {
    background "$(bin "$1")" --bind "$3" >"$2" 2>&1
    server_pid=$!
    pids+=("$server_pid")
}

# reproduce NAME: the post's steps with server NAME; sets $addr and $port.
reproduce() {
    local name=$1 log=$work/$1.log
    say "1. Start $name (in the background), on a port the kernel picks"
    start_server "$name" "$log" 127.0.0.1:0
    wait_for "$log" "listening on"
    addr=$(sed -n 's/^listening on //p' "$log")
    port=${addr##*:}
    echo "    \$ $name --bind 127.0.0.1:0 &"
    show "$log"

    say "2. Two clients connect and chat (lines written into their stdin)"
    local client_pids=()
    for n in 1 2; do
        mkfifo "$work/$name-client$n.in"
        # Keep the FIFO open on fd 3+n, as a terminal would stay open. Opened
        # read-write, which does not wait for a reader: a redirection on a
        # function call (`background … <fifo`) is opened by this shell, and
        # a read-only open would block here until some writer appeared.
        eval "exec $((3 + n))<>\"$work/$name-client$n.in\""
        background "$(bin lesson3-client)" --server "$addr" <"$work/$name-client$n.in" >"$work/$name-client$n.log" 2>&1
        client_pids+=("$!")
        pids+=("$!")
        echo "hello from client $n" >&$((3 + n))
        wait_for "$work/$name-client$n.log" "client receive"
        echo "    client $n:"
        show "$work/$name-client$n.log"
    done
    echo "    server:"
    show "$log"

    say "3. Ctrl+C stops the server first (while both clients are connected)"
    stop "$server_pid"
    echo "    The kernel closed the server's sockets; its ends of the connections wait for the clients' FIN:"
    list fin-wait-2 "$port"

    say "4. Then Ctrl+C stops the clients"
    for n in 1 2; do
        stop "${client_pids[$((n - 1))]}"
        eval "exec $((3 + n))>&-"
    done
    echo "    Their FINs arrive: the server's ends move to TIME-WAIT, where they stay 60 s."

    say "5. Start $name again at once, on the same port"
    echo "    \$ $name --bind $addr"
    start_server "$name" "$work/$name-again.log" "$addr"
    if started "$server_pid" "$work/$name-again.log"; then restarted=yes; else restarted=no; fi
    show "$work/$name-again.log"
}

reproduce lesson3-server
[ "$restarted" = no ] || { echo "timewait.sh: lesson 3 restarted; expected EADDRINUSE" >&2; exit 1; }
echo "    (exit status $status)"
say "6. Why: the server's old connections are still in TIME-WAIT, holding the port"
list time-wait "$port"
lesson3_addr=$addr

say "7. Even lesson 4 cannot take this port now: on Linux the old sockets and the
   new one must all have set SO_REUSEADDR, and lesson 3's have not"
echo "    \$ lesson4-server --bind $lesson3_addr"
start_server lesson4-server "$work/lesson4-blocked.log" "$lesson3_addr"
if started "$server_pid" "$work/lesson4-blocked.log"; then
    echo "timewait.sh: lesson 4 took lesson 3's port; expected EADDRINUSE" >&2
    exit 1
fi
show "$work/lesson4-blocked.log"

say "=== Lesson 4, the same steps on a fresh port ==="
reproduce lesson4-server
[ "$restarted" = yes ] || { echo "timewait.sh: lesson 4 did not restart" >&2; exit 1; }
say "6. It restarted, although its old connections are still in TIME-WAIT:"
list time-wait "$port"
stop "$server_pid"
say "Done: lesson 3 could not restart for up to 60 s; lesson 4 (SO_REUSEADDR) restarted at once."
