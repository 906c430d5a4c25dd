//! `workspace-bin BIN [--release]`: builds a binary of this workspace if it
//! is missing or stale and prints its path, for the scripts behind `just`.

use std::process::ExitCode;

use workspace_bin::{Profile, path};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bin, profile) = match args.as_slice() {
        [bin] => (bin, Profile::Debug),
        [bin, flag] if flag == "--release" => (bin, Profile::Release),
        _ => {
            eprintln!("usage: workspace-bin BIN [--release]");
            return ExitCode::from(2);
        }
    };
    match path(bin, profile) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
