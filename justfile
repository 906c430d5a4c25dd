# socket-lessons: run a stage of the course, its tests, its book and its benchmark.
# `just --list` shows every recipe with the line above it.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments

# Show every recipe.
default:
    @just --list --unsorted

# ---- lessons 1-2: UDP peer-to-peer chat ----

# ---- lessons 3-4: TCP echo server ----

# Lesson 3: the thread-per-client TCP echo server (default 127.0.0.1:8890; args pass through).
lesson3 *args:
    cargo run -q -p lesson3-tcp-thread-per-client --bin lesson3-server -- "$@"

# Lesson 3's client: type lines, see them echoed; `exit` quits (args pass through, e.g. --server).
lesson3-client *args:
    cargo run -q -p lesson3-tcp-thread-per-client --bin lesson3-client -- "$@"

# Lesson 4: lesson 3's server plus SO_REUSEADDR (args pass through).
lesson4 *args:
    cargo run -q -p lesson4-tcp-reuseaddr --bin lesson4-server -- "$@"

# Reproduce the TIME_WAIT restart bug live on loopback, then lesson 4's fix, narrated.
timewait:
    cargo build -q -p lesson3-tcp-thread-per-client -p lesson4-tcp-reuseaddr
    bash scripts/timewait.sh

# ---- tests and CI ----

# Run every test of the workspace.
test:
    cargo test --workspace

# Format check, lints, tests and the book: what CI runs.
ci:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test --workspace

# ---- the book ----

# ---- benchmark ----
