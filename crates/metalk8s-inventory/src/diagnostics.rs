//! What goes wrong when an inventory is read, in a shape both people (miette reports that
//! point at file:line:column) and programs (`problems()` for `-o json`) can use.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;

/// Byte range in the inventory text.
pub(crate) type Span = Range<usize>;

/// At most this many problems are kept: past it, the first ones are enough to act on and
/// rendering thousands of reports helps no one.
pub const MAX_PROBLEMS: usize = 100;

/// Why an inventory could not be turned into an [`Inventory`](metalk8s_model::Inventory).
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum InventoryError {
    #[error("cannot read inventory file {}", path.display())]
    #[diagnostic(
        code(inventory::read),
        help("check the path, and that the file is readable by the current user")
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{source_name} is not a valid inventory: {}", count_problems(problems.len(), *omitted))]
    #[diagnostic(
        code(inventory::invalid),
        help("fix each problem below; docs/inventory.md describes every field")
    )]
    Invalid {
        source_name: String,
        #[related]
        problems: Vec<Problem>,
        /// Problems found beyond [`MAX_PROBLEMS`] and left out.
        omitted: usize,
    },
}

fn count_problems(shown: usize, omitted: usize) -> String {
    let total = shown + omitted;
    let noun = if total == 1 { "problem" } else { "problems" };
    if omitted == 0 {
        format!("{total} {noun}")
    } else {
        format!("{total} {noun} (the first {shown} are shown)")
    }
}

impl InventoryError {
    /// Every problem found in the file, in source order; empty when the file could not be read.
    pub fn problems(&self) -> &[Problem] {
        match self {
            InventoryError::Read { .. } => &[],
            InventoryError::Invalid { problems, .. } => problems,
        }
    }
}

/// One thing wrong with an inventory, located in its source text.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g. `inventory::unknown-field`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
    /// Where in the document, e.g. `nodes[1].storage.volumes[0].lvm.size`; empty for the
    /// whole document.
    pub path: String,
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    #[serde(skip)]
    labels: Vec<LabeledSpan>,
    #[serde(skip)]
    source: NamedSource<Arc<str>>,
}

impl Problem {
    /// The labelled spans, the primary one first.
    pub fn labels(&self) -> &[LabeledSpan] {
        &self.labels
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.help))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
}

/// A problem before it is tied to the source text: what, where, and how to fix it.
#[derive(Clone, Debug)]
pub(crate) struct Finding {
    pub code: &'static str,
    pub message: String,
    pub help: String,
    pub path: String,
    pub span: Span,
    pub label: String,
    /// Other places worth seeing, such as the first of two duplicates.
    pub related: Vec<(Span, String)>,
}

impl Finding {
    pub fn new(code: &'static str, path: &str, span: Span, message: impl Into<String>) -> Self {
        Finding {
            code,
            message: message.into(),
            help: String::new(),
            path: path.to_owned(),
            span,
            label: String::new(),
            related: Vec::new(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    pub fn also(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

/// The inventory text under its file name, shared by every problem found in it.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    named: NamedSource<Arc<str>>,
    text: Arc<str>,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(name: &str, text: &str) -> Self {
        let text: Arc<str> = Arc::from(text);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Source {
            named: NamedSource::new(name, Arc::clone(&text)).with_language("yaml"),
            text,
            line_starts,
        }
    }

    pub fn name(&self) -> &str {
        self.named.name()
    }

    /// 1-based line and character column of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = self.floor_char_boundary(offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn floor_char_boundary(&self, mut offset: usize) -> usize {
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// The span cut at the end of its first line, so that a label on a whole mapping or
    /// list underlines its first line instead of drawing a box around the rest of the file.
    fn first_line_of(&self, span: &Span) -> Span {
        let start = self.floor_char_boundary(span.start.min(self.text.len()));
        let end = self.floor_char_boundary(span.end.clamp(start, self.text.len()));
        let line_end = self.text[start..end]
            .find('\n')
            .map_or(end, |at| start + at);
        let trimmed = self.text[start..line_end].trim_end().len();
        start..start + trimmed
    }

    pub fn problem(&self, finding: Finding) -> Problem {
        let primary = self.first_line_of(&finding.span);
        let (line, column) = self.line_column(primary.start);
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some(finding.label).filter(|label| !label.is_empty()),
            primary,
        )];
        for (span, label) in finding.related {
            labels.push(LabeledSpan::new_with_span(
                Some(label),
                self.first_line_of(&span),
            ));
        }
        Problem {
            code: finding.code,
            message: finding.message,
            help: finding.help,
            path: finding.path,
            line,
            column,
            labels,
            source: self.named.clone(),
        }
    }

    /// The error holding every finding, in source order.
    pub fn invalid(&self, mut findings: Vec<Finding>) -> InventoryError {
        findings.sort_by_key(|finding| finding.span.start);
        let omitted = findings.len().saturating_sub(MAX_PROBLEMS);
        findings.truncate(MAX_PROBLEMS);
        InventoryError::Invalid {
            source_name: self.name().to_owned(),
            problems: findings
                .into_iter()
                .map(|finding| self.problem(finding))
                .collect(),
            omitted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters_from_one() {
        let source = Source::new("x.yaml", "a: 1\nbé: [x]\n");
        assert_eq!(source.line_column(0), (1, 1));
        assert_eq!(source.line_column(5), (2, 1));
        // `[` comes after the two-byte `é`: byte 10, character column 5.
        assert_eq!(source.line_column(10), (2, 5));
    }

    #[test]
    fn labels_stop_at_the_end_of_the_first_line() {
        let source = Source::new("x.yaml", "key:\n  a: 1\n  b: 2\n");
        let problem = source.problem(Finding::new("test", "key", 7..19, "boom"));
        let label = &problem.labels()[0];
        assert_eq!((label.offset(), label.len()), (7, 4));
    }
}
