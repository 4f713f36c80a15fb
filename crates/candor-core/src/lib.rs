//! Candor's verification core: hashing, Merkle proofs, tiles, signed notes,
//! checkpoints, cosignatures, entries, subject commitments and receipts.
//!
//! Pure: no I/O, no async, no feature flags, so that the CLI, the server, the
//! monitor, the witness and the browser page (wasm32-unknown-unknown) share one
//! implementation of every rule in `spec/`.
//!
//! # Examples
//!
//! Sign a checkpoint as a signed note and verify it with the log's key
//! (C2SP signed-note, tlog-checkpoint):
//!
//! ```
//! use candor_core::checkpoint::{Checkpoint, open_checkpoint, sign_checkpoint};
//! use candor_core::hash::empty_root;
//! use candor_core::note::SignerKey;
//!
//! let log = SignerKey::from_seed("example.org/log", [7; 32]).unwrap();
//! let cp = Checkpoint {
//!     origin: "example.org/log".into(),
//!     size: 0,
//!     root: empty_root(),
//!     extensions: vec![],
//! };
//! let note = sign_checkpoint(&cp, &log).unwrap();
//!
//! let (opened, _) = open_checkpoint(&note, &log.verifier()).unwrap();
//! assert_eq!(opened, cp);
//! // Change one byte of the text and the signature no longer verifies.
//! let mut forged = note.clone();
//! forged[0] = b'f';
//! assert!(open_checkpoint(&forged, &log.verifier()).is_err());
//! ```
//!
//! Check that a leaf is in a tree (RFC 9162 §2.1.3.2):
//!
//! ```
//! use candor_core::hash::leaf_hash;
//! use candor_core::merkle::{MemoryTree, verify_inclusion};
//!
//! let mut tree = MemoryTree::new();
//! for leaf in ["a", "b", "c", "d", "e"] {
//!     tree.append(leaf_hash(leaf.as_bytes()));
//! }
//! let proof = tree.inclusion_proof(2, 5).unwrap();
//! verify_inclusion(2, 5, &leaf_hash(b"c"), &proof, &tree.root()).unwrap();
//! assert!(verify_inclusion(2, 5, &leaf_hash(b"x"), &proof, &tree.root()).is_err());
//! ```
//!
//! Verify a company receipt offline against the log's pinned key (`spec/receipts.md`
//! §3); this one was issued by `candor serve` for the README tour's campaign:
//!
//! ```
//! use candor_core::note::{SignerKey, VerifierKey};
//! use candor_core::receipt::{Receipt, verify_receipt};
//!
//! let receipt = Receipt::from_json(include_bytes!("../tests/data/receipt.json")).unwrap();
//! let log_key: VerifierKey = include_str!("../tests/data/log.vkey").trim().parse().unwrap();
//! let verification = verify_receipt(&receipt, &log_key, None);
//! assert!(verification.is_valid(), "{:?}", verification.first_failure());
//!
//! // Against another key of the same name, the checkpoint signature fails.
//! let other = SignerKey::from_seed(log_key.name(), [9; 32]).unwrap();
//! assert!(!verify_receipt(&receipt, &other.verifier(), None).is_valid());
//! ```

pub mod answer;
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
pub mod receipt;
pub mod sha512_lanes;
pub mod subject;
pub mod tiles;
pub mod tlog_proof;
pub mod trust_policy;
pub mod witness_protocol;
