//! CPU selection and pinning.
//!
//! Owns the answer to "which cores may our threads run on": the process's allowed CPU set
//! (so `taskset -c 0 corecast` keeps every worker on core 0) or an explicit `--cpus` list.

use std::fmt;

/// A parsed `--cpus` list such as `0,2-3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Why a CPU list did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CPU list {input:?}: {reason}")]
pub struct CpuListError {
    input: String,
    reason: &'static str,
}

impl std::str::FromStr for CpuList {
    type Err = CpuListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| CpuListError {
            input: s.to_string(),
            reason,
        };
        let mut cpus = Vec::new();
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(err("empty entry"));
            }
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: usize = lo.parse().map_err(|_| err("not a number"))?;
            let hi: usize = hi.parse().map_err(|_| err("not a number"))?;
            if hi < lo {
                return Err(err("range end before start"));
            }
            if hi >= 4096 {
                return Err(err("CPU index too large"));
            }
            for cpu in lo..=hi {
                if !cpus.contains(&cpu) {
                    cpus.push(cpu);
                }
            }
        }
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The cores threads may be pinned to: `explicit` when given, else the allowed CPU set of the
/// calling thread (sched_getaffinity), else an empty list (pinning then does nothing).
pub fn available_cores(explicit: Option<&CpuList>) -> Vec<usize> {
    if let Some(list) = explicit {
        return list.0.clone();
    }
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Number of threads to run by default: one per allowed core, at least one.
pub fn default_threads(explicit: Option<&CpuList>) -> usize {
    available_cores(explicit).len().max(1)
}

/// Pins the calling thread to `core`. Returns false (and changes nothing) when the OS refuses,
/// e.g. a core outside the allowed set: callers log that and run unpinned.
pub fn pin_current_thread(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!("0".parse::<CpuList>().unwrap().0, vec![0]);
        assert_eq!("0,2-4".parse::<CpuList>().unwrap().0, vec![0, 2, 3, 4]);
        assert_eq!(" 1 , 1 ".parse::<CpuList>().unwrap().0, vec![1]);
    }

    #[test]
    fn rejects_bad_lists() {
        for bad in ["", "a", "1,", "3-1", "1-x", "99999"] {
            assert!(bad.parse::<CpuList>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn allowed_set_is_not_empty_here() {
        assert!(!available_cores(None).is_empty());
        assert_eq!(available_cores(Some(&CpuList(vec![1]))), vec![1]);
    }
}
