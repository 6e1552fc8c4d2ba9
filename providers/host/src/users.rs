//! User and group names from `/etc/passwd` and `/etc/group`.

use std::collections::HashMap;

/// Name ↔ id tables of one machine.
#[derive(Debug, Default)]
pub struct Users {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Users {
    /// Read the local tables; missing files give empty tables (ids are shown as numbers).
    pub fn load_local() -> Self {
        Self {
            users: parse(&fs_err::read_to_string("/etc/passwd").unwrap_or_default()),
            groups: parse(&fs_err::read_to_string("/etc/group").unwrap_or_default()),
        }
    }

    /// Name of a user id, or the id itself.
    pub fn user_name(&self, uid: u32) -> String {
        self.users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }

    /// Name of a group id, or the id itself.
    pub fn group_name(&self, gid: u32) -> String {
        self.groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string())
    }

    /// Id of a user name (or numeric string).
    pub fn uid(&self, name: &str) -> Option<u32> {
        name.parse().ok().or_else(|| self.users.iter().find(|(_, n)| *n == name).map(|(id, _)| *id))
    }

    /// Id of a group name (or numeric string).
    pub fn gid(&self, name: &str) -> Option<u32> {
        name.parse().ok().or_else(|| self.groups.iter().find(|(_, n)| *n == name).map(|(id, _)| *id))
    }
}

fn parse(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?;
            let id = parts.nth(1)?.parse().ok()?;
            Some((id, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_passwd_lines() {
        let t = super::parse("root:x:0:0:root:/root:/bin/bash\nbad line\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n");
        assert_eq!(t.get(&0).map(String::as_str), Some("root"));
        assert_eq!(t.get(&33).map(String::as_str), Some("www-data"));
        assert_eq!(t.len(), 2);
    }
}
