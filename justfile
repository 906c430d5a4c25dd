# socket-lessons: run a stage of the course, its tests, its book and its benchmark.
# `just --list` shows every recipe with the line above it.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments

# Show every recipe.
default:
    @just --list --unsorted

# ---- lessons 1-2: UDP peer-to-peer chat ----

# Lesson 1: UDP chat in one thread; both peers side by side in tmux, else peer A (`just lesson1 b`: peer B; args pass through).
lesson1 *args:
    @bash scripts/chat-stage.sh lesson1-chat "$@"

# Lesson 2: UDP chat with a receiver thread; both peers in tmux, else peer A (`just lesson2 b`: peer B; args pass through).
lesson2 *args:
    @bash scripts/chat-stage.sh lesson2-chat "$@"

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

# Reproduce the TIME_WAIT restart bug live on loopback, then lesson 4's fix, narrated (the steps lesson 4's test checks).
timewait:
    cargo run -q -p timewait

# ---- lesson 5: one thread, poll and epoll ----

# Lesson 5: the UDP chat in one thread with poll; both peers in tmux, else peer A (`just lesson5 b`: peer B; args pass through).
lesson5 *args:
    @bash scripts/chat-stage.sh lesson5-chat "$@"

# Lesson 5's echo server: one thread, epoll (default 127.0.0.1:8890; args pass through).
lesson5-server *args:
    cargo run -q -p lesson5-event-loop --bin lesson5-server -- "$@"

# Lesson 5's client: poll on the keyboard and the socket; `exit` or Ctrl+D quits after the last echo (args pass through).
lesson5-client *args:
    cargo run -q -p lesson5-event-loop --bin lesson5-client -- "$@"

# ---- lesson 7: every kind of NAT, birthday punching, a relay ----

# Lesson 7 on loopback (no root): the rendezvous, alice and bob in tmux; `just lesson7 rendezvous|alice|bob` starts one here (args pass through). Behind real NATs: `just lab p2p --nat1 KIND --nat2 KIND`.
lesson7 *args:
    @bash scripts/lesson7.sh "$@"

# ---- practice: write each lesson yourself (practice/README.md) ----

# Check your lesson N in practice/ stage by stage (`just check N --stage K`: one stage; `--reference`: the lesson's own code); no N: the progress table.
check *args:
    @cargo run -q -p practice-check -- "$@"

# Re-check your lesson N on every save of practice/<its crate> (Ctrl+C stops).
practice lesson *args:
    @cargo run -q -p practice-check -- --watch "$@"

# ---- tests and CI ----

# Run every test of the workspace.
test:
    cargo test --workspace

# Format check, lints, tests, the practice stages' proof and the book: what CI runs.
ci:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test --workspace
    just practice-ci
    @# Both editions build without a WARN or ERROR; the Chinese catalogue is current and complete.
    bash scripts/book.sh check

# Prove the practice stages (minutes): every broken implementation fails exactly its stage, a copy of each reference lesson passes every stage, every untouched practice crate fails stage 1 cleanly, and the book's checker transcripts are current (`PRACTICE_LESSONS=7 just practice-ci`: lesson 7 alone).
practice-ci:
    cargo test -p practice-check --test broken -- --ignored --test-threads 1

# ---- the book ----

# The book in English and 简体中文 (`just book zh-CN`: the Chinese one alone; `just book en`): with a display, serve it and open a browser; without one, build it and say where it is.
book lang="all":
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
        if [ "{{ lang }}" = zh-CN ]; then
            exec env MDBOOK_BOOK__LANGUAGE=zh-CN MDBOOK_BOOK__TITLE="Rust 套接字编程：从两篇 C 原文出发" mdbook serve docs -d docs/book/zh-CN --open
        fi
        exec mdbook serve docs --open
    fi
    bash scripts/book.sh build {{ lang }}
    [ "{{ lang }}" = zh-CN ] && page=zh-CN/index.html || page=index.html
    echo "No display here: the book is in $PWD/docs/book/$page (中文版: docs/book/zh-CN/index.html)"
    echo "(or run 'mdbook serve docs' and browse http://localhost:3000 through a forwarded port)."

# Re-extract the English book's messages (po/messages.pot) and merge them into po/zh-CN.po: run after any English change, then translate what is empty or marked fuzzy.
po:
    bash scripts/book.sh po

# Regenerate the diffs between lessons that the book shows (docs/src/generated/*.diff).
diffs:
    UPDATE_GENERATED=1 cargo test -p book --test diffs

# Regenerate everything under docs/src/generated/: diffs and captured sessions.
generated:
    UPDATE_GENERATED=1 cargo test --workspace

# ---- benchmark ----

# Benchmark every server design (lessons 4-5, fork and tokio peers, ncat). `just bench` REWRITES TRACKED FILES (docs/src/generated/bench*); `just bench quick` (under a minute) writes under the target dir. Fails if a target does not hold.
bench mode="full":
    @echo {{ if mode == "quick" { "'just bench quick: results go under the target directory (target/bench-quick/).'" } else { "'just bench: this run rewrites the tracked files docs/src/generated/bench.md, bench-summary.md and bench-*.svg.'" } }}
    cargo run -q --release -p echo-bench -- suite {{ if mode == "quick" { "--quick" } else { "" } }}

# ---- the network lab ----

# The network lab (root): `just lab up`/`down` builds/removes vm1 and vm2; `just lab chat 1|2|5`, `just lab echo 3|4|5` run a lesson between them in tmux; `just lab p2p` opens lesson 6 (a rendezvous and two peers behind two NATs), `just lab p2p --nat1 KIND --nat2 KIND` lesson 7 behind any NATs; `just lab nat [KIND]` shows a NAT kind's ruleset and RFC 4787 behaviour; `just lab matrix` REWRITES docs/src/generated/matrix.md and matrix-birthday.svg (`just lab matrix quick`: under the target dir).
lab *args:
    @cargo run -q -p netlab --bin lab -- "$@"
