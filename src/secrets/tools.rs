//! What `tend secrets` needs besides decryption: recipients, encryption, key generation.

use std::io::Write;

use age::secrecy::ExposeSecret;

/// A recipient that can be encrypted to.
pub type BoxedRecipient = Box<dyn age::Recipient + Send>;

/// Parse recipients: age X25519 (`age1…`) and SSH public keys (`ssh-ed25519 …`, `ssh-rsa …`).
pub fn parse_recipients(list: &[String]) -> Result<Vec<BoxedRecipient>, String> {
    if list.is_empty() {
        return Err("no recipients: pass --recipient, or list them in tend.toml under [secrets] recipients".into());
    }
    list.iter()
        .map(|r| {
            let r = r.trim();
            if r.starts_with("age1") {
                r.parse::<age::x25519::Recipient>().map(|x| Box::new(x) as BoxedRecipient).map_err(|e| format!("`{r}`: {e}"))
            } else if r.starts_with("ssh-") {
                r.parse::<age::ssh::Recipient>().map(|x| Box::new(x) as BoxedRecipient).map_err(|e| format!("`{r}`: not a supported SSH public key ({e:?})"))
            } else {
                Err(format!("`{r}` is not an age recipient (age1…) or an SSH public key (ssh-ed25519 …, ssh-rsa …)"))
            }
        })
        .collect()
}

/// Encrypt to every recipient, binary or ASCII-armoured.
pub fn encrypt(plaintext: &[u8], recipients: &[BoxedRecipient], armor: bool) -> Result<Vec<u8>, String> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let format = if armor { age::armor::Format::AsciiArmor } else { age::armor::Format::Binary };
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, format).map_err(|e| e.to_string())?;
    let mut w = encryptor.wrap_output(armored).map_err(|e| e.to_string())?;
    w.write_all(plaintext).map_err(|e| e.to_string())?;
    w.finish().and_then(age::armor::ArmoredWriter::finish).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The current time as SOPS writes it: RFC 3339, seconds, UTC.
pub fn now_utc() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Whether an age file is ASCII-armoured.
pub fn is_armored(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

/// A new X25519 identity: the identity file text (as `age-keygen` writes it) and its recipient.
pub fn keygen(created: &str) -> (zeroize::Zeroizing<String>, String) {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!("# created: {created}\n# public key: {recipient}\n{}\n", id.to_string().expose_secret());
    (zeroize::Zeroizing::new(text), recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_generated_key() {
        let (text, recipient) = keygen("now");
        let recipients = parse_recipients(&[recipient]).unwrap();
        for armor in [false, true] {
            let ct = encrypt(b"value", &recipients, armor).unwrap();
            assert_eq!(is_armored(&ct), armor);
            let mut ids = super::super::LoadedIdentities::default();
            ids.add_text(&text, "test", None).unwrap();
            assert_eq!(&*super::super::age_file::decrypt(&ct, &ids).unwrap(), b"value");
        }
    }

    #[test]
    fn bad_recipients_are_named() {
        let err = parse_recipients(&["nope".into()]).err().unwrap();
        assert!(err.contains("`nope` is not an age recipient"), "{err}");
        assert!(parse_recipients(&[]).err().unwrap().contains("no recipients"));
    }
}
