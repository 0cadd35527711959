//! Room membership on one worker.

use std::collections::HashMap;
use std::sync::Arc;

/// Local room membership. Empty rooms are removed, so they hold no memory.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<Arc<str>, Vec<usize>>,
}

impl Rooms {
    /// Adds connection `key` to `room`; returns the interned room name and the member index.
    pub fn join(&mut self, room: &str, key: usize) -> (Arc<str>, usize) {
        if let Some((name, _)) = self.rooms.get_key_value(room) {
            let name = name.clone();
            let members = self
                .rooms
                .get_mut(room)
                .expect("present: looked up just above");
            members.push(key);
            return (name, members.len() - 1);
        }
        let name: Arc<str> = Arc::from(room);
        self.rooms.insert(name.clone(), vec![key]);
        (name, 0)
    }

    /// Removes the member at `index`. When another member moved into that slot, returns its
    /// key so the caller can update that member's index to `index`.
    pub fn leave(&mut self, room: &str, index: usize) -> Option<usize> {
        let members = self.rooms.get_mut(room)?;
        members.swap_remove(index);
        let moved = members.get(index).copied();
        if members.is_empty() {
            self.rooms.remove(room);
        }
        moved
    }

    /// The local members of `room` (empty when none).
    pub fn members(&self, room: &str) -> &[usize] {
        self.rooms.get(room).map_or(&[], Vec::as_slice)
    }

    /// Rooms with at least one local member.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leave_keeps_indices_consistent_and_frees_empty_rooms() {
        let mut rooms = Rooms::default();
        let (name, i0) = rooms.join("a", 10);
        assert_eq!((&*name, i0), ("a", 0));
        assert_eq!(rooms.join("a", 11).1, 1);
        assert_eq!(rooms.join("a", 12).1, 2);
        rooms.join("b", 20);
        assert_eq!(rooms.members("a"), &[10, 11, 12]);
        // Removing index 0 moves the last member (12) into slot 0.
        assert_eq!(rooms.leave("a", 0), Some(12));
        assert_eq!(rooms.members("a"), &[12, 11]);
        assert_eq!(rooms.leave("a", 1), None);
        assert_eq!(rooms.leave("a", 0), None);
        assert!(rooms.members("a").is_empty());
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms.leave("b", 0), None);
        assert!(rooms.is_empty());
    }
}
