//! What one descriptor in an epoll interest list costs the kernel: epoll(7)
//! says "roughly 160 bytes on a 64-bit kernel" (an `epitem` and an
//! `eppoll_entry`). The kernel's own figure is in the default of
//! /proc/sys/fs/epoll/max_user_watches: at boot, fs/eventpoll.c sets it so
//! that one user's watches may take 4% of memory, `total RAM / 25 /
//! EP_ITEM_COST`, which gives the cost back. (Counting slab memory before
//! and after adding watches does not work: freed slab pages stay cached,
//! so a second try shows a fraction of the first.)

use procfs::{Current, Meminfo};

#[test]
fn the_kernel_counts_about_160_to_200_bytes_per_epoll_watch() {
    let watches: f64 = std::fs::read_to_string("/proc/sys/fs/epoll/max_user_watches")
        .expect("read /proc/sys/fs/epoll/max_user_watches")
        .trim()
        .parse()
        .expect("a number");
    // MemTotal has grown a little since boot (the kernel frees its init
    // code), so the figure comes out a fraction of a percent high.
    let memory = Meminfo::current().expect("read /proc/meminfo").mem_total as f64;
    let per_watch = memory / 25.0 / watches;
    assert!(
        (150.0..=200.0).contains(&per_watch),
        "max_user_watches {watches} for {memory} bytes of memory means {per_watch:.1} bytes \
         per watch; epoll(7) says roughly 160 (was fs.epoll.max_user_watches changed \
         from its boot default?)"
    );
    eprintln!("{per_watch:.1} bytes per epoll watch");
}
