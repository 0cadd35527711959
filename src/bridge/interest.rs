//! The rooms this instance has members in: what the subscriber keeps subscribed on Redis.
//!
//! Each worker reports when a room gains its first member there or loses its last (`Rooms`
//! knows), so a room's count is the number of workers holding a member of it. It is touched on
//! those changes only, never per message, and never while a lock holder waits on Redis: the
//! subscriber takes a copy of the set when it has changed and works from that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub struct Interest {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Room → workers with a member in it; rooms at zero are removed.
    rooms: HashMap<Arc<str>, usize>,
    /// Bumped on every change, so the subscriber copies the set only when it moved.
    version: u64,
}

impl Interest {
    /// A worker has its first member of `room`.
    pub fn opened(&self, room: &Arc<str>) {
        let mut state = self.lock();
        *state.rooms.entry(room.clone()).or_insert(0) += 1;
        state.version += 1;
    }

    /// A worker has lost its last member of `room`.
    pub fn emptied(&self, room: &Arc<str>) {
        let mut state = self.lock();
        let Some(count) = state.rooms.get_mut(room) else {
            debug_assert!(false, "{room} emptied on a worker that never opened it");
            return;
        };
        *count -= 1;
        if *count == 0 {
            state.rooms.remove(room);
        }
        state.version += 1;
    }

    /// The rooms wanted now, if the set changed since version `seen` (`None`: never looked);
    /// `seen` moves to the current version.
    pub fn changed_since(&self, seen: &mut Option<u64>) -> Option<Vec<Arc<str>>> {
        let state = self.lock();
        if *seen == Some(state.version) {
            return None;
        }
        *seen = Some(state.version);
        Some(state.rooms.keys().cloned().collect())
    }

    // A panic elsewhere while holding the lock leaves counts that are still whole numbers:
    // carry on with them rather than take the bridge down.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(rooms: Vec<Arc<str>>) -> Vec<String> {
        let mut names: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_room_is_wanted_while_any_worker_has_a_member() {
        let interest = Interest::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut seen = None;
        assert_eq!(interest.changed_since(&mut seen), Some(vec![]));
        assert_eq!(interest.changed_since(&mut seen), None, "nothing moved");
        interest.opened(&a); // worker 0
        interest.opened(&a); // worker 1
        interest.opened(&b);
        assert_eq!(
            sorted(interest.changed_since(&mut seen).unwrap()),
            ["a", "b"]
        );
        interest.emptied(&a); // worker 0 only: worker 1 still has a member
        assert_eq!(
            sorted(interest.changed_since(&mut seen).unwrap()),
            ["a", "b"]
        );
        interest.emptied(&a);
        interest.emptied(&b);
        interest.opened(&b);
        assert_eq!(sorted(interest.changed_since(&mut seen).unwrap()), ["b"]);
    }
}
