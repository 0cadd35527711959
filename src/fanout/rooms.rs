//! Room membership on one worker: which connections are in which room, and where each sits.
//!
//! `Rooms` is the one owner of membership in both directions: room → members (a dense list,
//! walked on every delivery) and member → seat (its room and its index in that list, so leaving
//! is O(1) by swap-remove). Every way a connection can go (close, error, timeout, shutdown)
//! ends in the worker's one `leave` call. Empty rooms are removed, so they hold no memory.
//!
//! `join` and `leave` report when a room gains its first local member or loses its last
//! (`Changed`): the points where this worker starts and stops needing the room's messages from
//! other instances.

use std::collections::HashMap;
use std::sync::Arc;

/// Where a member sits.
#[derive(Debug)]
struct Seat {
    room: Arc<str>,
    index: usize,
}

/// What a `join` or `leave` changed beyond one member: a room that now has its first local
/// member, and one that lost its last.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    pub opened: Option<Arc<str>>,
    pub emptied: Option<Arc<str>>,
}

/// Local room membership; members are connection keys.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    rooms: HashMap<Arc<str>, Vec<usize>>,
    /// Indexed by connection key; `None` for connections in no room. Slab keys are dense and
    /// reused, so this grows to the most connections held at once, not to all ever accepted.
    seats: Vec<Option<Seat>>,
}

impl Rooms {
    /// Adds connection `key` to `room` (leaving any room it was in).
    pub fn join(&mut self, key: usize, room: &str) -> Changed {
        let emptied = self.leave(key).emptied;
        let (room, opened) = match self.rooms.get_key_value(room) {
            Some((name, _)) => (name.clone(), None),
            None => {
                let name: Arc<str> = Arc::from(room);
                (name.clone(), Some(name))
            }
        };
        let members = self.rooms.entry(room.clone()).or_default();
        members.push(key);
        let index = members.len() - 1;
        if self.seats.len() <= key {
            self.seats.resize_with(key + 1, || None);
        }
        self.seats[key] = Some(Seat { room, index });
        Changed { opened, emptied }
    }

    /// Removes connection `key` from its room; nothing happens when it is in none.
    pub fn leave(&mut self, key: usize) -> Changed {
        let Some(Seat { room, index }) = self.seats.get_mut(key).and_then(Option::take) else {
            return Changed::default();
        };
        let Some(members) = self.rooms.get_mut(&room) else {
            debug_assert!(false, "a seat in a room that does not exist");
            return Changed::default();
        };
        members.swap_remove(index);
        if let Some(&moved) = members.get(index) {
            if let Some(seat) = self.seats[moved].as_mut() {
                seat.index = index;
            }
        }
        if members.is_empty() {
            self.rooms.remove(&room);
            return Changed {
                opened: None,
                emptied: Some(room),
            };
        }
        Changed::default()
    }

    /// The room connection `key` is in.
    pub fn room_of(&self, key: usize) -> Option<&Arc<str>> {
        self.seats.get(key)?.as_ref().map(|seat| &seat.room)
    }

    /// The local members of `room` (empty when none).
    pub fn members(&self, room: &str) -> &[usize] {
        self.rooms.get(room).map_or(&[], Vec::as_slice)
    }

    /// Rooms with at least one local member.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Local members across all rooms (a walk over the rooms: for the tick, not per message).
    pub fn member_count(&self) -> usize {
        self.rooms.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seat points at its own entry in its room's list, and every list entry has a seat.
    fn assert_consistent(rooms: &Rooms) {
        let mut listed = 0;
        for (name, members) in &rooms.rooms {
            assert!(!members.is_empty(), "empty room {name} kept");
            for (index, &key) in members.iter().enumerate() {
                let seat = rooms.seats[key].as_ref().expect("listed member has a seat");
                assert_eq!((&*seat.room, seat.index), (&**name, index));
                listed += 1;
            }
        }
        assert_eq!(listed, rooms.seats.iter().flatten().count());
    }

    #[test]
    fn leaving_from_any_position_keeps_seats_consistent_and_frees_empty_rooms() {
        let mut rooms = Rooms::default();
        for key in [10, 11, 12] {
            rooms.join(key, "a");
        }
        rooms.join(20, "b");
        assert_eq!(rooms.members("a"), &[10, 11, 12]);
        assert_eq!(rooms.room_of(20).map(|r| &**r), Some("b"));
        // Leaving from the front moves the last member into its slot.
        rooms.leave(10);
        assert_eq!(rooms.members("a"), &[12, 11]);
        assert_consistent(&rooms);
        rooms.leave(11);
        assert_consistent(&rooms);
        rooms.leave(11); // twice: no effect
        rooms.leave(99); // never joined: no effect
        rooms.leave(12);
        assert!(rooms.members("a").is_empty());
        assert_eq!(rooms.len(), 1);
        rooms.leave(20);
        assert_eq!(rooms.len(), 0);
        assert_eq!(rooms.room_of(20), None);
    }

    #[test]
    fn joining_again_moves_a_member_and_keys_are_reusable() {
        let mut rooms = Rooms::default();
        rooms.join(1, "a");
        rooms.join(2, "a");
        rooms.join(1, "b");
        assert_eq!(rooms.members("a"), &[2]);
        assert_eq!(rooms.members("b"), &[1]);
        assert_consistent(&rooms);
        rooms.leave(1);
        rooms.join(1, "a"); // a reused slab key
        assert_eq!(rooms.members("a"), &[2, 1]);
        assert_consistent(&rooms);
    }

    #[test]
    fn random_joins_and_leaves_stay_consistent() {
        let mut rooms = Rooms::default();
        // Rooms opened minus rooms emptied, as the reports say: always the rooms that exist.
        let mut open: HashMap<Arc<str>, ()> = HashMap::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = (state % 64) as usize;
            let changed = if state & 0x100 == 0 {
                rooms.join(key, ["x", "y", "z"][(state >> 9) as usize % 3])
            } else {
                rooms.leave(key)
            };
            if let Some(room) = changed.emptied {
                assert!(
                    open.remove(&room).is_some(),
                    "{room} emptied but never opened"
                );
            }
            if let Some(room) = changed.opened {
                assert!(
                    open.insert(room.clone(), ()).is_none(),
                    "{room} opened twice"
                );
            }
            assert_eq!(open.len(), rooms.len());
            assert!(open.keys().all(|room| !rooms.members(room).is_empty()));
        }
        assert_consistent(&rooms);
    }

    #[test]
    fn first_join_opens_and_last_leave_empties() {
        let mut rooms = Rooms::default();
        let opened = |name: &str| Changed {
            opened: Some(Arc::from(name)),
            emptied: None,
        };
        let emptied = |name: &str| Changed {
            opened: None,
            emptied: Some(Arc::from(name)),
        };
        assert_eq!(rooms.join(1, "a"), opened("a"));
        assert_eq!(rooms.join(2, "a"), Changed::default());
        assert_eq!(rooms.leave(1), Changed::default());
        // Moving the last member of "a" to "b" empties one and opens the other.
        assert_eq!(
            rooms.join(2, "b"),
            Changed {
                opened: Some(Arc::from("b")),
                emptied: Some(Arc::from("a")),
            }
        );
        assert_eq!(rooms.leave(2), emptied("b"));
        assert_eq!(rooms.leave(2), Changed::default());
    }
}
