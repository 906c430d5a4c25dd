//! Two defaults the book states, read where nothing has changed them: a
//! network namespace created for the test. Loopback's MTU is 65,536 bytes
//! (why a 60,000-byte datagram crosses it in one packet), and
//! `net.ipv4.ipfrag_time`, how long the kernel keeps the fragments of an
//! incomplete datagram, is 30 seconds. Both are per namespace, so the
//! machine's own settings do not leak in.
//!
//! Creating a namespace needs CAP_SYS_ADMIN: as another user these tests
//! say so and pass without checking; as root they never skip.

use std::process::Command;
use std::thread;

use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};

/// Runs `check` on a thread of its own inside a new network namespace
/// (only that thread moves), or returns `None` where the test may not
/// create one.
fn in_fresh_namespace<T: Send + 'static>(check: fn() -> T) -> Option<T> {
    thread::spawn(move || match unshare(CloneFlags::CLONE_NEWNET) {
        Ok(()) => Some(check()),
        Err(Errno::EPERM) if !nix::unistd::geteuid().is_root() => {
            eprintln!("not checked: creating a network namespace needs root here");
            None
        }
        Err(err) => panic!("unshare(CLONE_NEWNET): {err}"),
    })
    .join()
    .expect("the namespace thread")
}

#[test]
fn loopback_mtu_is_65536_in_a_fresh_namespace() {
    // `ip` runs in the namespace of the thread that starts it.
    let Some(link) = in_fresh_namespace(|| {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "lo"])
            .output()
            .expect("run ip (iproute2)");
        assert!(out.status.success(), "ip link: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }) else {
        return;
    };
    assert!(link.contains(" mtu 65536 "), "{link}");
}

#[test]
fn ipfrag_time_is_30_seconds_in_a_fresh_namespace() {
    // /proc/sys/net shows the namespace of the thread that opens it.
    let Some(text) = in_fresh_namespace(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ipfrag_time").expect("read ipfrag_time")
    }) else {
        return;
    };
    assert_eq!(text.trim(), "30");
}
