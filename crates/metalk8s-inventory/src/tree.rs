//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde stops at the first error and forgets positions; the checks in this crate need
//! every value with its span to report all problems at once. The tree is built from the
//! event stream of the parser serde-saphyr itself uses, without recursion, under explicit
//! limits on nesting depth and node count so that hostile input cannot exhaust the stack or
//! memory.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{
    Event, Marker, Parser, ScalarStyle, ScanError, Span as EventSpan, Tag,
};

use crate::diagnostics::{Finding, Span};

/// Deepest nesting of lists and mappings accepted; an inventory needs about six.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Most YAML nodes (scalars, lists, mappings, counting alias expansions) in one inventory;
/// a thousand-node cluster with storage needs well under this.
pub const MAX_NODES: usize = 1_000_000;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Scalar(Scalar),
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Scalar {
    pub text: String,
    /// Written without quotes or block indicator: only such scalars can be numbers, booleans
    /// or null.
    pub plain: bool,
}

impl Scalar {
    pub fn is_null(&self) -> bool {
        self.plain && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

impl Node {
    /// How the value reads in a message: "a string", "a list", ...
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Scalar(scalar) if scalar.is_null() => "nothing",
            Value::Scalar(scalar) if !scalar.plain => "a string",
            Value::Scalar(scalar) if matches!(scalar.text.as_str(), "true" | "false") => {
                "a boolean"
            }
            Value::Scalar(scalar) if looks_numeric(&scalar.text) => "a number",
            Value::Scalar(_) => "a string",
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(scalar) => Some(scalar),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.as_scalar().is_some_and(Scalar::is_null)
    }
}

/// Rust also parses `inf` and `NaN` as floats; YAML writes those differently, so only text
/// starting like a number counts.
fn looks_numeric(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'))
        && text.parse::<f64>().is_ok()
}

/// Parses one YAML document; `Ok(None)` when the text holds no document at all.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, Box<Finding>> {
    let options = serde_saphyr::granit_parser::options! {
        flow_nesting_limit: MAX_NESTING_DEPTH,
        block_nesting_limit: MAX_NESTING_DEPTH,
    };
    let mut builder = Builder::new(text);
    for event in Parser::new_from_str_with_options(text, options) {
        let (event, span) = event.map_err(|error| builder.syntax_error(&error))?;
        if builder.accept(event, span)? == Flow::Done {
            break;
        }
    }
    Ok(builder.root)
}

#[derive(PartialEq)]
enum Flow {
    More,
    Done,
}

enum Open {
    List {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct Builder<'text> {
    text: &'text str,
    open: Vec<Open>,
    root: Option<Node>,
    documents: usize,
    /// Anchored nodes with the number of nodes each holds, for alias expansion.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes in each open collection so far, to size anchored collections.
    counts: Vec<usize>,
    nodes: usize,
}

impl<'text> Builder<'text> {
    fn new(text: &'text str) -> Self {
        Builder {
            text,
            open: Vec::new(),
            root: None,
            documents: 0,
            anchors: HashMap::new(),
            counts: vec![0],
            nodes: 0,
        }
    }

    fn accept(&mut self, event: Event<'_>, span: EventSpan) -> Result<Flow, Box<Finding>> {
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.second_document(&span));
                }
            }
            Event::StreamEnd => return Ok(Flow::Done),
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain && !is_string_tag(tag.as_deref());
                self.check_tag(tag.as_deref(), &span)?;
                let node = Node {
                    value: Value::Scalar(Scalar {
                        text: text.into_owned(),
                        plain,
                    }),
                    span: self.span(&span),
                };
                self.complete(node, anchor, 1)?;
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.check_tag(tag.as_deref(), &span)?;
                self.push(
                    Open::List {
                        start: self.offset(&span.start),
                        anchor,
                        items: Vec::new(),
                    },
                    &span,
                )?;
            }
            Event::MappingStart(_, anchor, tag) => {
                self.check_tag(tag.as_deref(), &span)?;
                self.push(
                    Open::Map {
                        start: self.offset(&span.start),
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    },
                    &span,
                )?;
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(&span)?,
            Event::Alias(id) => self.alias(id, &span)?,
            _ => {}
        }
        Ok(Flow::More)
    }

    fn push(&mut self, open: Open, span: &EventSpan) -> Result<(), Box<Finding>> {
        if self.open.len() >= MAX_NESTING_DEPTH {
            return Err(Box::new(
                Finding::new(
                    "inventory::too-deep",
                    "",
                    self.span(span),
                    format!("lists and mappings are nested more than {MAX_NESTING_DEPTH} deep"),
                )
                .label("too deep")
                .help(
                    "an inventory nests about six levels deep; check the brackets and indentation",
                ),
            ));
        }
        self.count(1)?;
        self.open.push(open);
        self.counts.push(1);
        Ok(())
    }

    fn close(&mut self, span: &EventSpan) -> Result<(), Box<Finding>> {
        let end = self.offset(&span.end).max(self.offset(&span.start));
        let size = self.counts.pop().unwrap_or(1);
        let (value, start, anchor) = match self.open.pop() {
            Some(Open::List {
                start,
                anchor,
                items,
            }) => (Value::List(items), start, anchor),
            Some(Open::Map {
                start,
                anchor,
                entries,
                ..
            }) => (Value::Map(entries), start, anchor),
            None => return Ok(()),
        };
        let node = Node {
            value,
            span: start..end.max(start),
        };
        // Already counted when opened: only attach it.
        self.attach(node, anchor, size);
        Ok(())
    }

    fn complete(&mut self, node: Node, anchor: usize, size: usize) -> Result<(), Box<Finding>> {
        self.count(size)?;
        self.attach(node, anchor, size);
        Ok(())
    }

    fn attach(&mut self, node: Node, anchor: usize, size: usize) {
        if let Some(count) = self.counts.last_mut() {
            *count += size;
        }
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.open.last_mut() {
            None => self.root = Some(node),
            Some(Open::List { items, .. }) => items.push(node),
            Some(Open::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }

    fn count(&mut self, size: usize) -> Result<(), Box<Finding>> {
        self.nodes = self.nodes.saturating_add(size);
        if self.nodes > MAX_NODES {
            return Err(Box::new(
                Finding::new(
                    "inventory::too-large",
                    "",
                    0..0,
                    format!("the document holds more than {MAX_NODES} YAML values"),
                )
                .help("an inventory is a few thousand values at most; check for runaway aliases (`*name`)"),
            ));
        }
        Ok(())
    }

    fn alias(&mut self, id: usize, span: &EventSpan) -> Result<(), Box<Finding>> {
        let Some(size) = self.anchors.get(&id).map(|(_, size)| *size) else {
            return Err(Box::new(
                Finding::new(
                    "inventory::yaml-syntax",
                    "",
                    self.span(span),
                    "this alias refers to a list or mapping that contains it",
                )
                .label("recursive alias")
                .help("an alias (`*name`) may only repeat a value that is complete where the alias appears"),
            ));
        };
        // Counted before cloning, so that an alias bomb is stopped before it takes memory.
        self.count(size)?;
        let node = Node {
            span: self.span(span),
            ..self.anchors[&id].0.clone()
        };
        self.attach(node, 0, size);
        Ok(())
    }

    fn check_tag(&self, tag: Option<&Tag>, span: &EventSpan) -> Result<(), Box<Finding>> {
        match tag {
            Some(tag) if tag.is_custom() => Err(Box::new(
                Finding::new(
                    "inventory::yaml-tag",
                    "",
                    self.tag_span(span),
                    format!("unsupported YAML tag `{}`", tag.original()),
                )
                .label("custom tag")
                .help(
                    "remove the tag: an inventory holds plain strings, numbers, lists and mappings",
                ),
            )),
            _ => Ok(()),
        }
    }

    fn second_document(&self, span: &EventSpan) -> Box<Finding> {
        Box::new(
            Finding::new(
                "inventory::several-documents",
                "",
                self.span(span),
                "the file holds more than one YAML document",
            )
            .label("second document starts here")
            .help("an inventory is a single document: remove this `---` and what follows, or merge it into the first"),
        )
    }

    fn syntax_error(&self, error: &ScanError) -> Box<Finding> {
        let mut at = self.offset(error.marker());
        let reason = error.info();
        if reason.contains("tab") {
            // The parser reports where the token began; the tab itself is what to fix.
            if let Some(tab) = self.text[at..].find('\t') {
                at += tab;
            }
        }
        let end = self.text[at..]
            .chars()
            .next()
            .map_or(at, |c| at + c.len_utf8());
        let reason = if reason.is_empty() {
            "invalid syntax".to_owned()
        } else {
            reason
        };
        let help = if reason.contains("tab") {
            "YAML indents with spaces only: replace the tab with spaces".to_owned()
        } else if reason.contains("recursion limit") {
            format!(
                "an inventory nests about six levels deep; this goes past {MAX_NESTING_DEPTH}: check the brackets"
            )
        } else {
            "check the indentation (spaces, not tabs), quotes and brackets around this point"
                .to_owned()
        };
        Box::new(
            Finding::new(
                "inventory::yaml-syntax",
                "",
                at..end,
                format!("invalid YAML: {reason}"),
            )
            .label(reason)
            .help(help),
        )
    }

    /// From the tag (`!env`) to the end of the value it is on.
    fn tag_span(&self, span: &EventSpan) -> Span {
        let value = self.span(span);
        match &span.tag_start {
            Some(tag) => self.offset(tag).min(value.start)..value.end,
            None => value,
        }
    }

    fn span(&self, span: &EventSpan) -> Span {
        let start = self.offset(&span.start);
        start..self.offset(&span.end).max(start)
    }

    /// Byte offset of a parser marker. Parsers over a `&str` always give one; the character
    /// index is converted as a fallback so a position is never invented.
    fn offset(&self, marker: &Marker) -> usize {
        marker
            .byte_offset()
            .unwrap_or_else(|| {
                self.text
                    .char_indices()
                    .nth(marker.index())
                    .map_or(self.text.len(), |(at, _)| at)
            })
            .min(self.text.len())
    }
}

fn is_string_tag(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|tag| tag.is_yaml_core_schema_tag("str"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn spans_cover_scalars_and_keys() {
        let text = "name: demo\nnodes:\n  - a\n";
        let Value::Map(entries) = tree(text).value else {
            panic!("a mapping")
        };
        assert_eq!(&text[entries[0].0.span.clone()], "name");
        assert_eq!(&text[entries[0].1.span.clone()], "demo");
        let Value::List(items) = &entries[1].1.value else {
            panic!("a list")
        };
        assert_eq!(&text[items[0].span.clone()], "a");
    }

    #[test]
    fn quoted_scalars_are_not_plain() {
        let Value::Map(entries) = tree("a: '1'\nb: 1\nc: !!str 1\n").value else {
            panic!("a mapping")
        };
        let plain: Vec<bool> = entries
            .iter()
            .map(|(_, value)| value.as_scalar().unwrap().plain)
            .collect();
        assert_eq!(plain, [false, true, false]);
    }

    #[test]
    fn aliases_repeat_the_anchored_value() {
        let node = tree("a: &x [1, 2]\nb: *x\n");
        let Value::Map(entries) = node.value else {
            panic!("a mapping")
        };
        assert_eq!(entries[0].1.value, entries[1].1.value);
    }

    #[test]
    fn empty_text_has_no_document() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let text = "[".repeat(10_000);
        let finding = parse(&text).unwrap_err();
        assert!(finding.message.contains("nest") || finding.message.contains("recursion"));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let previous = level - 1;
            text.push_str(&format!(
                "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
            ));
        }
        let finding = parse(&text).unwrap_err();
        assert_eq!(finding.code, "inventory::too-large");
    }

    #[test]
    fn a_second_document_is_refused() {
        let finding = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(finding.code, "inventory::several-documents");
    }
}
