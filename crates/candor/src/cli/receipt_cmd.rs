//! `candor receipt header RECEIPT`: the consumer form of a receipt
//! (`spec/receipts.md` §2) — the `Disclosure-Receipt` header line and the
//! footer line a company puts in the message it sends.

use std::io::Read;

use candor_core::hash::leaf_hash;
use candor_core::receipt::{Receipt, ReceiptLink};
use candor_core::subject::Salt;

/// `candor receipt …`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReceiptArgs {
    #[command(subcommand)]
    pub command: ReceiptCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ReceiptCommand {
    /// Print the `Disclosure-Receipt:` email header and the footer line for a receipt.
    #[command(after_help = "\
Prints two lines: the header (RFC 5322 optional field, to be covered by the \
DKIM signature) and the footer sentence for the message body. Exit status: 0 \
printed, 2 the receipt could not be read or names no log URL.")]
    Header(HeaderArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct HeaderArgs {
    /// The receipt (JSON, e.g. one line of `candor publish` output), or `-`.
    #[arg(value_name = "RECEIPT|-", default_value = "-")]
    pub receipt: String,
    /// The log's public base URL (default: the one in the receipt's `disclosure_header`).
    #[arg(long, value_name = "URL")]
    pub log: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("cannot read {0}: {1}")]
    Read(String, String),
    #[error("{0}")]
    Receipt(String),
    #[error("the receipt names no log URL (it has no disclosure_header); pass --log URL")]
    NoBase,
}

/// Runs `candor receipt …` (exit status 0, or 2 with the reason).
pub fn run(args: &ReceiptArgs) -> anyhow::Result<()> {
    match &args.command {
        ReceiptCommand::Header(h) => {
            let (header, footer) = header(h)?;
            println!("{header}");
            println!("{footer}");
            Ok(())
        }
    }
}

/// The header and footer lines for a receipt.
pub fn header(args: &HeaderArgs) -> Result<(String, String), HeaderError> {
    let text = if args.receipt == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| HeaderError::Read("standard input".into(), e.to_string()))?;
        s
    } else {
        std::fs::read_to_string(&args.receipt)
            .map_err(|e| HeaderError::Read(args.receipt.clone(), e.to_string()))?
    };
    let receipt = Receipt::from_json(text.trim().as_bytes())
        .map_err(|e| HeaderError::Receipt(e.to_string()))?;
    let link = link_for(&receipt)?;
    let base = match &args.log {
        Some(b) => b.clone(),
        None => receipt
            .disclosure_header
            .as_deref()
            .and_then(|h| ReceiptLink::parse(h).ok())
            .and_then(|(base, _)| base)
            .ok_or(HeaderError::NoBase)?,
    };
    Ok((link.header(&base), link.footer(&base)))
}

/// The link fields of a receipt: its index, the hash of its leaf and its salt.
pub fn link_for(receipt: &Receipt) -> Result<ReceiptLink, HeaderError> {
    let leaf = receipt
        .leaf_bytes()
        .map_err(|e| HeaderError::Receipt(e.to_string()))?;
    let salt = match &receipt.subject {
        Some(s) => Some(
            s.salt
                .parse::<Salt>()
                .map_err(|_| HeaderError::Receipt("the subject salt is malformed".into()))?,
        ),
        None => None,
    };
    Ok(ReceiptLink {
        index: receipt.index,
        leaf_hash: leaf_hash(&leaf),
        salt,
    })
}
