//! Commit verification: SSH-signed commits (`gpg.format = ssh`) checked against an
//! `allowed_signers` file, the way `git verify-commit` does with `gpg.ssh.allowedSignersFile`.

use std::path::{Path, PathBuf};

use ssh_key::{HashAlg, PublicKey, SshSig};

/// Why a commit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No signature at all.
    #[error("commit {commit} is not signed")]
    Unsigned {
        /// The commit.
        commit: String,
    },
    /// An `OpenPGP` signature: tend checks SSH signatures only.
    #[error("commit {commit} carries an OpenPGP signature; tend verifies SSH signatures (gpg.format = ssh)")]
    OpenPgp {
        /// The commit.
        commit: String,
    },
    /// Signed by a key not in the allowed signers file.
    #[error("commit {commit} is signed by {fingerprint}, which is not in {}", file.display())]
    UnknownSigner {
        /// The commit.
        commit: String,
        /// SHA256 fingerprint of the signing key.
        fingerprint: String,
        /// The allowed signers file.
        file: PathBuf,
    },
    /// The signature does not match the commit (or its namespace is not `git`).
    #[error("commit {commit} has a bad signature: {why}")]
    BadSignature {
        /// The commit.
        commit: String,
        /// What failed.
        why: String,
    },
    /// The allowed signers file cannot be used.
    #[error("allowed signers file {}: {why}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong (with the line number).
        why: String,
    },
}

/// Keys allowed to sign, from an OpenSSH `allowed_signers` file
/// (`principals [options] keytype base64 [comment]`).
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    file: PathBuf,
    entries: Vec<(String, PublicKey)>,
}

impl AllowedSigners {
    /// Read and parse the file.
    pub fn load(file: &Path) -> Result<Self, VerifyError> {
        let text = fs_err::read_to_string(file).map_err(|e| VerifyError::File { file: file.to_path_buf(), why: e.to_string() })?;
        Self::parse(file, &text)
    }

    /// Parse the file's text.
    pub fn parse(file: &Path, text: &str) -> Result<Self, VerifyError> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| VerifyError::File { file: file.to_path_buf(), why: format!("line {}: {why}", n + 1) };
            let mut fields = line.split_whitespace();
            let principals = fields.next().ok_or_else(|| bad("no principals"))?;
            let rest: Vec<&str> = fields.collect();
            // Options come before the key type when present.
            let key_at =
                rest.iter().position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-") || f.starts_with("sk-")).ok_or_else(|| bad("no public key"))?;
            let options = rest[..key_at].join(" ");
            if options.contains("cert-authority") {
                return Err(bad("cert-authority entries are not supported; list the signing keys themselves"));
            }
            let namespaces = options.split_once("namespaces=\"").and_then(|(_, rest)| rest.split_once('"')).map(|(ns, _)| ns);
            if namespaces.is_some_and(|ns| !ns.split(',').any(|n| n.trim() == "git")) {
                continue; // this key may not sign commits
            }
            let b64 = rest.get(key_at + 1).ok_or_else(|| bad("the key type has no key after it"))?;
            let key = PublicKey::from_openssh(&format!("{} {b64}", rest[key_at])).map_err(|e| bad(&format!("not a public key: {e}")))?;
            entries.push((principals.to_string(), key));
        }
        if entries.is_empty() {
            return Err(VerifyError::File { file: file.to_path_buf(), why: "lists no key allowed to sign commits".into() });
        }
        Ok(Self { file: file.to_path_buf(), entries })
    }

    /// Verify a raw commit object; returns the signer's principals and key fingerprint.
    pub fn verify_commit(&self, commit: &str, raw: &[u8]) -> Result<(String, String), VerifyError> {
        let (payload, signature) = split_signature(raw).ok_or_else(|| VerifyError::Unsigned { commit: commit.to_string() })?;
        if signature.starts_with("-----BEGIN PGP SIGNATURE-----") {
            return Err(VerifyError::OpenPgp { commit: commit.to_string() });
        }
        let sig = SshSig::from_pem(signature.as_bytes())
            .map_err(|e| VerifyError::BadSignature { commit: commit.to_string(), why: format!("not an SSH signature: {e}") })?;
        let fingerprint = PublicKey::from(sig.public_key().clone()).fingerprint(HashAlg::Sha256).to_string();
        let Some((principals, key)) = self.entries.iter().find(|(_, k)| k.key_data() == sig.public_key()) else {
            return Err(VerifyError::UnknownSigner { commit: commit.to_string(), fingerprint, file: self.file.clone() });
        };
        key.verify("git", &payload, &sig).map_err(|e| VerifyError::BadSignature { commit: commit.to_string(), why: e.to_string() })?;
        Ok((principals.clone(), fingerprint))
    }
}

/// Split a commit object into the signed payload (the object without its `gpgsig` header) and
/// the signature (the header's value, continuation lines unfolded).
fn split_signature(raw: &[u8]) -> Option<(Vec<u8>, String)> {
    let text = std::str::from_utf8(raw).ok()?;
    let (headers, message) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut payload = String::with_capacity(text.len());
    let mut sig: Option<String> = None;
    let mut in_sig = false;
    for line in headers.split('\n') {
        if let Some(v) = line.strip_prefix("gpgsig ") {
            sig = Some(v.to_string());
            in_sig = true;
            continue;
        }
        if in_sig && let Some(cont) = line.strip_prefix(' ') {
            if let Some(s) = sig.as_mut() {
                s.push('\n');
                s.push_str(cont);
            }
            continue;
        }
        in_sig = false;
        payload.push_str(line);
        payload.push('\n');
    }
    payload.push('\n');
    payload.push_str(message);
    sig.map(|s| (payload.into_bytes(), s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcKzGkT0mN4d1IYTwmvcbXyMD6IJN7H6H5yMvJ9cRzZ";

    #[test]
    fn allowed_signers_lines_are_parsed_and_bad_ones_named_by_line() {
        let f = Path::new("allowed_signers");
        let ok = AllowedSigners::parse(f, &format!("# c\n\nops@example.com {KEY} laptop\ndev@example.com namespaces=\"file,git\" {KEY}\n")).expect("parses");
        assert_eq!(ok.entries.len(), 2);
        let only_file_ns = AllowedSigners::parse(f, &format!("a@b namespaces=\"file\" {KEY}\n"));
        assert!(matches!(only_file_ns, Err(VerifyError::File { ref why, .. }) if why.contains("no key allowed to sign commits")), "{only_file_ns:?}");
        let bad = AllowedSigners::parse(f, "a@b ssh-ed25519 notbase64\n").expect_err("bad key");
        assert!(bad.to_string().contains("line 1: not a public key"), "{bad}");
        let ca = AllowedSigners::parse(f, &format!("a@b cert-authority {KEY}\n")).expect_err("ca");
        assert!(ca.to_string().contains("cert-authority"), "{ca}");
    }

    #[test]
    fn an_unsigned_commit_is_refused() {
        let signers = AllowedSigners::parse(Path::new("s"), &format!("a@b {KEY}\n")).expect("parses");
        let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@b> 0 +0000\ncommitter A <a@b> 0 +0000\n\nmsg\n";
        assert_eq!(signers.verify_commit("c0ffee", raw), Err(VerifyError::Unsigned { commit: "c0ffee".into() }));
    }
}
