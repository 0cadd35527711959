//! The rooms this instance has members in: what the subscriber keeps subscribed on Redis.
//!
//! Each worker reports when a room gains its first member there or loses its last (`Rooms`
//! knows), so for each room it knows which workers hold a member. Workers touch it on those
//! changes only, never per message. The subscriber takes a copy of the room set when it has
//! changed and subscribes from that, never holding the lock while it waits on Redis; for each
//! frame it hears it asks which workers to hand it to (`for_each_worker`), so a worker with no
//! member of the room is not woken for it, and a worker's first member is served from the
//! moment it joins, not from the subscriber's next look.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub struct Interest {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Room → the workers with a member in it (a handful at most, in no order); rooms with
    /// none are removed.
    rooms: HashMap<Arc<str>, Vec<usize>>,
    /// Bumped on every change, so the subscriber copies the set only when it moved.
    version: u64,
}

impl Interest {
    /// `worker` has its first member of `room`.
    pub fn opened(&self, room: &Arc<str>, worker: usize) {
        let mut state = self.lock();
        state.rooms.entry(room.clone()).or_default().push(worker);
        state.version += 1;
    }

    /// `worker` has lost its last member of `room`.
    pub fn emptied(&self, room: &Arc<str>, worker: usize) {
        let mut state = self.lock();
        let Some(workers) = state.rooms.get_mut(room) else {
            debug_assert!(false, "{room} emptied on a worker that never opened it");
            return;
        };
        workers.retain(|&w| w != worker);
        if workers.is_empty() {
            state.rooms.remove(room);
        }
        state.version += 1;
    }

    /// Calls `hand` with each worker that has a member of `room`. The lock is held meanwhile:
    /// `hand` must not block (a `try_send` and a wake-up are what it is for).
    pub fn for_each_worker(&self, room: &str, mut hand: impl FnMut(usize)) {
        let state = self.lock();
        for &worker in state.rooms.get(room).into_iter().flatten() {
            hand(worker);
        }
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
        interest.opened(&a, 0);
        interest.opened(&a, 1);
        interest.opened(&b, 1);
        assert_eq!(
            sorted(interest.changed_since(&mut seen).unwrap()),
            ["a", "b"]
        );
        interest.emptied(&a, 0); // worker 1 still has a member
        assert_eq!(
            sorted(interest.changed_since(&mut seen).unwrap()),
            ["a", "b"]
        );
        interest.emptied(&a, 1);
        interest.emptied(&b, 1);
        interest.opened(&b, 2);
        assert_eq!(sorted(interest.changed_since(&mut seen).unwrap()), ["b"]);
    }

    #[test]
    fn frames_go_only_to_workers_with_a_member() {
        let interest = Interest::default();
        let room: Arc<str> = Arc::from("r");
        let workers = |interest: &Interest| {
            let mut got = Vec::new();
            interest.for_each_worker("r", |w| got.push(w));
            got.sort();
            got
        };
        assert_eq!(workers(&interest), Vec::<usize>::new());
        interest.opened(&room, 3);
        interest.opened(&room, 1);
        assert_eq!(workers(&interest), [1, 3]);
        interest.emptied(&room, 3);
        assert_eq!(workers(&interest), [1]);
        interest.emptied(&room, 1);
        assert_eq!(workers(&interest), Vec::<usize>::new());
    }
}
