//! Rooms and the bus: who is in which room on this worker, and how a published frame reaches
//! every other worker. Nothing here sees a socket.

pub(crate) mod bus;
pub(crate) mod rooms;
