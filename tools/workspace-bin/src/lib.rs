//! Where a binary of this workspace is, fresh.
//!
//! A test of lesson 4 starts lesson 3's server, the benchmark starts every
//! server, and the scripts behind `just` start the lessons. Guessing the path
//! (`target/debug/NAME`) goes wrong in three ordinary set-ups: a
//! `CARGO_TARGET_DIR` elsewhere, a `--release` run, and a binary whose sources
//! changed since it was last built (the test would then exercise old code).
//! So every caller asks cargo instead: `cargo build` is a no-op when the
//! binary is fresh, rebuilds it when it is not, and reports the executable's
//! real path in its JSON messages (escargot reads them).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Which cargo profile to build with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    /// The profile the calling code itself was built with, so that a
    /// `cargo test --release` run tests release binaries.
    pub fn current() -> Self {
        if cfg!(debug_assertions) {
            Profile::Debug
        } else {
            Profile::Release
        }
    }
}

/// The root of this workspace (the folder of its top-level Cargo.toml).
///
/// Under cargo (`cargo test`, `cargo run`) it is found from the package
/// being run, at run time: a path compiled in would name another checkout
/// when two checkouts share one target folder and cargo reuses this crate.
pub fn workspace_root() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tools/workspace-bin sits two levels below the workspace root")
        .to_path_buf();
    let Some(running) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return compiled;
    };
    Path::new(&running)
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.lines().any(|line| line.trim() == "[workspace]"))
        })
        .map_or(compiled, Path::to_path_buf)
}

/// Builds the workspace binary named `bin` if it is missing or stale, and
/// returns its path. (Binary names are unique across the workspace, so cargo
/// finds the package by itself.)
pub fn path(bin: &str, profile: Profile) -> Result<PathBuf> {
    let mut build = escargot::CargoBuild::new()
        .manifest_path(workspace_root().join("Cargo.toml"))
        .bin(bin);
    if profile == Profile::Release {
        build = build.release();
    }
    let run = build
        .run()
        .with_context(|| format!("cannot build binary {bin} with cargo"))?;
    Ok(run.path().to_path_buf())
}
