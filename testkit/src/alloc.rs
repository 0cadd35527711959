//! A counting global allocator for tests that prove a path allocates nothing (or leaks
//! nothing). It forwards every call to the system allocator and counts on the way:
//!
//! - [`allocations`]: allocations (alloc, alloc_zeroed, realloc) by every thread of the
//!   process, for a test whose measured work runs on other threads (server workers);
//! - [`thread_allocations`]: the same, made by the calling thread only, for a test that
//!   measures its own calls while peers on other threads allocate as they like;
//! - [`live_bytes`]: bytes allocated and not yet freed, by every thread;
//! - [`thread_live_bytes`]: bytes allocated minus bytes freed by the calling thread, so a
//!   test can take its own clients' heap out of the process's (what a thread frees that
//!   another allocated counts against the freeing thread).
//!
//! Install it in the test binary that measures (a global allocator is per binary):
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: testkit::alloc::Counting = testkit::alloc::Counting;
//!
//! fn main() {
//!     let before = testkit::alloc::thread_allocations();
//!     let boxed = std::hint::black_box(Box::new(1u64));
//!     assert_eq!(testkit::alloc::thread_allocations() - before, 1);
//!     drop(boxed);
//! }
//! ```
//!
//! Without that, the counters stay at zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The allocator: the system allocator plus the counters of this module.
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);

thread_local! {
    // `const` and no destructor: reading it never allocates, so the allocator may use it.
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static THREAD_LIVE: Cell<i64> = const { Cell::new(0) };
}

/// Allocations made so far by every thread of the process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Allocations made so far by the calling thread.
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}

/// Bytes allocated and not yet freed, by every thread of the process.
pub fn live_bytes() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// Bytes the calling thread allocated minus the bytes it freed.
pub fn thread_live_bytes() -> i64 {
    THREAD_LIVE.with(Cell::get)
}

fn thread_live(bytes: i64) {
    let _ = THREAD_LIVE.try_with(|n| n.set(n.get() + bytes));
}

fn count(bytes: i64) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    LIVE.fetch_add(bytes, Ordering::Relaxed);
    // A thread being torn down has no counter left; its allocations count process-wide only.
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    thread_live(bytes);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        thread_live(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
}
