//! The subset of OpenSSH's `ssh_config` that tend honours: for the first `Host` block whose
//! patterns match, `HostName`, `User`, `Port`, `IdentityFile`, `UserKnownHostsFile` and
//! `ProxyJump`; like OpenSSH, the first value found for a keyword wins.

use std::path::Path;

/// Settings found for one host alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// `HostName`.
    pub hostname: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// First `IdentityFile`.
    pub identity_file: Option<String>,
    /// First file of `UserKnownHostsFile`.
    pub known_hosts: Option<String>,
    /// `ProxyJump` (first hop).
    pub proxy_jump: Option<String>,
}

fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

fn matches(patterns: &str, alias: &str) -> bool {
    let mut hit = false;
    for p in patterns.split_whitespace() {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, alias) {
                return false;
            }
        } else if glob(p, alias) {
            hit = true;
        }
    }
    hit
}

/// Look `alias` up in the text of an `ssh_config` file.
pub fn lookup_text(text: &str, alias: &str) -> Found {
    let mut found = Found::default();
    let mut active = true; // keywords before any Host block apply to every host
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.trim_start_matches(|c: char| c.is_whitespace() || c == '=').trim().trim_matches('"').to_string()),
            None => continue,
        };
        match key.as_str() {
            "host" => active = matches(&value, alias),
            "match" => active = false,
            _ if !active => {}
            "hostname" => {
                found.hostname.get_or_insert(value.replace("%h", alias));
            }
            "user" => {
                found.user.get_or_insert(value);
            }
            "port" if found.port.is_none() => found.port = value.parse().ok(),
            "identityfile" => {
                found.identity_file.get_or_insert(value);
            }
            "userknownhostsfile" => {
                found.known_hosts.get_or_insert(value.split_whitespace().next().unwrap_or_default().to_string());
            }
            "proxyjump" if value != "none" => {
                found.proxy_jump.get_or_insert(value.split(',').next().unwrap_or_default().to_string());
            }
            _ => {}
        }
    }
    found
}

/// Look `alias` up in an `ssh_config` file; nothing found when it cannot be read.
pub fn lookup(path: &Path, alias: &str) -> Found {
    fs_err::read_to_string(path).map(|t| lookup_text(&t, alias)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_of_the_first_matching_block_wins() {
        let text =
            "Host web-*\n  HostName %h.internal\n  User deploy\n  Port 2222\n  ProxyJump bastion\nHost *\n  User root\n  IdentityFile ~/.ssh/id_ed25519\n";
        let f = lookup_text(text, "web-1");
        assert_eq!(f.hostname.as_deref(), Some("web-1.internal"));
        assert_eq!(f.user.as_deref(), Some("deploy"));
        assert_eq!(f.port, Some(2222));
        assert_eq!(f.proxy_jump.as_deref(), Some("bastion"));
        assert_eq!(f.identity_file.as_deref(), Some("~/.ssh/id_ed25519"));
        let other = lookup_text(text, "db");
        assert_eq!((other.user.as_deref(), other.hostname), (Some("root"), None));
        assert!(!matches("* !db", "db"));
    }
}
