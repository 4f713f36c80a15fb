//! `candor keygen`, and loading keys given on the command line.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candor_core::cosignature::witness_verifier_key;
use candor_core::note::{SignerKey, VerifierKey};
use clap::Args;

/// Arguments of `candor keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key name, e.g. the log origin `candor.example/log` (no spaces or '+').
    #[arg(long)]
    pub name: String,

    /// Where to write the private key (mode 0600); the verifier key goes to FILE.pub.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Overwrite FILE and FILE.pub if they exist.
    #[arg(long)]
    pub force: bool,

    /// Write the verifier key as a witness cosignature key (type 0x04,
    /// c2sp.org/tlog-cosignature) instead of an Ed25519 note key (type 0x01).
    #[arg(long)]
    pub witness: bool,
}

/// `FILE.pub` next to `FILE`.
fn pub_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Generates a key pair, writes `--out` (0600) and `--out`.pub, and prints the
/// verifier key.
pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    let pub_out = pub_path(&args.out);
    if !args.force {
        for p in [&args.out, &pub_out] {
            if p.exists() {
                bail!("refusing to overwrite {} (use --force)", p.display());
            }
        }
    }
    let skey = SignerKey::generate(&args.name).context("--name")?;
    let vkey = if args.witness {
        witness_verifier_key(&skey)
    } else {
        skey.verifier()
    };
    write_private(&args.out, &format!("{skey}\n"), args.force)?;
    fs::write(&pub_out, format!("{vkey}\n"))
        .with_context(|| format!("writing {}", pub_out.display()))?;
    println!("{vkey}");
    Ok(())
}

/// Writes a secret file readable by its owner only.
fn write_private(path: &Path, contents: &str, overwrite: bool) -> anyhow::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        // Fails if the file appeared since the check above.
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        // An overwritten file keeps its old mode; tighten it.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
        f.write_all(contents.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    #[cfg(not(unix))]
    {
        let mut f = opts
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(contents.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Resolves a `--key` argument: a verifier key string, or the path of a file
/// holding one or more verifier keys, one per line (blank lines ignored).
pub fn verifier_keys(arg: &str) -> anyhow::Result<Vec<VerifierKey>> {
    let parse_err = match arg.parse::<VerifierKey>() {
        Ok(k) => return Ok(vec![k]),
        Err(e) => e,
    };
    let path = Path::new(arg);
    if !path.is_file() {
        bail!("--key {arg:?} is neither a verifier key ({parse_err}) nor a readable file");
    }
    let text = fs::read_to_string(path).with_context(|| format!("reading key file {arg}"))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let key = line
            .parse::<VerifierKey>()
            .with_context(|| format!("{arg}:{}", i + 1))?;
        keys.push(key);
    }
    if keys.is_empty() {
        bail!("key file {arg} holds no verifier key");
    }
    Ok(keys)
}
