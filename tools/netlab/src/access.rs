//! May this process build a lab? Creating network namespaces needs
//! CAP_SYS_ADMIN, which root has. A user without it may still get it inside
//! a user namespace of their own (`unshare --user --map-root-user`), where
//! the distribution allows unprivileged user namespaces; the lab's tests
//! then run themselves again in one. Where neither works, the lab says so in
//! one line, and its tests skip with that line as the reason.

use std::process::{Command, Stdio};

use nix::unistd::Uid;

/// Set in the environment of a test re-run inside a user namespace.
pub const IN_USERNS: &str = "NETLAB_IN_USERNS";

/// How this process can build a lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Root (or root of a user namespace set up for the lab): build it here.
    Root,
    /// Not root, but `unshare --user --map-root-user --net --mount` works:
    /// a lab can be built inside one.
    UserNamespace,
}

/// Whether and how a lab can be built here; the error is one line saying
/// why not and what to do.
pub fn access() -> Result<Access, String> {
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("tcpdump", "tcpdump"),
    ] {
        if which::which(tool).is_err() {
            return Err(format!(
                "the lab needs `{tool}`, which is not installed: install {package} \
                 (e.g. `apt-get install {package}`)"
            ));
        }
    }
    if Uid::effective().is_root() {
        return Ok(Access::Root);
    }
    let unshare = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--mount", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match unshare {
        Ok(output) if output.status.success() => Ok(Access::UserNamespace),
        Ok(output) => Err(format!(
            "the lab needs root or unprivileged user namespaces, and this machine allows \
             neither (`unshare --user --map-root-user --net --mount` said: {})",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(err) => Err(format!(
            "the lab needs root or unprivileged user namespaces; cannot run `unshare`: {err}"
        )),
    }
}
