//! `candor witness`: a C2SP tlog-witness that cosigns checkpoints of the logs it
//! trusts, only when they are consistent with what it cosigned before
//! (spec/witness.md).
//!
//! The add-checkpoint request/response formats and the witness's checks are pure and
//! live in `candor_core::witness_protocol`; the log's side (asking witnesses to cosign)
//! is `candor_net::witness_client`.
//!
//! * [`state`]: the per-origin latest cosigned checkpoint, persisted atomically.
//! * [`server`]: the HTTP service (axum).
//! * [`cli`]: `candor witness serve` and `candor witness vkey`.

pub mod cli;
pub mod server;
pub mod state;
