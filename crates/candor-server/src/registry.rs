//! The company registry: which verifier keys each company has registered and revoked.
//!
//! The public record is the log itself (`company_key` entries, spec/entries.md); this is
//! its index, kept in the store's meta table under `company/<name>/<key id hex>` and
//! written in the same atomic batch as the entry that changes it, so the two never
//! disagree. It is reloaded from meta on start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use candor_core::note::VerifierKey;
use candor_store::{Store, StoreError};

/// Meta-key prefix of registry records.
pub const META_PREFIX: &str = "company/";

/// One registered key of a company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Signed-note verifier key text (`name+hexid+base64`).
    pub verifier_key: String,
    /// 8 lower-case hex digits.
    pub key_id: String,
    /// Index of the `company_key` entry that registered the key.
    pub registered_index: u64,
    /// Index of the `company_key` entry that revoked it, if any.
    pub revoked_index: Option<u64>,
}

/// What an admin asks for at `POST /v1/companies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Register,
    Revoke,
}

impl Action {
    /// The lower-case word used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Revoke => "revoke",
        }
    }
}

/// A registry change carried with its `company_key` entry through the sequencer.
#[derive(Debug, Clone)]
pub struct Change {
    pub name: String,
    pub key: VerifierKey,
    pub action: Action,
}

/// Why a registry change cannot be applied.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("key {key_id} is already registered for {name} (at index {index})")]
    AlreadyRegistered {
        name: String,
        key_id: String,
        index: u64,
    },
    #[error("key {key_id} is not registered for {name}")]
    UnknownKey { name: String, key_id: String },
    #[error("key {key_id} of {name} was already revoked at index {index}")]
    AlreadyRevoked {
        name: String,
        key_id: String,
        index: u64,
    },
    #[error("registry record {key:?} in the store is corrupt: {detail}")]
    Corrupt { key: String, detail: String },
}

/// The whole registry, by company name then key id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    companies: BTreeMap<String, BTreeMap<String, KeyRecord>>,
}

/// The outcome of looking up the key a submission names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus<'a> {
    UnknownCompany,
    UnknownKey,
    Revoked(u64),
    Active(&'a KeyRecord),
}

fn meta_key(name: &str, key_id: &str) -> String {
    format!("{META_PREFIX}{name}/{key_id}")
}

impl Registry {
    /// Loads every record from the store's meta table.
    pub fn load(store: &dyn Store) -> Result<Registry, LoadError> {
        let mut reg = Registry::default();
        for (key, value) in store.scan_meta(META_PREFIX)? {
            let rec: KeyRecord =
                serde_json::from_slice(&value).map_err(|e| RegistryError::Corrupt {
                    key: key.clone(),
                    detail: e.to_string(),
                })?;
            let rest = &key[META_PREFIX.len()..];
            let Some((name, key_id)) = rest.rsplit_once('/') else {
                return Err(RegistryError::Corrupt {
                    key,
                    detail: "expected company/<name>/<key id>".into(),
                }
                .into());
            };
            if key_id != rec.key_id {
                return Err(RegistryError::Corrupt {
                    key: key.clone(),
                    detail: format!("record holds key id {}", rec.key_id),
                }
                .into());
            }
            reg.companies
                .entry(name.to_string())
                .or_default()
                .insert(key_id.to_string(), rec);
        }
        Ok(reg)
    }

    /// The status of `company`'s key `key_id` (8 hex digits).
    pub fn status(&self, company: &str, key_id: &str) -> KeyStatus<'_> {
        let Some(keys) = self.companies.get(company) else {
            return KeyStatus::UnknownCompany;
        };
        match keys.get(key_id) {
            None => KeyStatus::UnknownKey,
            Some(rec) => match rec.revoked_index {
                Some(i) => KeyStatus::Revoked(i),
                None => KeyStatus::Active(rec),
            },
        }
    }

    /// Every key of `company` (registered and revoked), or `None` if unknown.
    pub fn company(&self, company: &str) -> Option<Vec<KeyRecord>> {
        self.companies
            .get(company)
            .map(|keys| keys.values().cloned().collect())
    }

    /// Checks that `change` can be applied now (before it gets an index).
    pub fn check(&self, change: &Change) -> Result<(), RegistryError> {
        let key_id = hex::encode(change.key.key_id());
        let existing = self
            .companies
            .get(&change.name)
            .and_then(|keys| keys.get(&key_id));
        match (change.action, existing) {
            (Action::Register, Some(rec)) => Err(RegistryError::AlreadyRegistered {
                name: change.name.clone(),
                key_id,
                index: rec.registered_index,
            }),
            (Action::Register, None) => Ok(()),
            (Action::Revoke, None) => Err(RegistryError::UnknownKey {
                name: change.name.clone(),
                key_id,
            }),
            (Action::Revoke, Some(rec)) => match rec.revoked_index {
                Some(index) => Err(RegistryError::AlreadyRevoked {
                    name: change.name.clone(),
                    key_id,
                    index,
                }),
                None => Ok(()),
            },
        }
    }

    /// Applies a checked `change` logged at `index`; returns the meta record to write.
    pub fn apply(
        &mut self,
        change: &Change,
        index: u64,
    ) -> Result<(String, Vec<u8>), RegistryError> {
        self.check(change)?;
        let key_id = hex::encode(change.key.key_id());
        let keys = self.companies.entry(change.name.clone()).or_default();
        let rec = match change.action {
            Action::Register => keys.entry(key_id.clone()).or_insert(KeyRecord {
                verifier_key: change.key.to_string(),
                key_id: key_id.clone(),
                registered_index: index,
                revoked_index: None,
            }),
            Action::Revoke => {
                let rec = keys
                    .get_mut(&key_id)
                    .ok_or_else(|| RegistryError::UnknownKey {
                        name: change.name.clone(),
                        key_id: key_id.clone(),
                    })?;
                rec.revoked_index = Some(index);
                rec
            }
        };
        let value = serde_json::to_vec(rec).map_err(|e| RegistryError::Corrupt {
            key: meta_key(&change.name, &key_id),
            detail: e.to_string(),
        })?;
        Ok((meta_key(&change.name, &key_id), value))
    }
}

/// Why the registry could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading the company registry: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}
