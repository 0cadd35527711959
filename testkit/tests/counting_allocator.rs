//! The counting allocator installed as this binary's global allocator, as its users install
//! it. One test function, so no other test thread allocates while it measures.

use std::hint::black_box;
use std::sync::{Arc, Barrier};

use testkit::alloc::{allocations, live_bytes, thread_allocations, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn counts_allocations_per_process_and_per_thread_and_live_bytes() {
    // An allocation on this thread counts on this thread and process-wide.
    let (mine, all) = (thread_allocations(), allocations());
    let one = black_box(Box::new(7u64));
    assert_eq!(thread_allocations() - mine, 1);
    assert!(allocations() - all >= 1);
    drop(one);

    // Freeing is not an allocation.
    let one = black_box(Box::new(7u64));
    let mine = thread_allocations();
    drop(one);
    assert_eq!(thread_allocations(), mine);

    // Zeroed allocations and growth count too.
    let mine = thread_allocations();
    let mut v = black_box(vec![0u8; 64]);
    assert_eq!(thread_allocations() - mine, 1);
    v.reserve_exact(4096);
    assert_eq!(thread_allocations() - mine, 2);
    drop(v);

    // Another thread's allocations count process-wide, not on this thread.
    let start = Arc::new(Barrier::new(2));
    let done = Arc::new(Barrier::new(2));
    let other = {
        let (start, done) = (start.clone(), done.clone());
        std::thread::spawn(move || {
            start.wait();
            let before = thread_allocations();
            let boxes: Vec<Box<u64>> = (0..100).map(|i| black_box(Box::new(i))).collect();
            assert!(thread_allocations() - before >= 100);
            drop(boxes);
            done.wait();
        })
    };
    let (mine, all) = (thread_allocations(), allocations());
    start.wait();
    done.wait();
    assert_eq!(thread_allocations(), mine, "the other thread's allocations");
    assert!(allocations() - all >= 100);
    other.join().unwrap();

    // Live bytes follow allocation, growth and freeing.
    const MIB: i64 = 1 << 20;
    let before = live_bytes();
    let mut big = black_box(vec![1u8; MIB as usize]);
    assert!(live_bytes() - before >= MIB);
    big.reserve_exact(MIB as usize + 1);
    assert!(live_bytes() - before >= 2 * MIB);
    drop(big);
    assert!(live_bytes() - before < MIB / 2);
}
