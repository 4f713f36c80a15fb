//! Candor: a public, append-only, signed transparency log for marketing data.
//!
//! The verification core (hashing, proofs, tiles, notes, checkpoints, entries,
//! subject commitments, receipts) is pure: no I/O and no async, so that the CLI,
//! the server, the monitor and the browser page all share it.

// Pure verification core.
pub mod checkpoint;
pub mod clock;
pub mod cosignature;
pub mod ed25519_points;
pub mod ed25519_strict;
pub mod entry;
pub mod hash;
pub mod jcs;
pub mod merkle;
pub mod note;
pub mod par;
pub mod policy;
pub mod receipt;
pub mod sha512_lanes;
pub mod subject;
pub mod tiles;
pub mod tlog_proof;

// Everything with I/O.
#[cfg(feature = "service")]
mod allocator;

#[cfg(feature = "service")]
pub mod store;

// The log server (`candor serve`).
#[cfg(feature = "service")]
pub mod server;

// The witness (`candor witness`) and the log's witness client. Its wire format
// (`witness::protocol`) is pure and always built, so it can be fuzzed and used by
// the verification core; the rest needs the `service` feature.
pub mod witness;
// The async client for the log's HTTP API (publish, verify, company, monitor).
#[cfg(feature = "service")]
pub mod client;
// The auditor's monitor (`candor monitor`).
#[cfg(feature = "service")]
pub mod monitor;
