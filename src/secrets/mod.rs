//! Secrets: `[secret.NAME]` files encrypted with age, decrypted lazily in memory.
//!
//! [`Secrets`] is built from the config's declarations and the [`IdentitySources`] (CLI flags
//! and environment). Nothing is decrypted until a `${secret...}` reference is evaluated; the
//! plaintext lives only inside [`Value::Sensitive`](tend_provider::Value::Sensitive), which is
//! zeroized on drop and never shown, logged or saved.

mod age_file;
mod document;
mod identities;
pub mod scrub;
pub mod sops;
pub mod tools;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

pub use identities::{IdentitySources, LoadedIdentities};
use tend_provider::Value;

use crate::config::SecretDecl;

/// Why a secret could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    /// No identity was given.
    #[error("no age identity to decrypt secret `{secret}` ({file})")]
    NoIdentity {
        /// Secret name.
        secret: String,
        /// Its file.
        file: String,
    },
    /// An identity file could not be read.
    #[error("cannot use identity {source_name}: {message}")]
    BadIdentity {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("cannot read secret `{secret}` from {file}: {message}")]
    Read {
        /// Secret name.
        secret: String,
        /// Its file.
        file: String,
        /// The I/O error.
        message: String,
    },
    /// No identity fits.
    #[error("cannot decrypt secret `{secret}` ({file}): {message}")]
    Decrypt {
        /// Secret name.
        secret: String,
        /// Its file.
        file: String,
        /// What age said.
        message: String,
        /// Whom the file was made for, as far as its header tells.
        recipients: Vec<String>,
        /// The identities that were tried.
        tried: Vec<String>,
    },
    /// The plaintext is not the declared document type.
    #[error("secret `{secret}` ({file}) is not valid {format}: {message}")]
    Parse {
        /// Secret name.
        secret: String,
        /// Its file.
        file: String,
        /// Expected format.
        format: String,
        /// The parser's message (never the plaintext).
        message: String,
    },
    /// A SOPS file failed verification.
    #[error("secret `{secret}` ({file}) was refused: {message}")]
    Tampered {
        /// Secret name.
        secret: String,
        /// Its file.
        file: String,
        /// What failed.
        message: String,
    },
    /// A key is asked of a secret that is one raw value, not a document.
    #[error("secret `{secret}` ({file}) is one value, not a document with keys: `${{secret.{secret}.{path}}}` asks for the key `{path}`")]
    NotADocument {
        /// Secret name.
        secret: String,
        /// Its file.
        file: String,
        /// The dotted path asked for.
        path: String,
    },
    /// A key path does not exist in the document.
    #[error("secret `{secret}` has no key `{path}`")]
    MissingKey {
        /// Secret name.
        secret: String,
        /// The dotted path asked for.
        path: String,
        /// Keys that exist at the deepest level reached.
        available: Vec<String>,
    },
}

impl SecretError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoIdentity { .. } => {
                Some("pass --identity FILE, or set TEND_AGE_KEY_FILE, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY or SOPS_AGE_SSH_PRIVATE_KEY_FILE".into())
            }
            Self::Decrypt { recipients, tried, .. } => Some(format!(
                "the file was made for: {}\nidentities tried: {}\nre-encrypt it to one of your recipients (`tend secrets rekey`), or use the identity it was made for",
                if recipients.is_empty() { "(no recipient stanzas found)".to_string() } else { recipients.join(", ") },
                tried.join(", ")
            )),
            Self::MissingKey { available, .. } if !available.is_empty() => Some(format!("keys there: {}", available.join(", "))),
            Self::NotADocument { secret, file, .. } => {
                let stem = file.strip_suffix(".age").unwrap_or(file);
                Some(format!(
                    "if it holds TOML (or YAML, JSON, dotenv), name it {stem}.toml.age (.yaml, .json, .env) or set document = \"toml\" in [secret.{secret}]; to use the whole value, write ${{secret.{secret}}}"
                ))
            }
            Self::Parse { .. } => Some("set `document` in its [secret.NAME] table if the file name suggests the wrong type".into()),
            Self::Tampered { .. } => {
                Some("it was modified after it was encrypted; restore it from Git history, or re-create it with `tend secrets encrypt --sops`".into())
            }
            _ => None,
        }
    }
}

fn sops_error(e: sops::SopsError, secret: &str, file: &str, ids: &LoadedIdentities) -> SecretError {
    let (secret, file) = (secret.to_string(), file.to_string());
    match e {
        sops::SopsError::NoKey { message, recipients } => SecretError::Decrypt { secret, file, message, recipients, tried: ids.describe() },
        sops::SopsError::Format(message) => SecretError::Parse { secret, file, format: "SOPS".into(), message },
        sops::SopsError::Tampered(message) => SecretError::Tampered { secret, file, message },
    }
}

/// Strings worth redacting: every string leaf of at least 4 characters, and its lines.
fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v.reveal() {
        Value::String(s) => {
            for candidate in std::iter::once(s.as_str()).chain(s.lines()) {
                let c = candidate.trim();
                if c.chars().count() >= 4 {
                    out.push(c.to_string());
                }
            }
        }
        Value::Int(i) if i.abs() >= 1000 => out.push(i.to_string()),
        Value::List(l) => l.iter().for_each(|x| collect_strings(x, out)),
        Value::Map(m) => m.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// A SOPS file's format and encryption rules, kept when it is edited or rekeyed.
pub type SopsInfo = (sops::Format, sops::Rules);

/// The declared secrets of one config, decrypted on first use.
pub struct Secrets {
    root: PathBuf,
    decls: BTreeMap<String, SecretDecl>,
    sources: IdentitySources,
    identities: OnceLock<Result<LoadedIdentities, SecretError>>,
    cache: Mutex<BTreeMap<String, Result<Value, SecretError>>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("declared", &self.decls.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Secrets {
    /// Secrets of a config directory, decrypted with identities from `sources`.
    pub fn new(root: PathBuf, decls: BTreeMap<String, SecretDecl>, sources: IdentitySources) -> Self {
        Self { root, decls, sources, identities: OnceLock::new(), cache: Mutex::new(BTreeMap::new()) }
    }

    /// No secrets at all (tests, configs without `[secret]`).
    pub fn none() -> Self {
        Self::new(PathBuf::new(), BTreeMap::new(), IdentitySources::default())
    }

    /// Replace every decrypted value (and every line of a multi-line one) that occurs in `text`
    /// with `(sensitive)`: errors from providers may echo what they were given. Every value
    /// decrypted here is remembered by [`scrub`], which logs go through too: one set of forms
    /// (plain, escaped, base64, percent-encoded) for messages and logs alike.
    pub fn redact(&self, text: &str) -> String {
        scrub::scrub(text).into_owned()
    }

    /// The declarations.
    pub fn declarations(&self) -> &BTreeMap<String, SecretDecl> {
        &self.decls
    }

    /// Decrypt any age or SOPS file with the configured identities (for `tend secrets
    /// decrypt/edit/rekey`): the plaintext, and for SOPS files their format and rules.
    pub fn decrypt_file(&self, path: &std::path::Path) -> Result<(zeroize::Zeroizing<Vec<u8>>, Option<SopsInfo>), SecretError> {
        let shown = path.display().to_string();
        let ids = self.identities.get_or_init(|| self.sources.load()).clone()?;
        if ids.is_empty() {
            return Err(SecretError::NoIdentity { secret: shown.clone(), file: shown });
        }
        let bytes = fs_err::read(path).map_err(|e| SecretError::Read { secret: shown.clone(), file: shown.clone(), message: e.to_string() })?;
        if let Some(format) = sops::detect(&bytes, &shown) {
            let (tree, rules) = sops::decrypt_document(&bytes, format, &ids).map_err(|e| sops_error(e, &shown, &shown, &ids))?;
            let text = sops::plaintext(&tree, format);
            return Ok((zeroize::Zeroizing::new(text.as_bytes().to_vec()), Some((format, rules))));
        }
        age_file::decrypt(&bytes, &ids).map(|p| (p, None)).map_err(|(message, recipients)| SecretError::Decrypt {
            secret: shown.clone(),
            file: shown,
            message,
            recipients,
            tried: ids.describe(),
        })
    }

    /// The value of `${secret.NAME.path...}`, sensitive.
    pub fn get(&self, name: &str, path: &[String]) -> Result<Value, SecretError> {
        let whole = self.whole(name)?;
        if path.is_empty() {
            return Ok(whole);
        }
        if !matches!(whole.reveal(), Value::Map(_)) {
            let file = self.decls.get(name).map(|d| d.file.clone()).unwrap_or_default();
            return Err(SecretError::NotADocument { secret: name.to_string(), file, path: path.join(".") });
        }
        whole.get_path(path).ok_or_else(|| {
            let mut at = whole.reveal().clone();
            for seg in path {
                match at.reveal().as_map().and_then(|m| m.get(seg)) {
                    Some(next) => at = next.reveal().clone(),
                    None => break,
                }
            }
            SecretError::MissingKey {
                secret: name.to_string(),
                path: path.join("."),
                available: at.as_map().map(|m| m.keys().map(ToString::to_string).collect()).unwrap_or_default(),
            }
        })
    }

    fn whole(&self, name: &str) -> Result<Value, SecretError> {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = cache.get(name) {
            return found.clone();
        }
        let result = self.decrypt(name).map(|(whole, secret)| {
            match &secret {
                Some(parts) => parts.iter().for_each(scrub::remember),
                None => scrub::remember(&whole),
            }
            whole
        });
        cache.insert(name.to_string(), result.clone());
        result
    }

    /// The decrypted value, and the parts of it that are secret when that is not all of it (a
    /// SOPS file's encrypted values).
    fn decrypt(&self, name: &str) -> Result<(Value, Option<Vec<Value>>), SecretError> {
        let decl = self.decls.get(name).ok_or_else(|| SecretError::MissingKey {
            secret: name.to_string(),
            path: String::new(),
            available: self.decls.keys().cloned().collect(),
        })?;
        let ids = self.identities.get_or_init(|| self.sources.load()).clone()?;
        if ids.is_empty() {
            return Err(SecretError::NoIdentity { secret: name.to_string(), file: decl.file.clone() });
        }
        let read_err = |message: String| SecretError::Read { secret: name.to_string(), file: decl.file.clone(), message };
        let path = tend_provider::resolve_inside(&self.root, &decl.file).map_err(|e| read_err(format!("{e} ({})", e.hint())))?;
        let bytes = fs_err::read(&path).map_err(|e| read_err(e.to_string()))?;
        if let Some(format) = sops::detect(&bytes, &decl.file) {
            return sops::decrypt(&bytes, format, &ids).map(|(v, secret)| (v.sensitive(), Some(secret))).map_err(|e| sops_error(e, name, &decl.file, &ids));
        }
        let plaintext = age_file::decrypt(&bytes, &ids).map_err(|(message, recipients)| SecretError::Decrypt {
            secret: name.to_string(),
            file: decl.file.clone(),
            message,
            recipients,
            tried: ids.describe(),
        })?;
        let format = decl.document.clone().unwrap_or_else(|| document::guess(&decl.file).to_string());
        document::parse(&plaintext, &format).map(|v| (v.sensitive(), None)).map_err(|message| SecretError::Parse {
            secret: name.to_string(),
            file: decl.file.clone(),
            format,
            message,
        })
    }
}
