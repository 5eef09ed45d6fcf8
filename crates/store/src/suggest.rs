//! "did you mean" for mistyped image names.

/// Levenshtein distance between two short names.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within two edits (and less than half the name).
pub fn closest<'a>(wanted: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (distance(wanted, c), c))
        .filter(|(d, c)| *d <= 2 && *d * 2 < c.chars().count().max(wanted.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

/// `image "alpin" not found (did you mean "alpine"?)`
pub fn not_found(what: &str, wanted: &str, candidates: &[String]) -> String {
    match closest(wanted, candidates) {
        Some(c) => format!("{what} {wanted:?} not found (did you mean {c:?}?)"),
        None => format!("{what} {wanted:?} not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("alpin", "alpine"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let imgs = vec!["alpine".to_string(), "busybox".to_string()];
        assert_eq!(
            not_found("image", "alpin", &imgs),
            "image \"alpin\" not found (did you mean \"alpine\"?)"
        );
        assert_eq!(not_found("image", "zzz", &imgs), "image \"zzz\" not found");
        assert_eq!(closest("ab", &["xy".to_string()]), None);
    }
}
