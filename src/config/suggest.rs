//! "Did you mean" suggestions.

/// The candidate closest to `word`, if one is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nearest_above(word, candidates, 0.8)
}

/// The resource address closest to `word`. Addresses share long prefixes (`host.file.`), so
/// only a near-identical one is suggested.
pub fn nearest_addr<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(distance, _)| *distance <= 2 + word.len() / 12)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

fn nearest_above<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>, threshold: f64) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= threshold)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn suggests_close_names_only() {
        assert_eq!(super::nearest("contnet", ["content", "path", "mode"]), Some("content"));
        assert_eq!(super::nearest("zzz", ["content", "path"]), None);
        assert_eq!(super::nearest_addr("host.file.mtod", ["host.file.motd", "host.file.x"]), Some("host.file.motd"));
        assert_eq!(super::nearest_addr("host.directory.etc", ["host.file.motd"]), None);
    }
}
