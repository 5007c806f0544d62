//! "Did you mean ...?" for misspelt field names and values.

/// The candidate closest to `word`, if one is close enough to be a likely typo.
///
/// Case, `_` and `-` are ignored first, so that `control_plane`, `ControlPlane` and
/// `control-plane` all find `controlPlane`; then an edit distance of about a third of the
/// word catches ordinary typos without suggesting unrelated names.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word_key = normalize(word);
    if let Some(exact) = candidates.iter().find(|c| normalize(c) == word_key) {
        return Some(exact);
    }
    candidates
        .iter()
        .map(|candidate| {
            let key = normalize(candidate);
            let distance = strsim::damerau_levenshtein(&word_key, &key);
            let similarity = strsim::jaro_winkler(&word_key, &key);
            (candidate, distance, similarity, key.chars().count())
        })
        .filter(|(_, distance, _, len)| *distance <= (len / 3).max(1))
        .min_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(candidate, ..)| *candidate)
}

fn normalize(word: &str) -> String {
    word.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// `a`, `b` or `c`, each in backticks.
pub(crate) fn one_of(candidates: &[&str]) -> String {
    let quoted: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((only, [])) => only.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &["controlPlane", "workloadPlane", "pods", "services"];

    #[test]
    fn finds_case_and_separator_variants() {
        assert_eq!(closest("control_plane", FIELDS), Some("controlPlane"));
        assert_eq!(closest("WorkloadPlane", FIELDS), Some("workloadPlane"));
    }

    #[test]
    fn finds_typos_but_not_unrelated_words() {
        assert_eq!(closest("controlPlan", FIELDS), Some("controlPlane"));
        assert_eq!(closest("servcies", FIELDS), Some("services"));
        assert_eq!(closest("storage", FIELDS), None);
    }

    #[test]
    fn lists_alternatives() {
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
