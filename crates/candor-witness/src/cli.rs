//! `candor witness …` subcommands: `serve` runs a C2SP tlog-witness, `vkey`
//! prints the cosignature verifier key (type 0x04) a log or a trust policy
//! names the witness by.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::server::{self, Witness};
use crate::state::WitnessState;
use candor_core::cosignature;
use candor_core::note::{SignerKey, VerifierKey};

/// `candor witness`.
#[derive(clap::Args, Debug)]
pub struct WitnessArgs {
    #[command(subcommand)]
    pub command: WitnessCommand,
}

/// The `candor witness` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum WitnessCommand {
    /// Run a C2SP tlog-witness: POST /add-checkpoint, GET /<hex sha256(origin)>/checkpoint.
    Serve(ServeArgs),
    /// Print the witness's cosignature verifier key (name+hexid+base64(0x04||pubkey)).
    Vkey(VkeyArgs),
}

/// `candor witness serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// File holding the witness's signed-note private key
    /// (PRIVATE+KEY+name+hexid+base64, as written by `candor keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Directory for the per-origin state (created if missing; one witness per directory).
    #[arg(long)]
    pub data: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8091")]
    pub listen: SocketAddr,
    /// Verifier key of a log to witness (name+hexid+base64, type 0x01); repeatable.
    #[arg(long = "log", required = true)]
    pub logs: Vec<String>,
}

/// `candor witness vkey`.
#[derive(clap::Args, Debug)]
pub struct VkeyArgs {
    /// File holding the witness's signed-note private key.
    #[arg(long)]
    pub key: PathBuf,
}

/// Reads a signed-note private key file: the first non-empty line.
pub fn read_signer_key(path: &Path) -> anyhow::Result<SignerKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .with_context(|| format!("key file {} is empty", path.display()))?;
    SignerKey::from_str(line).with_context(|| format!("invalid key in {}", path.display()))
}

/// Runs a `candor witness` subcommand. `serve` builds its own Tokio runtime and
/// runs until Ctrl-C / SIGTERM; call it from a synchronous `main`.
pub fn run(args: WitnessArgs) -> anyhow::Result<()> {
    match args.command {
        WitnessCommand::Vkey(a) => {
            let key = read_signer_key(&a.key)?;
            println!("{}", cosignature::witness_verifier_key(&key));
            Ok(())
        }
        WitnessCommand::Serve(a) => {
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(serve(a))
        }
    }
}

/// `candor witness serve`, for callers that already run inside Tokio.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let key = read_signer_key(&args.key)?;
    let mut logs = Vec::new();
    for s in &args.logs {
        let k = VerifierKey::from_str(s).with_context(|| format!("invalid --log key {s:?}"))?;
        logs.push(k);
    }
    let state = WitnessState::open(&args.data)?;
    let witness = Arc::new(Witness::new(key, logs, state)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if addr.port() == 0 {
        bail!("listener has no port");
    }
    // Tests and scripts read this line to find the port.
    println!("witness {} listening on http://{addr}", witness.cosigner());
    tracing::info!(%addr, cosigner = %witness.cosigner(), "witness started");
    server::serve(listener, witness, candor_net::shutdown_signal())
        .await
        .context("witness server failed")
}
