//! What a decrypted secret holds: one value, or a YAML / JSON / TOML / dotenv document.

use tend_provider::Value;

/// Guess the document type from the encrypted file's name: `db.yaml.age` is YAML, `app.env.age`
/// dotenv, `token.age` a single raw value.
pub fn guess(file: &str) -> &'static str {
    let inner = file.strip_suffix(".age").unwrap_or(file);
    let ext = inner.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("yaml" | "yml") => "yaml",
        Some("json") => "json",
        Some("toml") => "toml",
        Some("env" | "dotenv") => "dotenv",
        _ => "raw",
    }
}

/// Parse plaintext as `format`. Error messages never include the plaintext.
pub fn parse(plaintext: &[u8], format: &str) -> Result<Value, String> {
    let text = std::str::from_utf8(plaintext).map_err(|_| "it is not UTF-8 text".to_string())?;
    match format {
        "raw" => Ok(Value::from(text.strip_suffix('\n').unwrap_or(text).to_string())),
        "json" => serde_json::from_str::<serde_json::Value>(text)
            .map(|j| Value::from_json(&j))
            .map_err(|e| format!("line {} column {}: {}", e.line(), e.column(), e.classify_message())),
        "toml" => toml::from_str::<toml::Value>(text)
            .map(|t| from_toml(&t))
            .map_err(|e| e.span().map_or_else(|| "invalid TOML".to_string(), |s| format!("invalid TOML at byte {}", s.start))),
        "yaml" => {
            let docs = crate::config::node::parse_yaml(0, text).map_err(|d| {
                let line = text[..(d.labels.first().map_or(0, |l| l.span.start as usize)).min(text.len())].matches('\n').count() + 1;
                format!("invalid YAML at line {line}")
            })?;
            Ok(docs.first().map_or(Value::Map(tend_provider::Map::new()), crate::config::node_value))
        }
        "dotenv" => dotenv(text).map(Value::Map),
        other => Err(format!("unknown document type `{other}`")),
    }
}

trait Classify {
    fn classify_message(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_message(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

fn from_toml(t: &toml::Value) -> Value {
    match t {
        toml::Value::String(s) => Value::from(s.clone()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(a) => Value::List(a.iter().map(from_toml).collect()),
        toml::Value::Table(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), from_toml(v))).collect()),
    }
}

/// `KEY=value` lines; `#` comments, `export ` prefixes, single and double quotes.
fn dotenv(text: &str) -> Result<tend_provider::Map<Value>, String> {
    let mut out = tend_provider::Map::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {} is not KEY=value", n + 1));
        };
        let v = v.trim();
        let v = if v.len() >= 2 && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\''))) {
            let inner = &v[1..v.len() - 1];
            if v.starts_with('"') { inner.replace("\\n", "\n").replace("\\\"", "\"") } else { inner.to_string() }
        } else {
            v.split(" #").next().unwrap_or(v).trim_end().to_string()
        };
        out.insert(k.trim().into(), Value::from(v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_document_type_from_the_file_name() {
        assert_eq!(guess("secrets/db.yaml.age"), "yaml");
        assert_eq!(guess("secrets/app.env.age"), "dotenv");
        assert_eq!(guess("secrets/.env.age"), "dotenv");
        assert_eq!(guess("token.age"), "raw");
        assert_eq!(guess("x.json.age"), "json");
    }

    #[test]
    fn parses_each_document_type() {
        assert_eq!(parse(b"hunter2\n", "raw").unwrap(), Value::from("hunter2"));
        let d = parse(b"export A=1\nB=\"two words\" \n# c\nC='x' \nD=plain # comment\n", "dotenv").unwrap();
        assert_eq!(d.get_path(&["B".into()]), Some(Value::from("two words")));
        assert_eq!(d.get_path(&["D".into()]), Some(Value::from("plain")));
        let y = parse(b"db:\n  password: p\n", "yaml").unwrap();
        assert_eq!(y.get_path(&["db".into(), "password".into()]), Some(Value::from("p")));
        let t = parse(b"[db]\nport = 5432\n", "toml").unwrap();
        assert_eq!(t.get_path(&["db".into(), "port".into()]), Some(Value::Int(5432)));
        let err = parse(b"{\"password\": \"canary-in-error\"", "json").unwrap_err();
        assert!(!err.contains("canary"), "{err}");
    }
}
