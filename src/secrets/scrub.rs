//! The last line of defence for logs: every log line tend writes passes through [`Scrubbed`],
//! which replaces each secret value decrypted in this process — as written, JSON-escaped, and
//! base64-encoded at each alignment it can have inside a longer text (EC2 `user_data`), plain and
//! percent-encoded — with `(sensitive)`. Messages are redacted where they are made; this catches
//! what a log line carries that no one redacted: a provider's debug line, an SDK's wire log.

use std::io::Write;
use std::sync::RwLock;

use base64::Engine;
use tend_provider::Value;
use zeroize::Zeroizing;

/// Every form of every secret seen by this process, longest first.
static KNOWN: RwLock<Vec<Zeroizing<String>>> = RwLock::new(Vec::new());

/// The forms a secret text may take in a log line.
fn forms(secret: &str, out: &mut Vec<Zeroizing<String>>) {
    out.push(Zeroizing::new(secret.to_string()));
    let escaped = serde_json::to_string(secret).unwrap_or_default();
    let escaped = escaped.trim_matches('"');
    if escaped != secret {
        out.push(Zeroizing::new(escaped.to_string()));
    }
    for skip in 0..3.min(secret.len()) {
        let part = &secret.as_bytes()[skip..];
        let whole = &part[..part.len() / 3 * 3];
        if whole.len() < 6 {
            continue;
        }
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(whole));
        let percent = Zeroizing::new(b64.replace('+', "%2B").replace('/', "%2F"));
        if *percent != *b64 {
            out.push(percent);
        }
        out.push(b64);
    }
}

/// Remember a decrypted value so that logs never show it.
pub fn remember(value: &Value) {
    let mut texts = Vec::new();
    super::collect_strings(value, &mut texts);
    if texts.is_empty() {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    for t in texts {
        let t = Zeroizing::new(t);
        let mut new = Vec::new();
        forms(&t, &mut new);
        for f in new {
            if !known.contains(&f) {
                known.push(f);
            }
        }
    }
    known.sort_by_key(|n| std::cmp::Reverse(n.len()));
}

/// Every secret value decrypted in this process replaced inside `v`'s strings.
pub fn scrub_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(clean) = scrub(s) {
                *s = clean.into();
            }
        }
        Value::List(items) => items.iter_mut().for_each(scrub_value),
        Value::Map(m) => m.values_mut().for_each(scrub_value),
        _ => {}
    }
}

/// `text` with every remembered form of a secret replaced by `(sensitive)`.
pub fn scrub(text: &str) -> std::borrow::Cow<'_, str> {
    let known = KNOWN.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !known.iter().any(|n| text.contains(n.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for n in known.iter() {
        if out.contains(n.as_str()) {
            out = out.replace(n.as_str(), "(sensitive)");
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A `tracing` writer to stderr that scrubs each whole event before it is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scrubbed;

/// One event being written; scrubbed and written to stderr when dropped.
#[derive(Debug, Default)]
pub struct ScrubbedEvent(Vec<u8>);

impl Write for ScrubbedEvent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedEvent {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().lock().write_all(scrub(&text).as_bytes());
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl tracing_subscriber::fmt::MakeWriter<'_> for Scrubbed {
    type Writer = ScrubbedEvent;

    fn make_writer(&self) -> Self::Writer {
        ScrubbedEvent(Vec::with_capacity(256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_scrubbed_as_written_escaped_and_base64_at_any_alignment() {
        remember(&Value::String("s3cr\"et-value-xyz".into()));
        let secret = "s3cr\"et-value-xyz";
        assert_eq!(scrub(&format!("token={secret};")), "token=(sensitive);");
        assert_eq!(scrub(r#"{"token":"s3cr\"et-value-xyz"}"#), r#"{"token":"(sensitive)"}"#);
        for prefix in ["", "a", "ab"] {
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{prefix}export T={secret}\n"));
            let scrubbed = scrub(&b64);
            assert!(scrubbed.contains("(sensitive)"), "alignment {}: {b64} -> {scrubbed}", prefix.len());
            let form = b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
            assert!(scrub(&form).contains("(sensitive)"), "percent-encoded at alignment {}", prefix.len());
        }
        assert_eq!(scrub("nothing to hide"), "nothing to hide");
    }
}
