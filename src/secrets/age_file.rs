//! Decrypting age files (binary or ASCII-armoured) and reading whom they were made for.

use std::io::Read;

use zeroize::Zeroizing;

use super::LoadedIdentities;

/// Decrypt; on failure return age's message and the recipient stanzas of the header.
pub fn decrypt(bytes: &[u8], ids: &LoadedIdentities) -> Result<Zeroizing<Vec<u8>>, (String, Vec<String>)> {
    let fail = |e: &dyn std::fmt::Display| (e.to_string(), recipients(bytes));
    let decryptor = age::Decryptor::new(age::armor::ArmoredReader::new(bytes)).map_err(|e| fail(&e))?;
    let mut reader = decryptor.decrypt(ids.iter()).map_err(|e| fail(&e))?;
    let mut out = Zeroizing::new(Vec::new());
    reader.read_to_end(&mut out).map_err(|e| fail(&e))?;
    Ok(out)
}

/// The recipient stanzas of an age header, described: `X25519`, `ssh-ed25519 (key tag …)`.
/// X25519 stanzas do not name their recipient; SSH stanzas carry a short key tag.
pub fn recipients(bytes: &[u8]) -> Vec<String> {
    let mut header = Vec::new();
    let _ = age::armor::ArmoredReader::new(bytes).take(64 * 1024).read_to_end(&mut header);
    let text = String::from_utf8_lossy(&header);
    if !text.starts_with("age-encryption.org/") {
        return vec!["(not an age file)".into()];
    }
    text.lines()
        .take_while(|l| !l.starts_with("---"))
        .filter_map(|l| l.strip_prefix("-> "))
        .map(|stanza| {
            let mut parts = stanza.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(kind @ ("ssh-ed25519" | "ssh-rsa")), Some(tag)) => format!("{kind} key (tag {tag})"),
                (Some("X25519"), _) => "an X25519 recipient".to_string(),
                (Some(kind), _) => kind.to_string(),
                (None, _) => "an empty stanza".to_string(),
            }
        })
        .collect()
}
