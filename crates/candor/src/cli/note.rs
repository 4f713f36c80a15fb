//! `candor note verify`: check any C2SP signed note, printing checkpoint
//! fields when the text is a checkpoint (c2sp.org/tlog-checkpoint).

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use candor_core::checkpoint::Checkpoint;
use candor_core::cosignature::verify_cosignature;
use candor_core::note::{self, KeyType, VerifierKey};
use clap::{Args, Subcommand};

use super::{EXIT_STATUS_HELP, invalid, keys};

/// Notes are small; refuse to read more than this.
const MAX_NOTE_BYTES: u64 = 1 << 20;

/// `candor note ...`
#[derive(Debug, Subcommand)]
pub enum NoteCommand {
    /// Verify a signed note against trusted verifier keys.
    ///
    /// Succeeds if at least one trusted key signed the note and no signature by
    /// a trusted key is invalid; signatures by other keys are listed as
    /// unverified. For a checkpoint, prints its origin, size and root.
    #[command(after_help = EXIT_STATUS_HELP)]
    Verify(VerifyArgs),
}

/// Arguments of `candor note verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Trusted verifier key (`name+hexid+base64`) or a file holding such keys,
    /// one per line. Repeatable.
    #[arg(long = "key", value_name = "VKEY", required = true)]
    pub keys: Vec<String>,

    /// Also print the verified note text after the summary.
    #[arg(long)]
    pub text: bool,

    /// The note; standard input when absent or `-`.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// Runs a `note` subcommand.
pub fn run(cmd: NoteCommand) -> anyhow::Result<()> {
    match cmd {
        NoteCommand::Verify(args) => verify(args),
    }
}

fn read_input(file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match file {
        Some(p) if p.as_os_str() != "-" => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            f.take(MAX_NOTE_BYTES + 1)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {}", p.display()))?;
        }
        _ => {
            std::io::stdin()
                .take(MAX_NOTE_BYTES + 1)
                .read_to_end(&mut buf)
                .context("reading standard input")?;
        }
    }
    if buf.len() as u64 > MAX_NOTE_BYTES {
        return Err(invalid(format!(
            "note is larger than {MAX_NOTE_BYTES} bytes"
        )));
    }
    Ok(buf)
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let mut verifiers: Vec<VerifierKey> = Vec::new();
    for arg in &args.keys {
        verifiers.extend(keys::verifier_keys(arg)?);
    }
    let msg = read_input(args.file.as_ref())?;
    let opened = note::open(&msg, &verifiers).map_err(invalid)?;
    let text = &opened.note.text;

    let mut out = String::new();
    if let Ok(cp) = Checkpoint::parse(text) {
        out.push_str(&format!(
            "origin {}\nsize {}\nroot {}\n",
            cp.origin,
            cp.size,
            cp.root.to_base64()
        ));
        for ext in &cp.extensions {
            out.push_str(&format!("extension {ext}\n"));
        }
        if !opened.verified.iter().any(|s| s.name == cp.origin) {
            tracing::warn!(
                origin = %cp.origin,
                "no verifying key is named after the checkpoint origin; this is not a log signature"
            );
        }
    }
    for sig in &opened.verified {
        let key = verifiers.iter().find(|k| k.matches(sig));
        match key {
            Some(k) if k.key_type() == KeyType::Cosignature => {
                // open() already verified it; this recovers the timestamp.
                let ts = verify_cosignature(text, sig, k).map_err(invalid)?;
                out.push_str(&format!(
                    "verified {} cosignature time {ts}\n",
                    sig.signer_id()
                ));
            }
            _ => out.push_str(&format!("verified {}\n", sig.signer_id())),
        }
    }
    for sig in &opened.unverified {
        out.push_str(&format!("unverified {}\n", sig.signer_id()));
    }
    if args.text {
        out.push('\n');
        out.push_str(text);
    }
    print!("{out}");
    Ok(())
}
