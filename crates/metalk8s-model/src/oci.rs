//! The names of the OCI distribution specification: repository names and tags. One grammar
//! for everything that names an image: the bundle spec refuses what the bootstrap node's
//! registry would refuse to serve, because both ask these functions.

/// Longest repository name accepted (the specification asks clients to stay under 255
/// characters with the registry's host name included).
pub const MAX_NAME_LENGTH: usize = 255;

/// Longest tag accepted.
pub const MAX_TAG_LENGTH: usize = 128;

/// What a repository name is made of, for messages.
pub const REPOSITORY_NAME_GRAMMAR: &str = "lower-case letters and digits, joined by `.`, `_`, `__` \
     or dashes, in components separated by `/`, like `pause` or `calico/node`";

/// What a tag is made of, for messages.
pub const TAG_GRAMMAR: &str = "letters, digits, `_`, `.` and `-`, at most 128, not starting \
     with `.` or `-`";

/// Whether `name` is a repository name of the distribution specification:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most
/// [`MAX_NAME_LENGTH`] long. None accepts `.`, `..`, `%` or `\` as a path component, so a
/// valid name can name a directory.
pub fn is_repository_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LENGTH && name.split('/').all(is_name_component)
}

fn is_name_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alphanumeric = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let mut index = 0;
    loop {
        // A run of [a-z0-9]+ ...
        let start = index;
        while index < bytes.len() && alphanumeric(bytes[index]) {
            index += 1;
        }
        if index == start {
            return false;
        }
        if index == bytes.len() {
            return true;
        }
        // ... then a separator: `.`, `_`, `__` or `-+`, and another run must follow.
        match bytes[index] {
            b'.' => index += 1,
            b'_' => {
                index += 1;
                if bytes.get(index) == Some(&b'_') {
                    index += 1;
                }
            }
            b'-' => {
                while bytes.get(index) == Some(&b'-') {
                    index += 1;
                }
            }
            _ => return false,
        }
    }
}

/// Whether `tag` matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    match bytes.next() {
        Some(first) if word(first) => {}
        _ => return false,
    }
    tag.len() <= MAX_TAG_LENGTH && bytes.all(|byte| word(byte) || byte == b'.' || byte == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_specification() {
        for good in [
            "nginx",
            "library/nginx",
            "a/b/c",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo---bar",
            "k8s.gcr.io/pause",
            "calico/node",
            "0",
        ] {
            assert!(is_repository_name(good), "{good:?} refused");
        }
        for bad in [
            "",
            "..",
            ".",
            "../etc",
            "a/../b",
            "a/./b",
            "/abs",
            "a//b",
            "a/",
            "Upper",
            "foo___bar",
            "foo-",
            "-foo",
            "foo.",
            "foo..bar",
            "foo_-bar",
            "foo.-bar",
            "%2e%2e",
            "a\\b",
            "_catalog",
        ] {
            assert!(!is_repository_name(bad), "{bad:?} accepted");
        }
        assert!(is_repository_name(&"a".repeat(MAX_NAME_LENGTH)));
        assert!(!is_repository_name(&"a".repeat(MAX_NAME_LENGTH + 1)));
    }

    #[test]
    fn tags_follow_the_specification() {
        for good in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(is_tag(good), "{good:?} refused");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "-x",
            "a/b",
            "a:b",
            "%2e",
            &"t".repeat(129),
        ] {
            assert!(!is_tag(bad), "{bad:?} accepted");
        }
    }
}
