//! `candor company add|revoke`: the log operator registers or revokes a
//! company's verifier key (`POST /v1/companies`, admin bearer token). Each
//! change is itself a `company_key` entry on the log, so the whole key history
//! is public; the command prints that entry's index.

use std::str::FromStr;

use candor_core::note::VerifierKey;
use candor_net::client::{Client, CompanyAction};

/// `candor company …`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Exit status: 0 done, 1 the log refused the change, 2 could not run.")]
pub struct CompanyArgs {
    #[command(subcommand)]
    pub command: CompanyCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CompanyCommand {
    /// Register a company's verifier key on the log.
    Add(CompanyKeyArgs),
    /// Revoke a company's verifier key: entries it signs are refused from now on.
    Revoke(CompanyKeyArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CompanyKeyArgs {
    /// Base URL of the log's API.
    #[arg(long, value_name = "URL")]
    pub log: String,
    /// File holding the log's admin token (`DATA/admin.token`).
    #[arg(long, value_name = "FILE")]
    pub token_file: std::path::PathBuf,
    /// The company name (a DNS name it controls); must equal the key's name.
    #[arg(long)]
    pub name: String,
    /// The company's verifier key (`name+hexid+base64`), or a file holding it.
    #[arg(long, value_name = "VKEY")]
    pub vkey: String,
}

/// Runs `candor company …`. Exit status: `Ok` 0, an
/// [`invalid`](crate::cli::invalid) error 1 (the log refused the change), any
/// other error 2.
pub fn run(args: &CompanyArgs) -> anyhow::Result<()> {
    let (action, a) = match &args.command {
        CompanyCommand::Add(a) => (CompanyAction::Register, a),
        CompanyCommand::Revoke(a) => (CompanyAction::Revoke, a),
    };
    let token = std::fs::read_to_string(&a.token_file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", a.token_file.display()))?;
    if token.trim().is_empty() {
        anyhow::bail!("{} is empty", a.token_file.display());
    }
    let vkey_text = if !a.vkey.contains('+') && std::path::Path::new(&a.vkey).is_file() {
        std::fs::read_to_string(&a.vkey)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", a.vkey))?
    } else {
        a.vkey.clone()
    };
    let vkey =
        VerifierKey::from_str(vkey_text.trim()).map_err(|e| anyhow::anyhow!("bad --vkey: {e}"))?;
    if vkey.name() != a.name {
        anyhow::bail!(
            "the key is named {:?} but --name is {:?}; they must be equal",
            vkey.name(),
            a.name
        );
    }
    let client = Client::new(&a.log)?.with_token(&token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    match rt.block_on(client.company_key(action, &a.name, &vkey.to_string())) {
        Ok(receipt) => {
            let verb = match action {
                CompanyAction::Register => "registered",
                CompanyAction::Revoke => "revoked",
            };
            println!(
                "{verb} key {} for {} at log entry {}",
                hex::encode(vkey.key_id()),
                a.name,
                receipt.index
            );
            Ok(())
        }
        Err(e) if e.status().is_some_and(|s| (400..500).contains(&s)) => {
            Err(crate::cli::invalid(e))
        }
        Err(e) => Err(e.into()),
    }
}
