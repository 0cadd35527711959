//! The machine's memory and the allocator's habits that decide whether freed memory goes back
//! to it.

/// Physical memory of the machine in bytes, if the OS says.
pub fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && page > 0).then(|| pages as u64 * page as u64)
}

/// Makes the allocator serve every allocation of at least `bytes` with its own mapping, which
/// goes back to the OS the moment it is freed. glibc otherwise raises this threshold after the
/// first large free, so later large buffers come from the heap and stay resident after they
/// are freed. Returns false where it cannot be set.
pub fn map_large_allocations(bytes: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(bytes) = libc::c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: mallopt only changes allocator parameters.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = bytes;
        false
    }
}

/// Hands free heap pages back to the OS (every arena).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_memory() {
        assert!(physical_memory().unwrap() > 64 << 20);
    }

    #[test]
    fn the_threshold_can_be_set() {
        assert!(map_large_allocations(1 << 20));
        release_free_memory();
    }
}
