//! `candor company add|revoke`: the log operator registers or revokes a
//! company's verifier key (`POST /v1/companies`, admin bearer token). Each
//! change is itself a `company_key` entry on the log, so the whole key history
//! is public; the command prints that entry's index.

use std::process::ExitCode;
use std::str::FromStr;

use crate::client::{Client, CompanyAction};
use crate::note::VerifierKey;

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

/// Runs `candor company …`; returns the exit status.
pub fn run(args: &CompanyArgs) -> ExitCode {
    let (action, a) = match &args.command {
        CompanyCommand::Add(a) => (CompanyAction::Register, a),
        CompanyCommand::Revoke(a) => (CompanyAction::Revoke, a),
    };
    let fail = |code: u8, msg: String| {
        eprintln!("candor company: {msg}");
        ExitCode::from(code)
    };
    let token = match std::fs::read_to_string(&a.token_file) {
        Ok(t) if !t.trim().is_empty() => t,
        Ok(_) => return fail(2, format!("{} is empty", a.token_file.display())),
        Err(e) => return fail(2, format!("cannot read {}: {e}", a.token_file.display())),
    };
    let vkey_text = if !a.vkey.contains('+') && std::path::Path::new(&a.vkey).is_file() {
        match std::fs::read_to_string(&a.vkey) {
            Ok(t) => t,
            Err(e) => return fail(2, format!("cannot read {}: {e}", a.vkey)),
        }
    } else {
        a.vkey.clone()
    };
    let vkey = match VerifierKey::from_str(vkey_text.trim()) {
        Ok(k) => k,
        Err(e) => return fail(2, format!("bad --vkey: {e}")),
    };
    if vkey.name() != a.name {
        return fail(
            2,
            format!("the key is named {:?} but --name is {:?}; they must be equal", vkey.name(), a.name),
        );
    }
    let client = match Client::new(&a.log) {
        Ok(c) => c.with_token(&token),
        Err(e) => return fail(2, e.to_string()),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(2, format!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(client.company_key(action, &a.name, &vkey.to_string())) {
        Ok(receipt) => {
            let verb = match action {
                CompanyAction::Register => "registered",
                CompanyAction::Revoke => "revoked",
            };
            println!("{verb} key {} for {} at log entry {}", hex::encode(vkey.key_id()), a.name, receipt.index);
            ExitCode::SUCCESS
        }
        Err(e) if e.status().is_some_and(|s| (400..500).contains(&s)) => fail(1, e.to_string()),
        Err(e) => fail(2, e.to_string()),
    }
}
