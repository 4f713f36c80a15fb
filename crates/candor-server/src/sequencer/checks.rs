//! Checks on submitted entries: their signatures (batch-verified, then one by one
//! to find the culprits) and their keys against the registry. The HTTP handlers run
//! them at submission; the sequencer runs them again on each batch, since a key may be
//! revoked in between.

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::ApiError;
use crate::registry::{KeyStatus, Registry};
use crate::state::Validated;
use candor_core::entry::SignedEntry;

/// Fewer entries than this in one request are left for the sequencer to verify,
/// where they join every other request's entries in one batch equation: alone, a
/// batch of a few signatures costs nearly as much per signature as single checks.
pub const VERIFY_IN_HANDLER_MIN: usize = 32;

/// Verifies the signatures of one request's entries not yet verified, with one batch
/// equation on the calling thread, and marks them verified, if there are at least
/// `min` of them (else leaves them to the sequencer). Large requests are verified by
/// their HTTP handler ([`VERIFY_IN_HANDLER_MIN`]), in parallel with other requests and
/// with the sequencer's store commit, instead of on the sequencer's serial path. On
/// failure, the first bad signature and its line.
pub fn verify_submission(items: &mut [Validated], min: usize) -> Result<(), ApiError> {
    let batch_ok = {
        let (messages, sigs, keys) = unverified(items.iter());
        if messages.is_empty() || messages.len() < min {
            return Ok(());
        }
        candor_core::ed25519_strict::verify_batch(&messages, &sigs, &keys).is_ok()
    };
    if !batch_ok && let Some((i, why)) = first_bad_signature(items) {
        return Err(with_line(ApiError::BadSignature(why), &items[i]));
    }
    for it in items.iter_mut() {
        it.verified = true;
    }
    Ok(())
}

/// The messages, signatures and keys of the entries not yet verified, as batch
/// verification takes them.
fn unverified<'a>(
    items: impl Iterator<Item = &'a Validated>,
) -> (Vec<&'a [u8]>, Vec<Signature>, Vec<VerifyingKey>) {
    let mut messages = Vec::new();
    let mut sigs = Vec::new();
    let mut keys = Vec::new();
    for it in items.filter(|it| !it.verified) {
        messages.push(it.message.as_slice());
        sigs.push(it.signature);
        keys.push(it.key);
    }
    (messages, sigs, keys)
}

/// The first of `items` not yet verified whose signature fails single (strict)
/// verification, and why. Single verification is the rule (spec/entries.md §7); a
/// batch equation only says whether to look.
fn first_bad_signature(items: &[Validated]) -> Option<(usize, String)> {
    items
        .iter()
        .enumerate()
        .filter(|(_, it)| !it.verified)
        .find_map(|(i, it)| {
            candor_core::ed25519_strict::verify(&it.key, &it.message, &it.signature)
                .err()
                .map(|e| (i, bad_signature(it, &e)))
        })
}

fn bad_signature(it: &Validated, e: &ed25519_dalek::SignatureError) -> String {
    format!(
        "the signature by key {} does not verify over the entry: {e}",
        it.signed.key_id
    )
}

/// Batch-verifies every signature of the batch's submissions; on failure finds the
/// bad ones one by one. Returns, per failing submission, the error for its first bad
/// entry.
pub(super) fn verify_signatures(subs: &[&[Validated]]) -> HashMap<usize, ApiError> {
    let (messages, sigs, keys) = unverified(subs.iter().flat_map(|s| s.iter()));
    if messages.is_empty()
        || candor_core::entry::verify_batch_parallel(&messages, &sigs, &keys).is_ok()
    {
        return HashMap::new();
    }
    subs.iter()
        .enumerate()
        .filter_map(|(si, items)| {
            let (i, why) = first_bad_signature(items)?;
            Some((si, with_line(ApiError::BadSignature(why), &items[i])))
        })
        .collect()
}

/// The registry check every company entry must pass (at submission and again when
/// sequenced): its company is registered and its key is registered and not revoked.
pub fn check_key(registry: &Registry, signed: &SignedEntry) -> Result<(), ApiError> {
    let company = signed.entry.company();
    match registry.status(company, &signed.key_id) {
        KeyStatus::Active(_) => Ok(()),
        KeyStatus::UnknownCompany => Err(ApiError::Forbidden {
            code: "unknown_company",
            detail: format!("company {company:?} is not registered on this log"),
        }),
        KeyStatus::UnknownKey => Err(ApiError::Forbidden {
            code: "unknown_key",
            detail: format!(
                "key {} is not registered for company {company:?}",
                signed.key_id
            ),
        }),
        KeyStatus::Revoked(i) => Err(ApiError::Forbidden {
            code: "key_revoked",
            detail: format!(
                "key {} of company {company:?} was revoked at index {i}",
                signed.key_id
            ),
        }),
    }
}

pub(super) fn with_line(e: ApiError, item: &Validated) -> ApiError {
    match item.line {
        Some(l) => e.at_line(l),
        None => e,
    }
}
