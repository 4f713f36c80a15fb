//! The auditor's monitor (spec/monitor.md): follows any C2SP tlog-tiles log with an
//! Ed25519 checkpoint key, proves it append-only from its tiles, re-checks every
//! entry (Candor entries in full, others as opaque bytes), catches split views
//! (directly and through peers), and reports findings and per-company summaries.

pub mod audit;
pub mod candor_checks;
pub mod cli;
pub mod client;
pub mod findings;
pub mod policy;
pub mod report;
pub mod serve;
pub mod splitview;
pub mod state;
