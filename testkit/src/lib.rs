//! Test helpers that more than one test suite of the workspace needs, each written once: the
//! client-frame builder (corecast's unit and end-to-end tests), the counting global allocator
//! (corecast's allocation test and loadgen's send-path test), polling a condition with a
//! deadline (corecast's end-to-end tests) and the module-layering check (both crates).
//!
//! Why a crate: unit tests (`src/**`), integration tests (`tests/`) and another package
//! (`loadgen/tests/`) cannot share a module, so each grew its own copy, and copies drift. Only
//! helpers used in two or more places live here; a helper one test file needs stays with it.
//! This crate depends on nothing in the workspace (corecast dev-depends on it, so depending
//! back on corecast would make a cycle); helpers that need a server stay in `tests/common`.

pub mod alloc;
pub mod frame;
pub mod layers;
pub mod wait;

pub use frame::client_frame;
pub use wait::poll_until;
