//! "Did you mean" suggestions.

/// The candidate closest to `word`, if one is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn suggests_close_names_only() {
        assert_eq!(super::nearest("contnet", ["content", "path", "mode"]), Some("content"));
        assert_eq!(super::nearest("zzz", ["content", "path"]), None);
    }
}
