//! Every thread has a kernel stack that no process's RSS counts: the
//! benchmark chapter charges it to thread-per-client, 16 KiB per thread on
//! x86-64 (THREAD_SIZE). Checked here through `KernelStack` in
//! /proc/meminfo, which grows by one stack per thread that exists.

use std::sync::{Arc, Barrier};
use std::thread;

use procfs::{Current, Meminfo};

/// Threads started per try: enough that their stacks (8 MiB at 16 KiB)
/// stand well clear of what the rest of the machine does meanwhile.
const THREADS: usize = 500;

fn kernel_stack_kib() -> u64 {
    Meminfo::current()
        .expect("read /proc/meminfo")
        .kernel_stack
        .expect("a KernelStack line")
        / 1024
}

/// KernelStack's growth per thread while `THREADS` threads wait, in KiB.
fn kib_per_thread() -> f64 {
    let before = kernel_stack_kib();
    let (started, release) = (
        Arc::new(Barrier::new(THREADS + 1)),
        Arc::new(Barrier::new(THREADS + 1)),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (started, release) = (Arc::clone(&started), Arc::clone(&release));
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    started.wait();
                    release.wait();
                })
                .expect("spawn a thread")
        })
        .collect();
    started.wait();
    let during = kernel_stack_kib();
    release.wait();
    for thread in threads {
        thread.join().expect("join");
    }
    (during as f64 - before as f64) / THREADS as f64
}

#[test]
#[cfg(target_arch = "x86_64")]
fn each_thread_costs_a_16_kib_kernel_stack() {
    // Other processes start and end threads too: the median of five tries.
    let mut tries: Vec<f64> = (0..5).map(|_| kib_per_thread()).collect();
    tries.sort_by(f64::total_cmp);
    let median = tries[2];
    assert!(
        (15.0..=17.0).contains(&median),
        "KernelStack grew by {median:.2} KiB per thread (tries: {tries:?}); \
         16 KiB expected on x86-64 (32 KiB if the kernel was built with KASAN)"
    );
}
