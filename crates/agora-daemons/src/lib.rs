//! What `agora` runs, as a library: a node (its store, API, and dev engine or Malachite
//! consensus), the market's daemons (provider, verifier, gateway) beside it, and the files of a
//! node's home (keys, wallets, genesis, network file). `agora-cli` parses arguments and calls
//! these.

#![forbid(unsafe_code)]

pub mod analytics_jobs;
pub mod data;
pub mod home;
pub mod keystore;
pub mod market;
pub mod node;
pub mod subnets;

use anyhow::{Result, bail};
use std::io::IsTerminal;
use std::path::Path;

/// A wallet's passphrase: from `file` (its first line), else `AGORA_PASSWORD`, else asked on the
/// terminal (twice when `confirm`).
pub fn read_password(file: Option<&Path>, confirm: bool) -> Result<String> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("reading password file {}: {e}", f.display()))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Ok(pw) = std::env::var("AGORA_PASSWORD") {
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: pass --password-file or set AGORA_PASSWORD");
    }
    let pw = rpassword::prompt_password("Passphrase: ")?;
    if confirm && rpassword::prompt_password("Repeat passphrase: ")? != pw {
        bail!("the passphrases differ");
    }
    Ok(pw)
}
