//! Where age identities come from: `--identity`, `TEND_AGE_KEY_FILE`, and the SOPS variables.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SecretError;

/// Identity locations, collected from the command line and the environment.
#[derive(Debug, Clone, Default)]
pub struct IdentitySources {
    /// Identity files: age X25519 identity files, or SSH ed25519 / RSA private keys.
    pub files: Vec<PathBuf>,
    /// Inline age identities (`SOPS_AGE_KEY`).
    pub inline: Vec<String>,
}

impl IdentitySources {
    /// `--identity` files, then `TEND_AGE_KEY_FILE`, `SOPS_AGE_KEY_FILE`,
    /// `SOPS_AGE_SSH_PRIVATE_KEY_FILE` and `SOPS_AGE_KEY` from the environment.
    pub fn from_env(cli_files: &[PathBuf]) -> Self {
        let mut files = cli_files.to_vec();
        for var in ["TEND_AGE_KEY_FILE", "SOPS_AGE_KEY_FILE", "SOPS_AGE_SSH_PRIVATE_KEY_FILE"] {
            if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                files.push(PathBuf::from(v));
            }
        }
        let inline = std::env::var("SOPS_AGE_KEY").map(|v| vec![v]).unwrap_or_default();
        Self { files, inline }
    }

    /// Read every identity.
    pub fn load(&self) -> Result<LoadedIdentities, SecretError> {
        let mut out = LoadedIdentities::default();
        for file in &self.files {
            let text = zeroize::Zeroizing::new(
                fs_err::read_to_string(file).map_err(|e| SecretError::BadIdentity { source_name: file.display().to_string(), message: e.to_string() })?,
            );
            out.add_text(&text, &file.display().to_string(), Some(file))?;
        }
        for (i, text) in self.inline.iter().enumerate() {
            out.add_text(text, &format!("SOPS_AGE_KEY (entry {})", i + 1), None)?;
        }
        Ok(out)
    }
}

/// Identities ready to decrypt, with a description of each for error messages.
#[derive(Clone, Default)]
pub struct LoadedIdentities {
    ids: Vec<Arc<dyn age::Identity + Send + Sync>>,
    described: Vec<String>,
}

impl LoadedIdentities {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// One line per identity: where it came from and, for X25519, its recipient.
    pub fn describe(&self) -> Vec<String> {
        self.described.clone()
    }

    /// The identities, for age's decryptor.
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.ids.iter().map(|i| i.as_ref() as &dyn age::Identity)
    }

    pub(super) fn add_text(&mut self, text: &str, source: &str, path: Option<&Path>) -> Result<(), SecretError> {
        let bad = |message: String| SecretError::BadIdentity { source_name: source.to_string(), message };
        if text.contains("PRIVATE KEY-----") {
            let id = age::ssh::Identity::from_buffer(text.as_bytes(), path.map(|p| p.display().to_string())).map_err(|e| bad(e.to_string()))?;
            if let age::ssh::Identity::Unsupported(k) = &id {
                return Err(bad(format!("unsupported SSH key: {k:?}")));
            }
            if let age::ssh::Identity::Encrypted(_) = &id {
                return Err(bad("passphrase-protected SSH keys are not supported; use an unencrypted key or an age identity".into()));
            }
            self.ids.push(Arc::new(id));
            self.described.push(format!("SSH key {source}"));
            return Ok(());
        }
        let mut found = 0;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let id: age::x25519::Identity = line.parse().map_err(|e: &str| bad(e.to_string()))?;
            self.described.push(format!("{} ({source})", id.to_public()));
            self.ids.push(Arc::new(id));
            found += 1;
        }
        if found == 0 {
            return Err(bad("no AGE-SECRET-KEY-1… line and no SSH private key in it".into()));
        }
        Ok(())
    }
}
