//! The wire: HTTP upgrade requests and answers, server frame encoding, the boundaries of client
//! frames and the common client frame read in place. Pure functions and small state over
//! bytes; no I/O.

pub mod boundary;
pub mod frame;
pub mod http;
pub mod inbound;
