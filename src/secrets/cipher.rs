//! Encryption of stored secrets: ChaCha20-Poly1305 (RustCrypto) under a 256-bit master key, a
//! fresh random nonce per value, and the secret's name as associated data, so a ciphertext
//! copied onto another name does not open. A stored value is `v1:` and the base64 of nonce and
//! ciphertext. Each row also keeps the master key's fingerprint (a hash, which tells keys apart
//! and reveals nothing of the key), so a node started with the wrong key is refused at start
//! rather than finding every secret unreadable.
//!
//! The master key comes from `FLOWD_MASTER_KEY` (base64 of 32 bytes, or 64 hex digits) or from a
//! key file created with mode 0600 on first start; it is never logged or shown.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

const VERSION: &str = "v1:";
const NONCE_LEN: usize = 12;

/// A master key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{0}: expected 32 bytes written as base64 (44 characters) or as 64 hex digits; `flowd secrets rotate-master-key` prints a new one"
    )]
    Format(String),
    #[error("cannot read the master key file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the master key file {path}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A stored value that does not open with this key (corrupted, or sealed under another key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored value cannot be decrypted with this master key")]
pub struct Unreadable;

/// The 256-bit key that seals stored secrets. Never printed (`Debug` shows its fingerprint).
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> MasterKey {
        let key = ChaCha20Poly1305::generate_key(&mut OsRng);
        MasterKey { key: key.into() }
    }

    /// A key written as base64 or hex; `what` names where it came from, for the message.
    pub fn parse(text: &str, what: &str) -> Result<MasterKey, KeyError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .ok()
        } else {
            STANDARD.decode(text).ok()
        };
        let key: [u8; 32] = bytes
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Format(what.to_string()))?;
        Ok(MasterKey { key })
    }

    /// The key as base64, for the key file and for `rotate-master-key` to print once.
    pub fn encode(&self) -> String {
        STANDARD.encode(self.key)
    }

    /// Reads the key file at `path`, or creates it with a new key (mode 0600, never replacing
    /// an existing file). Returns the key and whether the file was created.
    pub fn load_or_create(path: &Path) -> Result<(MasterKey, bool), KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((MasterKey::parse(&text, &path.display().to_string())?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                match key.publish(path) {
                    Ok(()) => Ok((key, true)),
                    // Another node sharing the folder made it first: use theirs.
                    Err(KeyError::Create { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        MasterKey::load_or_create(path)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(source) => Err(KeyError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Writes the key file whole under a temporary name, then links it into place, which fails
    /// when the file exists: two nodes starting at once never see half a file or replace a key.
    fn publish(&self, path: &Path) -> Result<(), KeyError> {
        let temporary = path.with_extension(format!("new-{}", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        self.write_new(&temporary)?;
        let linked = std::fs::hard_link(&temporary, path);
        let _ = std::fs::remove_file(&temporary);
        linked.map_err(|source| KeyError::Create {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes the key to a file that must not exist yet, readable by its owner only.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let create = |source| KeyError::Create {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(create)?;
        file.write_all(format!("{}\n", self.encode()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(create)
    }

    /// Tells keys apart without revealing them: 16 hex digits of a hash of the key.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"flowd master key fingerprint\0")
            .chain_update(self.key)
            .finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encrypts the value of secret `name`.
    pub fn seal(&self, name: &str, value: &str) -> String {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key));
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(name);
        // Encryption fails only for messages of gigabytes; values are at most 64 KiB.
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{VERSION}{}", STANDARD.encode(bytes))
    }

    /// Decrypts what [`MasterKey::seal`] made for `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<String, Unreadable> {
        let bytes = sealed
            .strip_prefix(VERSION)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(Unreadable)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key));
        let aad = associated_data(name);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Unreadable)?;
        String::from_utf8(plain).map_err(|_| Unreadable)
    }
}

fn associated_data(name: &str) -> Vec<u8> {
    format!("flowd secret {name}").into_bytes()
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_name() {
        let key = MasterKey::generate();
        let value = "p@ss \"wörd\"/+=";
        let sealed = key.seal("TOKEN", value);
        assert!(!sealed.contains(value) && sealed.starts_with("v1:"));
        assert_ne!(sealed, key.seal("TOKEN", value), "a fresh nonce each time");
        assert_eq!(key.open("TOKEN", &sealed).as_deref(), Ok(value));
        assert_eq!(key.open("OTHER", &sealed), Err(Unreadable));
        assert_eq!(
            MasterKey::generate().open("TOKEN", &sealed),
            Err(Unreadable)
        );
        let mut corrupted = sealed.clone();
        corrupted.replace_range(10..11, if &sealed[10..11] == "A" { "B" } else { "A" });
        assert_eq!(key.open("TOKEN", &corrupted), Err(Unreadable));
        assert_eq!(key.open("TOKEN", "v1:"), Err(Unreadable));
        assert_eq!(key.open("TOKEN", "garbage"), Err(Unreadable));
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_never_show() {
        let key = MasterKey::generate();
        let again = MasterKey::parse(&key.encode(), "FLOWD_MASTER_KEY").expect("parses");
        assert_eq!(again.fingerprint(), key.fingerprint());
        let hex: String = key.key.iter().map(|b| format!("{b:02x}")).collect();
        let from_hex = MasterKey::parse(&hex, "FLOWD_MASTER_KEY").expect("parses");
        assert_eq!(from_hex.fingerprint(), key.fingerprint());
        assert!(!format!("{key:?}").contains(&key.encode()));
        for bad in ["", "short", &STANDARD.encode([0u8; 16])] {
            let error = MasterKey::parse(bad, "FLOWD_MASTER_KEY").expect_err(bad);
            assert!(
                error
                    .to_string()
                    .starts_with("FLOWD_MASTER_KEY: expected 32 bytes")
            );
        }
    }

    #[test]
    fn the_key_file_is_created_once_for_its_owner_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("flowd.key");
        let (key, created) = MasterKey::load_or_create(&path).expect("created");
        assert!(created);
        let (again, created) = MasterKey::load_or_create(&path).expect("read");
        assert!(!created);
        assert_eq!(again.fingerprint(), key.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(key.write_new(&path).is_err(), "never replaces a key file");
    }
}
