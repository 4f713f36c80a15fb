//! The data directory's small files: the persisted origin, the log's signing key and
//! the admin token. Secrets are written with mode 0600, atomically (temp file, fsync,
//! rename), so a crash never leaves a half-written key behind.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use candor_core::note::SignerKey;

/// File holding the origin fixed on first start.
pub const ORIGIN_FILE: &str = "origin";
/// File holding the generated log key (signed-note private key text).
pub const KEY_FILE: &str = "log.key";
/// File holding the admin bearer token (64 hex characters).
pub const TOKEN_FILE: &str = "admin.token";

/// The identity of a log, loaded or created in its data directory.
pub struct Identity {
    pub origin: String,
    pub key: SignerKey,
    pub admin_token: String,
    pub token_path: PathBuf,
}

/// Writes `contents` to `path` atomically with mode 0600; refuses to overwrite.
fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    if path.exists() {
        anyhow::bail!("{} appeared while being created", path.display());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing directory {}", dir.display()))?;
    }
    Ok(())
}

/// Checks the signed-note rules for a key name: non-empty, no spaces, no `+`
/// (C2SP signed-note, "Verifier keys"); the origin is also the key name.
pub fn check_origin(origin: &str) -> anyhow::Result<()> {
    if origin.is_empty()
        || origin.contains('+')
        || origin.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        anyhow::bail!(
            "origin {origin:?} is not a valid key name: it must be non-empty, without spaces or '+'"
        );
    }
    Ok(())
}

/// Loads the log identity from `data`, creating origin, key and token on first start.
///
/// A later start with a different `--origin`, or with a `--key` whose name is not the
/// origin, is refused: one log has one origin for life.
pub fn load_or_create(
    data: &Path,
    origin_flag: Option<&str>,
    key_file: Option<&Path>,
) -> anyhow::Result<Identity> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    let origin_path = data.join(ORIGIN_FILE);
    let origin = match std::fs::read_to_string(&origin_path) {
        Ok(stored) => {
            let stored = stored.trim_end_matches('\n').to_string();
            if let Some(flag) = origin_flag
                && flag != stored
            {
                anyhow::bail!(
                    "--origin {flag:?} differs from the origin {stored:?} this log was created with (in {}); a log's origin never changes",
                    origin_path.display()
                );
            }
            stored
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let origin = origin_flag
                .unwrap_or(super::config::DEFAULT_ORIGIN)
                .to_string();
            check_origin(&origin)?;
            write_secret(&origin_path, &format!("{origin}\n"))?;
            origin
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", origin_path.display()));
        }
    };
    check_origin(&origin)?;

    let key = match key_file {
        Some(path) => read_key(path)?,
        None => {
            let path = data.join(KEY_FILE);
            if path.exists() {
                read_key(&path)?
            } else {
                let key = SignerKey::generate(&origin)
                    .map_err(|e| anyhow::anyhow!("generating the log key: {e}"))?;
                write_secret(&path, &format!("{key}\n"))?;
                key
            }
        }
    };
    let key_name = key.verifier().name().to_string();
    if key_name != origin {
        anyhow::bail!(
            "the log key is named {key_name:?} but the origin is {origin:?}; C2SP tlog-checkpoint requires the key name to equal the origin"
        );
    }

    let token_path = data.join(TOKEN_FILE);
    let admin_token = if token_path.exists() {
        let t = std::fs::read_to_string(&token_path)
            .with_context(|| format!("reading {}", token_path.display()))?;
        let t = t.trim().to_string();
        if t.len() < 32 {
            anyhow::bail!(
                "admin token in {} is shorter than 32 characters",
                token_path.display()
            );
        }
        t
    } else {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("generating the admin token: {e}"))?;
        let t = hex::encode(bytes);
        write_secret(&token_path, &format!("{t}\n"))?;
        t
    };
    Ok(Identity {
        origin,
        key,
        admin_token,
        token_path,
    })
}

fn read_key(path: &Path) -> anyhow::Result<SignerKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading log key {}", path.display()))?;
    text.trim().parse::<SignerKey>().map_err(|e| {
        anyhow::anyhow!(
            "log key {} is not a signed-note private key: {e}",
            path.display()
        )
    })
}
