//! Encrypted key files: the ed25519 secret sealed with ChaCha20-Poly1305 under a key derived from
//! the passphrase with Argon2id. The address is bound as associated data, so a file whose address
//! was edited fails to open.

use agora_types::{Address, Keypair};
use anyhow::{Context, Result, bail};
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A key file on disk.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub name: String,
    pub address: Address,
    pub public_key: String,
    pub kdf: Kdf,
    pub cipher: Cipher,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Kdf {
    pub name: String,
    pub salt: String,
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Cipher {
    pub name: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// The costliest key derivation a key file may ask for: a crafted file must not make `unlock`
/// allocate gigabytes or run for hours (this tool writes argon2's defaults: m = 19 MiB, t = 2,
/// p = 1).
const MAX_KDF_MEMORY_KIB: u32 = 1 << 20;
const MAX_KDF_PASSES: u32 = 16;
const MAX_KDF_LANES: u32 = 16;

fn derive_key(password: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32]> {
    if m > MAX_KDF_MEMORY_KIB || t > MAX_KDF_PASSES || p > MAX_KDF_LANES {
        bail!(
            "the key file asks for argon2 m={m} KiB, t={t}, p={p}: more than this tool accepts \
             (m ≤ {MAX_KDF_MEMORY_KIB}, t ≤ {MAX_KDF_PASSES}, p ≤ {MAX_KDF_LANES}); it was not \
             written by agora"
        );
    }
    let params =
        Params::new(m, t, p, Some(32)).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(out)
}

/// The keystore folder of a home directory.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Keystore {
    pub fn new(home: &Path) -> Self {
        Keystore {
            dir: home.join("keystore"),
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        if !valid_name(name) {
            bail!("invalid wallet name {name:?}: use 1-64 letters, digits, '-' or '_'");
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Encrypts `key` under `password` and writes it as `name`; refuses to overwrite.
    pub fn save(&self, name: &str, key: &Keypair, password: &str) -> Result<KeyFile> {
        let path = self.path(name)?;
        if path.exists() {
            bail!("wallet {name:?} already exists at {}", path.display());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let (m, t, p) = (
            Params::DEFAULT_M_COST,
            Params::DEFAULT_T_COST,
            Params::DEFAULT_P_COST,
        );
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let dk = derive_key(password, &salt, m, t, p)?;
        let address = key.address();
        let ciphertext = ChaCha20Poly1305::new(&dk.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &key.secret(),
                    aad: &address.0,
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let file = KeyFile {
            version: 1,
            name: name.to_string(),
            address,
            public_key: key.public().to_hex(),
            kdf: Kdf {
                name: "argon2id".into(),
                salt: hex::encode(salt),
                m_cost: m,
                t_cost: t,
                p_cost: p,
            },
            cipher: Cipher {
                name: "chacha20poly1305".into(),
                nonce: hex::encode(nonce),
                ciphertext: hex::encode(ciphertext),
            },
        };
        write_private(&path, serde_json::to_string_pretty(&file)?.as_bytes())?;
        Ok(file)
    }

    /// Reads a key file without decrypting it.
    pub fn load(&self, name: &str) -> Result<KeyFile> {
        let path = self.path(name)?;
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no wallet {name:?} in {} (create it with `agora wallet new {name}`)",
                self.dir.display()
            )
        })?;
        let file: KeyFile = serde_json::from_str(&text)
            .with_context(|| format!("corrupt key file {}", path.display()))?;
        if file.version != 1
            || file.kdf.name != "argon2id"
            || file.cipher.name != "chacha20poly1305"
        {
            bail!("unsupported key file format in {}", path.display());
        }
        Ok(file)
    }

    /// Decrypts `name` with `password`.
    pub fn unlock(&self, name: &str, password: &str) -> Result<Keypair> {
        let file = self.load(name)?;
        let salt = hex::decode(&file.kdf.salt).context("corrupt salt")?;
        let nonce = hex::decode(&file.cipher.nonce).context("corrupt nonce")?;
        if nonce.len() != 12 {
            bail!("corrupt nonce in key file {name:?}");
        }
        let ciphertext = hex::decode(&file.cipher.ciphertext).context("corrupt ciphertext")?;
        let dk = derive_key(
            password,
            &salt,
            file.kdf.m_cost,
            file.kdf.t_cost,
            file.kdf.p_cost,
        )?;
        let secret = ChaCha20Poly1305::new(&dk.into())
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &file.address.0,
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("wrong password for wallet {name:?} (or the key file was altered)")
            })?;
        let secret: [u8; 32] = secret
            .try_into()
            .map_err(|_| anyhow::anyhow!("corrupt key in wallet {name:?}"))?;
        let key = Keypair::from_secret(secret);
        if key.address() != file.address {
            bail!("key file {name:?} holds a key for another address");
        }
        Ok(key)
    }

    /// All wallet names, sorted.
    pub fn list(&self) -> Result<Vec<KeyFile>> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(name) = path.file_stem().and_then(|s| s.to_str())
            {
                out.push(self.load(name)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Writes a file readable only by its owner, durably ([`agora_types::durable`]).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    agora_types::durable::write(path, bytes, agora_types::durable::Access::Private)
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes a file others may read (a genesis, a network file), durably.
pub fn write_shared(path: &Path, bytes: &[u8]) -> Result<()> {
    agora_types::durable::write(path, bytes, agora_types::durable::Access::Shared)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_unlock_wrong_password_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::new(dir.path());
        let key = Keypair::generate();
        ks.save("alice", &key, "correct horse").unwrap();
        assert!(ks.save("alice", &key, "x").is_err(), "no overwrite");
        assert_eq!(
            ks.unlock("alice", "correct horse").unwrap().address(),
            key.address()
        );
        let err = ks.unlock("alice", "wrong").unwrap_err().to_string();
        assert!(err.contains("wrong password"), "{err}");
        // Pointing the file at another address breaks decryption.
        let path = dir.path().join("keystore/alice.json");
        let mut file: KeyFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        file.address = Address([1; 20]);
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        assert!(ks.unlock("alice", "correct horse").is_err());
        assert!(ks.path("../etc/passwd").is_err());
        assert_eq!(ks.list().unwrap().len(), 1);
    }

    #[test]
    fn a_key_file_asking_for_a_huge_derivation_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::new(dir.path());
        ks.save("bob", &Keypair::generate(), "pw").unwrap();
        let path = dir.path().join("keystore/bob.json");
        let mut file: KeyFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // 4 TiB of memory and a billion passes: argon2 would try.
        file.kdf.m_cost = u32::MAX;
        file.kdf.t_cost = 1_000_000_000;
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        let err = ks.unlock("bob", "pw").unwrap_err().to_string();
        assert!(err.contains("more than this tool accepts"), "{err}");
    }
}
