//! Paths naming a value in the document (`nodes[1].storage.volumes[0].name`), where each
//! was written, and which were found wrong.

use std::collections::HashMap;

use crate::diagnostics::Span;

/// Where each path (`nodes[1].name`) was written: the key and the value.
#[derive(Default)]
pub(crate) struct SpanIndex {
    entries: HashMap<String, (Option<Span>, Span)>,
}

impl SpanIndex {
    pub fn insert(&mut self, path: &str, key: Option<Span>, value: Span) {
        self.entries.insert(path.to_owned(), (key, value));
    }

    /// The span of the value at `path`, or of its closest written ancestor when the value
    /// was left out (a default).
    pub fn value(&self, path: &str) -> Span {
        self.lookup(path, |(_, value)| value.clone())
    }

    /// The span of the key naming `path`, or of the value when it has none (list items).
    pub fn key(&self, path: &str) -> Span {
        self.lookup(path, |(key, value)| {
            key.clone().unwrap_or_else(|| value.clone())
        })
    }

    pub fn has(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    fn lookup(&self, path: &str, pick: impl Fn(&(Option<Span>, Span)) -> Span) -> Span {
        let mut path = path;
        loop {
            if let Some(entry) = self.entries.get(path) {
                return pick(entry);
            }
            match parent(path) {
                Some(up) => path = up,
                None => return 0..0,
            }
        }
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = if path.ends_with(']') {
        path.rfind('[')
    } else {
        path.rfind('.')
    };
    Some(&path[..cut.unwrap_or(0)])
}

/// Paths whose values were wrong and replaced by placeholders.
#[derive(Default)]
pub(crate) struct Tainted {
    paths: Vec<String>,
}

impl Tainted {
    pub fn mark(&mut self, path: &str) {
        self.paths.push(path.to_owned());
    }

    /// Whether the value at `path` is exactly as written: neither it, nor anything in it,
    /// nor anything holding it was replaced.
    pub fn is_clean(&self, path: &str) -> bool {
        !self
            .paths
            .iter()
            .any(|tainted| contains(tainted, path) || contains(path, tainted))
    }
}

/// Whether `inner` is `outer` or a path below it.
fn contains(outer: &str, inner: &str) -> bool {
    outer.is_empty()
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

pub(crate) fn field_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

pub(crate) fn item_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

pub(crate) fn entry_path(parent: &str, key: &str) -> String {
    format!("{parent}[{key:?}]")
}

/// How a path reads in a message.
pub(crate) fn place(path: &str) -> String {
    if path.is_empty() {
        "the inventory".to_owned()
    } else {
        format!("`{path}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_covers_ancestors_and_descendants_only() {
        let mut tainted = Tainted::default();
        tainted.mark("nodes[1].roles[0]");
        assert!(!tainted.is_clean("nodes[1].roles"));
        assert!(!tainted.is_clean("nodes[1].roles[0]"));
        assert!(!tainted.is_clean("nodes"));
        assert!(tainted.is_clean("nodes[1].name"));
        assert!(tainted.is_clean("nodes[10].roles"));
    }

    #[test]
    fn spans_fall_back_to_the_closest_written_ancestor() {
        let mut spans = SpanIndex::default();
        spans.insert("networks", Some(0..8), 10..20);
        assert_eq!(spans.value("networks.pods"), 10..20);
        assert_eq!(spans.key("networks.pods"), 0..8);
        assert_eq!(spans.value("nodes[0].labels[\"a.b/c\"]"), 0..0);
    }
}
