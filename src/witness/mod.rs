//! `candor witness`: a C2SP tlog-witness that cosigns checkpoints of the logs it
//! trusts, only when they are consistent with what it cosigned before
//! (spec/witness.md).
//!
//! * [`protocol`]: the add-checkpoint request/response formats and the
//!   witness's checks (pure).
//! * [`state`]: the per-origin latest cosigned checkpoint, persisted atomically.
//! * [`server`]: the HTTP service (axum).
//! * [`client`]: the log side, asking witnesses to cosign (used by the sequencer).
//! * [`cli`]: `candor witness serve` and `candor witness vkey`.

#[cfg(feature = "service")]
pub mod cli;
#[cfg(feature = "service")]
pub mod client;
pub mod protocol;
#[cfg(feature = "service")]
pub mod server;
#[cfg(feature = "service")]
pub mod state;
