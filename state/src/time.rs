//! Timestamps as RFC 3339 UTC strings.

/// The current time, e.g. `2026-11-22T02:04:45Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
