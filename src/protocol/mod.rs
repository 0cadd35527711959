//! The wire: HTTP upgrade requests and answers, server frame encoding, and the boundaries of
//! client frames. Pure functions and small state over bytes; no I/O.

pub mod boundary;
pub mod frame;
pub mod http;
