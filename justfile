# socket-lessons: run a stage of the course, its tests, its book and its benchmark.
# `just --list` shows every recipe with the line above it.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments

# Show every recipe.
default:
    @just --list --unsorted

# ---- lessons 1-2: UDP peer-to-peer chat ----

# ---- lessons 3-4: TCP echo server ----

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
