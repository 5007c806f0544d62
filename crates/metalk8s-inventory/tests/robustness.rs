//! Garbage in, a clear error out: never a panic, a stack overflow or a hang.

mod common;

use metalk8s_inventory::{InventoryError, MAX_INVENTORY_BYTES, load, parse, to_yaml};
use proptest::prelude::*;

fn codes(error: &InventoryError) -> Vec<&'static str> {
    error
        .problems()
        .iter()
        .map(|problem| problem.code)
        .collect()
}

fn valid_texts() -> Vec<String> {
    common::fixtures("valid", "yaml")
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect()
}

#[test]
fn deep_flow_nesting_is_refused() {
    for opener in ["[", "{a: ", "[{a: "] {
        let text = opener.repeat(10_000);
        let error = parse("deep.yaml", &text).unwrap_err();
        assert_eq!(codes(&error), ["inventory::yaml-syntax"], "{opener}");
    }
}

#[test]
fn deep_block_nesting_is_refused() {
    let text: String = (0..5_000)
        .map(|depth| format!("{}- \n", "  ".repeat(depth)))
        .collect();
    let error = parse("deep.yaml", &text).unwrap_err();
    assert_eq!(error.problems().len(), 1);
}

#[test]
fn huge_input_is_refused_before_parsing() {
    let text = "# padding\n".repeat(MAX_INVENTORY_BYTES / 10 + 1);
    let error = parse("huge.yaml", &text).unwrap_err();
    assert_eq!(codes(&error), ["inventory::too-large"]);
}

#[test]
fn huge_files_are_not_read_whole() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), vec![b'#'; MAX_INVENTORY_BYTES + 10]).unwrap();
    let error = load(file.path()).unwrap_err();
    assert_eq!(codes(&error), ["inventory::too-large"]);
}

#[test]
fn binary_files_are_reported_as_not_text() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"apiVersion: \xff\xfe\x00\x01 binary").unwrap();
    let error = load(file.path()).unwrap_err();
    assert_eq!(codes(&error), ["inventory::not-utf8"]);
    let problem = &error.problems()[0];
    assert_eq!((problem.line, problem.column), (1, 13));
}

#[test]
fn control_characters_are_a_syntax_error() {
    let error = parse("binary.yaml", "\u{0}\u{1}\u{2}\u{7f}").unwrap_err();
    assert_eq!(codes(&error), ["inventory::yaml-syntax"]);
}

#[test]
fn directories_are_read_errors() {
    let dir = tempfile::tempdir().unwrap();
    let error = load(dir.path()).unwrap_err();
    assert!(matches!(error, InventoryError::Read { .. }));
}

#[test]
fn thousands_of_problems_are_capped() {
    let mut text = String::from("apiVersion: metalk8s.io/v1alpha1\nkind: Inventory\n");
    for index in 0..500 {
        text.push_str(&format!("unknown{index}: x\n"));
    }
    let error = parse("many.yaml", &text).unwrap_err();
    assert_eq!(error.problems().len(), metalk8s_inventory::MAX_PROBLEMS);
    assert!(
        error.to_string().contains("(the first 100 are shown)"),
        "{error}"
    );
}

/// A change to a valid inventory: cut a range, insert a snippet, or repeat a line.
#[derive(Debug, Clone)]
enum Mutation {
    Cut { at: usize, len: usize },
    Insert { at: usize, snippet: String },
    RepeatLine { line: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippet = prop_oneof![
        Just(": ".to_owned()),
        Just("- ".to_owned()),
        Just("\n  ".to_owned()),
        Just("[".to_owned()),
        Just("}".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("\t".to_owned()),
        Just("'".to_owned()),
        Just("roles: [etcd]\n".to_owned()),
        Just("name: node-1\n".to_owned()),
        "[a-zA-Z0-9./:_-]{1,12}",
    ];
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Cut { at, len }),
        (any::<usize>(), snippet).prop_map(|(at, snippet)| Mutation::Insert { at, snippet }),
        any::<usize>().prop_map(|line| Mutation::RepeatLine { line }),
    ]
}

fn apply(text: &str, mutation: &Mutation) -> String {
    let boundary = |at: usize| {
        let mut at = at % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    match mutation {
        Mutation::Cut { at, len } => {
            let start = boundary(*at);
            let end = boundary(start.saturating_add(*len).min(text.len()));
            format!("{}{}", &text[..start], &text[end.max(start)..])
        }
        Mutation::Insert { at, snippet } => {
            let at = boundary(*at);
            format!("{}{snippet}{}", &text[..at], &text[at..])
        }
        Mutation::RepeatLine { line } => {
            let lines: Vec<&str> = text.lines().collect();
            let line = line % lines.len().max(1);
            let mut out: Vec<&str> = lines.clone();
            if let Some(repeated) = lines.get(line) {
                out.insert(line, repeated);
            }
            out.join("\n")
        }
    }
}

/// Whatever `parse` returns, it returns, and a success is a fixed point of `to_yaml`.
fn check(text: &str) -> Result<(), TestCaseError> {
    match parse("fuzz.yaml", text) {
        Ok(inventory) => {
            let again = parse("printed.yaml", &to_yaml(&inventory));
            prop_assert_eq!(again.ok(), Some(inventory));
        }
        Err(error) => {
            prop_assert!(!error.problems().is_empty());
            // Rendering must not panic either, whatever the spans are.
            let _ = common::render(&error);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[\\[\\]{}:,#&*!|>'\"?% \\n\\t\\-a-z0-9.]{0,300}") {
        check(&text)?;
    }

    #[test]
    fn mutated_inventories_never_panic(
        fixture in 0usize..5,
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let texts = valid_texts();
        let mut text = texts[fixture % texts.len()].clone();
        for mutation in &mutations {
            text = apply(&text, mutation);
        }
        check(&text)?;
    }
}
