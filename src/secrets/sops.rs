//! SOPS-format files: values encrypted one by one with AES-256-GCM under a data key that is
//! age-encrypted to each recipient in the file's `sops` metadata, and a MAC over all values.
//!
//! Reads YAML, JSON, dotenv and INI files made by the `sops` tool unchanged (MAC verified) and
//! writes YAML, JSON and dotenv files that `sops` reads. The format, as implemented here:
//! - a value is `ENC[AES256_GCM,data:<b64>,iv:<b64 32 bytes>,tag:<b64>,type:str|int|float|bool]`,
//!   its additional data the key path joined with `:` plus a trailing `:` (lists add nothing);
//! - which values are encrypted follows `unencrypted_suffix` (default `_unencrypted`),
//!   `encrypted_suffix`, `unencrypted_regex` or `encrypted_regex`, tested on every key of the path;
//! - the MAC is the upper-case hex SHA-512 over every non-null value's plaintext in document order
//!   (booleans as `True`/`False`), or only the encrypted ones after a fixed prefix with
//!   `mac_only_encrypted`; it is stored encrypted with `lastmodified` as additional data.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha512};
use tend_provider::Value;
use zeroize::Zeroizing;

use super::LoadedIdentities;
use super::tools::BoxedRecipient;
use crate::config::node::{self, Key, Node, NodeKind};
use crate::config::source::Span;

type Cipher = AesGcm<Aes256, U32>;

const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad,
    0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// The file formats of SOPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// `KEY=value` lines.
    Dotenv,
    /// INI sections.
    Ini,
}

impl Format {
    /// The format a file name suggests (`.json`, `.env`, `.ini`, else YAML).
    pub fn from_name(name: &str) -> Self {
        let ext = std::path::Path::new(name).extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("json") => Self::Json,
            Some("env" | "dotenv") => Self::Dotenv,
            Some("ini") => Self::Ini,
            _ => Self::Yaml,
        }
    }
}

/// Why a SOPS file could not be read.
#[derive(Debug, Clone)]
pub enum SopsError {
    /// Not a well-formed SOPS file.
    Format(String),
    /// No identity opens the data key.
    NoKey {
        /// What age said.
        message: String,
        /// The recipients listed in the file.
        recipients: Vec<String>,
    },
    /// A value or the MAC does not verify: the file was changed after encryption.
    Tampered(String),
}

/// Whether the bytes are a SOPS file, and which format.
pub fn detect(bytes: &[u8], name: &str) -> Option<Format> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.lines().any(|l| l.starts_with("sops_mac=")) {
        return Some(Format::Dotenv);
    }
    if text.lines().any(|l| l.trim() == "[sops]") {
        return Some(Format::Ini);
    }
    let doc = node::parse_yaml(0, text).ok()?.into_iter().next()?;
    let NodeKind::Map(entries) = &doc.kind else { return None };
    let sops = entries.iter().find(|(k, _)| k.name == "sops")?;
    matches!(&sops.1.kind, NodeKind::Map(m) if m.iter().any(|(k, _)| k.name == "mac"))
        .then(|| if Format::from_name(name) == Format::Json || text.trim_start().starts_with('{') { Format::Json } else { Format::Yaml })
}

/// Which values are encrypted.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Keys ending with this stay plaintext (default `_unencrypted`).
    pub unencrypted_suffix: Option<String>,
    /// Only keys ending with this are encrypted.
    pub encrypted_suffix: Option<String>,
    /// Keys matching this stay plaintext.
    pub unencrypted_regex: Option<String>,
    /// Only keys matching this are encrypted.
    pub encrypted_regex: Option<String>,
    /// The MAC covers only encrypted values.
    pub mac_only_encrypted: bool,
}

struct Compiled {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    mac_only_encrypted: bool,
}

impl Rules {
    fn compile(&self) -> Result<Compiled, String> {
        let re = |r: &Option<String>| r.as_deref().map(regex::Regex::new).transpose().map_err(|e| e.to_string());
        let set = [&self.unencrypted_suffix, &self.encrypted_suffix, &self.unencrypted_regex, &self.encrypted_regex];
        if set.iter().filter(|r| r.is_some()).count() > 1 {
            return Err("only one of unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex may be set".into());
        }
        let none = set.iter().all(|r| r.is_none());
        Ok(Compiled {
            unencrypted_suffix: if none { Some("_unencrypted".into()) } else { self.unencrypted_suffix.clone() },
            encrypted_suffix: self.encrypted_suffix.clone(),
            unencrypted_regex: re(&self.unencrypted_regex)?,
            encrypted_regex: re(&self.encrypted_regex)?,
            mac_only_encrypted: self.mac_only_encrypted,
        })
    }
}

impl Compiled {
    fn encrypts(&self, path: &[String]) -> bool {
        let mut enc = true;
        if let Some(s) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(s.as_str()))
        {
            enc = false;
        }
        if let Some(s) = &self.encrypted_suffix {
            enc = path.iter().any(|p| p.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex
            && path.iter().any(|p| r.is_match(p))
        {
            enc = false;
        }
        if let Some(r) = &self.encrypted_regex {
            enc = path.iter().any(|p| r.is_match(p));
        }
        enc
    }
}

/// The parsed file: data tree (metadata removed) and metadata.
struct Parsed {
    data: Node,
    age: Vec<(String, String)>,
    lastmodified: String,
    mac: String,
    rules: Rules,
}

fn leaf(kind: NodeKind) -> Node {
    Node { span: Span::default(), kind }
}

fn key(name: &str) -> Key {
    Key { name: name.to_string(), span: Span::default() }
}

fn text_of(v: &Value) -> Option<String> {
    match v.reveal() {
        Value::String(s) => Some(s.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn parse(text: &str, format: Format) -> Result<Parsed, String> {
    let (data, meta) = match format {
        Format::Yaml | Format::Json => {
            let doc = node::parse_yaml(0, text).map_err(|d| d.summary)?.into_iter().next().ok_or("the file is empty")?;
            let NodeKind::Map(entries) = doc.kind else { return Err("the document is not a mapping".into()) };
            let (meta, data): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(k, _)| k.name == "sops");
            let meta = meta.into_iter().next().map(|(_, n)| crate::config::node_value(&n)).ok_or("no `sops` metadata")?;
            (leaf(NodeKind::Map(data)), meta)
        }
        Format::Dotenv | Format::Ini => {
            let (data, flat) = parse_lines(text, format == Format::Ini)?;
            (data, unflatten(&flat))
        }
    };
    let m = meta.as_map().ok_or("`sops` metadata is not a table")?;
    if m.contains_key("key_groups") || m.contains_key("shamir_threshold") {
        return Err("key groups (Shamir) are not supported; use plain age recipients".into());
    }
    for unsupported in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
        if m.contains_key(unsupported) {
            return Err(format!("`{unsupported}` is not supported"));
        }
    }
    let get = |k: &str| m.get(k).and_then(text_of);
    let age = m
        .get("age")
        .and_then(Value::as_list)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_map)
                .map(|e| (e.get("recipient").and_then(text_of).unwrap_or_default(), e.get("enc").and_then(text_of).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let rules = Rules {
        unencrypted_suffix: get("unencrypted_suffix"),
        encrypted_suffix: get("encrypted_suffix"),
        unencrypted_regex: get("unencrypted_regex"),
        encrypted_regex: get("encrypted_regex"),
        mac_only_encrypted: get("mac_only_encrypted").is_some_and(|v| v == "true"),
    };
    Ok(Parsed {
        data,
        age,
        lastmodified: get("lastmodified").ok_or("no `lastmodified` in the metadata")?,
        mac: get("mac").ok_or("no `mac` in the metadata")?,
        rules,
    })
}

/// dotenv / INI lines into a data tree (ordered) plus the flattened `sops` metadata.
fn parse_lines(text: &str, ini: bool) -> Result<(Node, BTreeMap<String, String>), String> {
    let mut flat = BTreeMap::new();
    let mut top: Vec<(Key, Node)> = Vec::new();
    let mut section: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if ini && line.starts_with('[') && line.ends_with(']') {
            let name = line[1..line.len() - 1].trim().to_string();
            if name != "sops" {
                top.push((key(&name), leaf(NodeKind::Map(Vec::new()))));
            }
            section = Some(name);
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| format!("line {} is not KEY=value", n + 1))?;
        let (k, v) = (k.trim(), if ini { v.trim() } else { v });
        let value = v.replace("\\n", "\n");
        match (&section, ini) {
            (_, false) if k.starts_with("sops_") => {
                flat.insert(k.trim_start_matches("sops_").to_string(), value);
            }
            (Some(s), true) if s == "sops" => {
                flat.insert(k.to_string(), value);
            }
            (Some(_), true) => {
                if let Some((_, Node { kind: NodeKind::Map(m), .. })) = top.last_mut() {
                    m.push((key(k), leaf(NodeKind::String(value))));
                }
            }
            _ => top.push((key(k), leaf(NodeKind::String(value)))),
        }
    }
    Ok((leaf(NodeKind::Map(top)), flat))
}

/// `age__list_0__map_enc` → `{age: [{enc: …}]}`: `__` separates steps, `list_N` indexes a
/// list, `map_KEY` names a key of a table.
fn unflatten(flat: &BTreeMap<String, String>) -> Value {
    let mut root = Value::Map(tend_provider::Map::new());
    for (k, v) in flat {
        let parts: Vec<&str> = k.split("__").collect();
        let mut cur = &mut root;
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let next_is_list = parts.get(i + 1).is_some_and(|n| n.starts_with("list_"));
            if let Some(idx) = p.strip_prefix("list_").and_then(|n| n.parse::<usize>().ok()) {
                let Value::List(l) = cur else { break };
                while l.len() <= idx {
                    l.push(Value::Map(tend_provider::Map::new()));
                }
                cur = &mut l[idx];
                continue;
            }
            let name = p.strip_prefix("map_").unwrap_or(p);
            let Value::Map(m) = cur else { break };
            cur = m.entry(name.into()).or_insert_with(|| {
                if last {
                    Value::from(v.clone())
                } else if next_is_list {
                    Value::List(Vec::new())
                } else {
                    Value::Map(tend_provider::Map::new())
                }
            });
        }
    }
    root
}

fn go_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 { format!("{f:.0}") } else { format!("{f}") }
}

fn mac_bytes(v: &Value) -> Vec<u8> {
    match v.reveal() {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => go_float(*f).into_bytes(),
        Value::Bool(b) => {
            if *b {
                b"True".to_vec()
            } else {
                b"False".to_vec()
            }
        }
        _ => Vec::new(),
    }
}

fn decrypt_value(s: &str, data_key: &[u8], aad: &str) -> Result<Value, String> {
    let inner = s.strip_prefix("ENC[AES256_GCM,").and_then(|r| r.strip_suffix(']')).ok_or("not an ENC[AES256_GCM,…] value")?;
    let mut fields = BTreeMap::new();
    for part in inner.split(',') {
        let (k, v) = part.split_once(':').ok_or("malformed ENC value")?;
        fields.insert(k, v);
    }
    let b = |k: &str| {
        fields
            .get(k)
            .ok_or(format!("its ENC value has no {k}"))
            .and_then(|v| B64.decode(v).map_err(|_| format!("its ENC value is malformed (bad base64 in {k})")))
    };
    let (mut data, iv, tag) = (b("data")?, b("iv")?, b("tag")?);
    if iv.len() != 32 {
        return Err(format!("IV of {} bytes (expected 32)", iv.len()));
    }
    data.extend_from_slice(&tag);
    let cipher = Cipher::new_from_slice(data_key).map_err(|_| "the data key is not 32 bytes")?;
    let plain =
        Zeroizing::new(cipher.decrypt(Nonce::<U32>::from_slice(&iv), Payload { msg: &data, aad: aad.as_bytes() }).map_err(|_| "authentication failed")?);
    let text = String::from_utf8_lossy(&plain).into_owned();
    Ok(match fields.get("type").copied().unwrap_or("str") {
        "int" | "int64" => Value::Int(text.parse().map_err(|_| "bad int")?),
        "float" => Value::Float(text.parse().map_err(|_| "bad float")?),
        "bool" => Value::Bool(matches!(text.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True")),
        _ => Value::from(text),
    })
}

fn encrypt_value(v: &Value, data_key: &[u8], aad: &str) -> Result<String, String> {
    let (bytes, ty) = match v.reveal() {
        Value::String(s) => (s.as_bytes().to_vec(), "str"),
        Value::Int(i) => (i.to_string().into_bytes(), "int"),
        Value::Float(f) => (go_float(*f).into_bytes(), "float"),
        Value::Bool(b) => (mac_bytes(&Value::Bool(*b)), "bool"),
        other => return Err(format!("cannot encrypt a {}", other.type_name())),
    };
    if bytes.is_empty() {
        return Ok(String::new());
    }
    let iv = random::<32>();
    let cipher = Cipher::new_from_slice(data_key).map_err(|_| "the data key is not 32 bytes")?;
    let out = cipher.encrypt(Nonce::<U32>::from_slice(&iv), Payload { msg: &bytes, aad: aad.as_bytes() }).map_err(|_| "encryption failed")?;
    let (data, tag) = out.split_at(out.len() - 16);
    Ok(format!("ENC[AES256_GCM,data:{},iv:{},tag:{},type:{ty}]", B64.encode(data), B64.encode(iv), B64.encode(tag)))
}

fn random<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut buf = [0u8; N];
    fs_err::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("/dev/urandom is readable");
    buf
}

fn scalar_value(kind: &NodeKind) -> Option<Value> {
    Some(match kind {
        NodeKind::String(s) => Value::from(s.clone()),
        NodeKind::Int(i) => Value::Int(*i),
        NodeKind::Float(f) => Value::Float(*f),
        NodeKind::Bool(b) => Value::Bool(*b),
        _ => return None,
    })
}

/// What a walk does with one leaf: given its value, path and whether it is encrypted, return
/// (the plaintext for the MAC, the value to store).
type OnLeaf<'a> = dyn FnMut(&Value, &[String], bool) -> Result<(Value, Value), String> + 'a;

/// Walk the data tree in document order, transforming leaves and feeding the MAC.
fn walk(node: &Node, path: &mut Vec<String>, rules: &Compiled, mac: &mut Sha512, on_leaf: &mut OnLeaf<'_>) -> Result<Node, String> {
    Ok(match &node.kind {
        NodeKind::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                path.push(k.name.clone());
                let n = walk(v, path, rules, mac, on_leaf)?;
                path.pop();
                out.push((k.clone(), n));
            }
            leaf(NodeKind::Map(out))
        }
        NodeKind::List(items) => leaf(NodeKind::List(items.iter().map(|i| walk(i, path, rules, mac, on_leaf)).collect::<Result<_, _>>()?)),
        NodeKind::Null => leaf(NodeKind::Null),
        other => {
            let v = scalar_value(other).expect("scalars convert");
            let encrypted = rules.encrypts(path);
            let (plain, stored) = on_leaf(&v, path, encrypted)?;
            if !rules.mac_only_encrypted || encrypted {
                mac.update(mac_bytes(&plain));
            }
            leaf(match stored.reveal() {
                Value::String(s) => NodeKind::String(s.to_string()),
                Value::Int(i) => NodeKind::Int(*i),
                Value::Float(f) => NodeKind::Float(*f),
                Value::Bool(b) => NodeKind::Bool(*b),
                _ => NodeKind::Null,
            })
        }
    })
}

fn node_to_value(n: &Node) -> Value {
    crate::config::node_value(n)
}

fn new_mac(rules: &Compiled) -> Sha512 {
    let mut mac = Sha512::new();
    if rules.mac_only_encrypted {
        mac.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    mac
}

/// Decrypt a SOPS file into its data (without metadata), verifying the MAC, and the plaintext of
/// each value that was encrypted (what is secret: the values a file keeps in the clear, such as
/// a Kubernetes Secret's `kind` and `metadata`, are not).
pub fn decrypt(bytes: &[u8], format: Format, ids: &LoadedIdentities) -> Result<(Value, Vec<Value>), SopsError> {
    let mut secret = Vec::new();
    let (tree, _) = decrypt_tree(bytes, format, ids, &mut secret)?;
    Ok((node_to_value(&tree), secret))
}

/// The decrypted plaintext document in the file's own format (for `tend secrets decrypt/edit`).
pub fn plaintext(tree: &Node, format: Format) -> Zeroizing<String> {
    let mut out = String::new();
    match format {
        Format::Yaml => yaml_node(&mut out, tree, 0),
        Format::Json => out = format!("{}\n", json_node(tree)),
        Format::Dotenv => {
            if let NodeKind::Map(entries) = &tree.kind {
                for (k, v) in entries {
                    let _ = writeln!(out, "{}={}", k.name, yaml_scalar_plain(&v.kind));
                }
            }
        }
        Format::Ini => {
            if let NodeKind::Map(sections) = &tree.kind {
                for (s, body) in sections {
                    let _ = writeln!(out, "[{}]", s.name);
                    if let NodeKind::Map(entries) = &body.kind {
                        for (k, v) in entries {
                            let _ = writeln!(out, "{} = {}", k.name, yaml_scalar_plain(&v.kind));
                        }
                    }
                    out.push('\n');
                }
            }
        }
    }
    Zeroizing::new(out)
}

fn yaml_scalar_plain(n: &NodeKind) -> String {
    match n {
        NodeKind::String(s) => s.clone(),
        other => yaml_scalar(other),
    }
}

/// Decrypt to the ordered data tree and the file's encryption rules (kept by rekey and edit).
pub fn decrypt_document(bytes: &[u8], format: Format, ids: &LoadedIdentities) -> Result<(Node, Rules), SopsError> {
    decrypt_tree(bytes, format, ids, &mut Vec::new())
}

fn decrypt_tree(bytes: &[u8], format: Format, ids: &LoadedIdentities, secret: &mut Vec<Value>) -> Result<(Node, Rules), SopsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SopsError::Format("not UTF-8".into()))?;
    let parsed = parse(text, format).map_err(SopsError::Format)?;
    let recipients: Vec<String> = parsed.age.iter().map(|(r, _)| r.clone()).collect();
    if parsed.age.is_empty() {
        return Err(SopsError::Format("no age recipients in the metadata (other key types are not supported)".into()));
    }
    let mut last = String::new();
    let mut data_key = None;
    for (_, enc) in &parsed.age {
        match super::age_file::decrypt(enc.as_bytes(), ids) {
            Ok(k) => {
                data_key = Some(k);
                break;
            }
            Err((m, _)) => last = m,
        }
    }
    let data_key = data_key.ok_or(SopsError::NoKey { message: last, recipients })?;
    let rules = parsed.rules.compile().map_err(SopsError::Format)?;
    let mut mac = new_mac(&rules);
    let mut on_leaf = |v: &Value, path: &[String], encrypted: bool| -> Result<(Value, Value), String> {
        if !encrypted {
            return Ok((v.clone(), v.clone()));
        }
        let Value::String(s) = v else {
            return Err(format!("`{}` should be encrypted but is a plain {}", path.join("."), v.type_name()));
        };
        if s.is_empty() {
            return Ok((v.clone(), v.clone()));
        }
        let aad = format!("{}:", path.join(":"));
        let plain = decrypt_value(s, &data_key, &aad).map_err(|e| format!("`{}`: {e}", path.join(".")))?;
        secret.push(plain.clone());
        Ok((plain.clone(), plain))
    };
    let tree = walk(&parsed.data, &mut Vec::new(), &rules, &mut mac, &mut on_leaf).map_err(SopsError::Tampered)?;
    let computed = hex::encode_upper(mac.finalize());
    let stored = decrypt_value(&parsed.mac, &data_key, &parsed.lastmodified).map_err(|e| SopsError::Tampered(format!("the MAC cannot be read ({e})")))?;
    if stored.as_str() != Some(computed.as_str()) {
        return Err(SopsError::Tampered("MAC mismatch: the file was changed after it was encrypted".into()));
    }
    Ok((tree, parsed.rules))
}

/// Whether a parsed config document is a SOPS file (a top-level `sops` table with a `mac`).
pub fn is_sops_document(doc: &Node) -> bool {
    matches!(&doc.kind, NodeKind::Map(entries) if entries.iter().any(|(k, v)| k.name == "sops"
        && matches!(&v.kind, NodeKind::Map(m) if m.iter().any(|(k, _)| k.name == "mac"))))
}

/// Encrypt a plaintext document as a SOPS file that the `sops` tool reads.
pub fn encrypt(plain: &[u8], format: Format, recipients: &[(String, BoxedRecipient)], rules: &Rules) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(plain).map_err(|_| "the plaintext is not UTF-8".to_string())?;
    let data = match format {
        Format::Yaml | Format::Json => {
            let doc = node::parse_yaml(0, text).map_err(|d| d.summary)?.into_iter().next().ok_or("the file is empty")?;
            if matches!(&doc.kind, NodeKind::Map(m) if m.iter().any(|(k, _)| k.name == "sops")) {
                return Err("the file is already SOPS-encrypted".into());
            }
            doc
        }
        Format::Dotenv => parse_lines(text, false)?.0,
        Format::Ini => return Err("writing INI files is not supported; use YAML, JSON or dotenv".into()),
    };
    let compiled = rules.compile()?;
    let data_key = Zeroizing::new(random::<32>());
    let mut mac = new_mac(&compiled);
    let mut on_leaf = |v: &Value, path: &[String], encrypted: bool| -> Result<(Value, Value), String> {
        if !encrypted {
            return Ok((v.clone(), v.clone()));
        }
        let aad = format!("{}:", path.join(":"));
        Ok((v.clone(), Value::from(encrypt_value(v, &*data_key, &aad)?)))
    };
    let tree = walk(&data, &mut Vec::new(), &compiled, &mut mac, &mut on_leaf)?;
    let lastmodified = crate::secrets::tools::now_utc();
    let mac = encrypt_value(&Value::from(hex::encode_upper(mac.finalize())), &*data_key, &lastmodified)?;
    let mut age = Vec::new();
    for (name, r) in recipients {
        let enc = super::tools::encrypt(&*data_key, std::slice::from_ref(r), true)?;
        age.push((name.clone(), String::from_utf8(enc).map_err(|e| e.to_string())?));
    }
    let mut meta: Vec<(String, String)> = Vec::new();
    let rule = [
        ("unencrypted_suffix", &compiled.unencrypted_suffix),
        ("encrypted_suffix", &compiled.encrypted_suffix),
        ("unencrypted_regex", &rules.unencrypted_regex),
        ("encrypted_regex", &rules.encrypted_regex),
    ];
    for (k, v) in rule {
        if let Some(v) = v {
            meta.push((k.into(), v.clone()));
        }
    }
    Ok(match format {
        Format::Yaml => emit_yaml(&tree, &age, &lastmodified, &mac, &meta, rules.mac_only_encrypted),
        Format::Json => emit_json(&tree, &age, &lastmodified, &mac, &meta, rules.mac_only_encrypted),
        Format::Dotenv => emit_dotenv(&tree, &age, &lastmodified, &mac, &meta, rules.mac_only_encrypted),
        Format::Ini => unreachable!("refused above"),
    }
    .into_bytes())
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// A YAML string: plain when that reads back as the same string, double-quoted otherwise.
fn yaml_str(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./@".contains(c))
        && !s.starts_with(['-', '.', '@'])
        && matches!(node::plain_scalar_kind(s), NodeKind::String(_));
    if safe { s.to_string() } else { json_str(s) }
}

fn yaml_scalar(n: &NodeKind) -> String {
    match n {
        NodeKind::String(s) => yaml_str(s),
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Float(f) => go_float(*f),
        NodeKind::Bool(b) => b.to_string(),
        _ => "null".into(),
    }
}

fn yaml_node(out: &mut String, n: &Node, indent: usize) {
    let pad = " ".repeat(indent);
    match &n.kind {
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                match &v.kind {
                    NodeKind::Map(m) if !m.is_empty() => {
                        let _ = writeln!(out, "{pad}{}:", yaml_str(&k.name));
                        yaml_node(out, v, indent + 4);
                    }
                    NodeKind::List(l) if !l.is_empty() => {
                        let _ = writeln!(out, "{pad}{}:", yaml_str(&k.name));
                        yaml_node(out, v, indent + 4);
                    }
                    NodeKind::Map(_) => {
                        let _ = writeln!(out, "{pad}{}: {{}}", yaml_str(&k.name));
                    }
                    NodeKind::List(_) => {
                        let _ = writeln!(out, "{pad}{}: []", yaml_str(&k.name));
                    }
                    other => {
                        let _ = writeln!(out, "{pad}{}: {}", yaml_str(&k.name), yaml_scalar(other));
                    }
                }
            }
        }
        NodeKind::List(items) => {
            for i in items {
                match &i.kind {
                    NodeKind::Map(_) | NodeKind::List(_) => {
                        let mut inner = String::new();
                        yaml_node(&mut inner, i, indent + 2);
                        let trimmed = inner.trim_start_matches(' ');
                        let _ = write!(out, "{pad}- {trimmed}");
                    }
                    other => {
                        let _ = writeln!(out, "{pad}- {}", yaml_scalar(other));
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", yaml_scalar(other));
        }
    }
}

fn emit_yaml(tree: &Node, age: &[(String, String)], lastmodified: &str, mac: &str, meta: &[(String, String)], mac_only: bool) -> String {
    let mut out = String::new();
    yaml_node(&mut out, tree, 0);
    out.push_str("sops:\n    age:\n");
    for (r, enc) in age {
        let _ = writeln!(out, "        - recipient: {r}\n          enc: |");
        for line in enc.lines() {
            let _ = writeln!(out, "            {line}");
        }
    }
    let _ = writeln!(out, "    lastmodified: {}\n    mac: {}", json_str(lastmodified), json_str(mac));
    if mac_only {
        out.push_str("    mac_only_encrypted: true\n");
    }
    for (k, v) in meta {
        let _ = writeln!(out, "    {k}: {}", json_str(v));
    }
    out.push_str("    version: 3.11.0\n");
    out
}

fn json_node(n: &Node) -> String {
    match &n.kind {
        NodeKind::Map(entries) => {
            let parts: Vec<String> = entries.iter().map(|(k, v)| format!("{}: {}", json_str(&k.name), json_node(v))).collect();
            format!("{{{}}}", parts.join(", "))
        }
        NodeKind::List(items) => format!("[{}]", items.iter().map(json_node).collect::<Vec<_>>().join(", ")),
        NodeKind::String(s) => json_str(s),
        other => yaml_scalar(other),
    }
}

fn emit_json(tree: &Node, age: &[(String, String)], lastmodified: &str, mac: &str, meta: &[(String, String)], mac_only: bool) -> String {
    let body = json_node(tree);
    let ages: Vec<String> = age.iter().map(|(r, e)| format!("{{\"recipient\": {}, \"enc\": {}}}", json_str(r), json_str(e))).collect();
    let mut sops = format!("\"age\": [{}], \"lastmodified\": {}, \"mac\": {}", ages.join(", "), json_str(lastmodified), json_str(mac));
    if mac_only {
        sops.push_str(", \"mac_only_encrypted\": true");
    }
    for (k, v) in meta {
        let _ = write!(sops, ", {}: {}", json_str(k), json_str(v));
    }
    sops.push_str(", \"version\": \"3.11.0\"");
    let inner = body.trim_start_matches('{').trim_end_matches('}');
    let sep = if inner.is_empty() { "" } else { ", " };
    format!("{{{inner}{sep}\"sops\": {{{sops}}}}}\n")
}

fn emit_dotenv(tree: &Node, age: &[(String, String)], lastmodified: &str, mac: &str, meta: &[(String, String)], mac_only: bool) -> String {
    let mut out = String::new();
    if let NodeKind::Map(entries) = &tree.kind {
        for (k, v) in entries {
            if let NodeKind::String(s) = &v.kind {
                let _ = writeln!(out, "{}={}", k.name, s.replace('\n', "\\n"));
            }
        }
    }
    for (i, (r, enc)) in age.iter().enumerate() {
        let _ = writeln!(out, "sops_age__list_{i}__map_enc={}", enc.replace('\n', "\\n"));
        let _ = writeln!(out, "sops_age__list_{i}__map_recipient={r}");
    }
    let _ = writeln!(out, "sops_lastmodified={lastmodified}\nsops_mac={mac}");
    if mac_only {
        out.push_str("sops_mac_only_encrypted=true\n");
    }
    for (k, v) in meta {
        let _ = writeln!(out, "sops_{k}={v}");
    }
    out.push_str("sops_version=3.11.0\n");
    out
}
