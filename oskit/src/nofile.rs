//! The open-files limit: each connection costs one descriptor, so capacity is bounded by it.

use std::io;

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the resulting soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The current soft RLIMIT_NOFILE.
pub fn nofile_limit() -> io::Result<u64> {
    rlimit::Resource::NOFILE.get_soft()
}

#[cfg(test)]
mod tests {
    #[test]
    fn raising_never_lowers_and_reaches_the_hard_limit() {
        let before = super::nofile_limit().unwrap();
        let after = super::raise_nofile_limit().unwrap();
        assert!(after >= before);
        assert_eq!(after, super::nofile_limit().unwrap());
        let hard = rlimit::Resource::NOFILE.get_hard().unwrap();
        assert_eq!(after, hard);
    }
}
