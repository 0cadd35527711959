//! The echo hot path allocates nothing per message: a counting global allocator sees (almost)
//! no allocations across thousands of echoes once the connection is warm. The client here is
//! a raw socket with pre-encoded frames, so it allocates nothing in the loop either.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn echoing_allocates_nothing_per_message() {
    let server = start(corecast::Config {
        // No timer activity during the measurement.
        idle_timeout: std::time::Duration::ZERO,
        ..config()
    });
    let (mut s, _) = raw_upgrade(server.local_addr(), "/echo");
    const MESSAGES: u64 = 5000;
    for size in [16usize, 512, 16 * 1024] {
        let frame = client_frame(0x82, &vec![0x61u8; size], true);
        let header = if size < 126 { 2 } else { 4 };
        let mut reply = vec![0u8; header + size];
        let mut echo = |s: &mut std::net::TcpStream| {
            s.write_all(&frame).unwrap();
            s.read_exact(&mut reply).unwrap();
            assert_eq!(reply[0], 0x82);
        };
        for _ in 0..200 {
            echo(&mut s); // warm up: buffers reach their steady size
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..MESSAGES {
            echo(&mut s);
        }
        let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
        println!("{size} B echoes: {during} allocations for {MESSAGES} messages");
        // A per-message allocation anywhere would show as >= 5000; a handful is the worker's
        // occasional bookkeeping (a tick, a stats snapshot).
        assert!(
            during < MESSAGES / 50,
            "{size} B echoes: {during} allocations for {MESSAGES} messages"
        );
    }
}
