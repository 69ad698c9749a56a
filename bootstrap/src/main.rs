//! `swarmlabel-bootstrap`: the peer that new nodes dial first.
//!
//! Today it manages its identity only (create or load `--key-file`, print the peer id); the
//! libp2p swarm (DHT server, relay, AutoNAT) arrives with issue 4.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;

/// The swarmlabel bootstrap peer: the first peer new nodes dial.
#[derive(Debug, Parser)]
#[command(name = "swarmlabel-bootstrap", version, max_term_width = 100)]
struct Cli {
    /// The peer's ed25519 key (created with mode 0600 if missing). Back it up: it is the peer id
    /// that every node's config names.
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// Print the peer id and exit.
    #[arg(long)]
    print_peer_id: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let keypair = load_or_create(&cli.key_file)?;
    let peer_id = keypair.public().to_peer_id();
    println!("{peer_id}");
    if !cli.print_peer_id {
        anyhow::bail!(
            "the bootstrap peer's networking is not built yet (issue 4); only --print-peer-id works"
        );
    }
    Ok(())
}

/// Loads the hex ed25519 secret in `path`, or creates one there (mode 0600, never overwriting).
fn load_or_create(path: &Path) -> anyhow::Result<libp2p_identity::Keypair> {
    let secret = match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .with_context(|| {
                format!(
                    "{} is not a key file (64 hex characters); restore it from its backup",
                    path.display()
                )
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create the key file {}", path.display()))?;
            writeln!(file, "{}", hex::encode(secret))?;
            file.sync_all()?;
            secret.to_vec()
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the key file {}", path.display()));
        }
    };
    let secret = libp2p_identity::ed25519::SecretKey::try_from_bytes(secret)
        .context("the key file does not hold a valid ed25519 key")?;
    Ok(libp2p_identity::Keypair::from(
        libp2p_identity::ed25519::Keypair::from(secret),
    ))
}
