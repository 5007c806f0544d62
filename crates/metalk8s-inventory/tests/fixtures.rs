//! Every fixture inventory: the valid ones parse (and survive a round trip through
//! `to_yaml`), the invalid ones fail with the problems their `# expect:` line names, rendered
//! as the snapshot shows.

mod common;

use std::collections::BTreeSet;

use metalk8s_inventory::{InventoryError, parse, to_yaml};

#[test]
fn valid_inventories_parse_and_round_trip() {
    let paths = common::fixtures("valid", "yaml");
    assert!(paths.len() >= 5, "valid fixtures are missing");
    for path in paths {
        let name = format!("valid/{}.yaml", common::stem(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        let inventory = parse(&name, &text)
            .unwrap_or_else(|error| panic!("{name} should be valid:\n{}", common::render(&error)));
        let printed = to_yaml(&inventory);
        let reread = parse("printed", &printed).unwrap_or_else(|error| {
            panic!(
                "{name} printed back does not parse:\n{printed}\n{}",
                common::render(&error)
            )
        });
        assert_eq!(reread, inventory, "{name} changed through to_yaml");
    }
}

#[test]
fn defaults_are_written_out() {
    for stem in ["minimal", "every-field"] {
        let path = format!(
            "{}/tests/fixtures/valid/{stem}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let inventory = metalk8s_inventory::load(path.as_ref()).unwrap();
        insta::assert_snapshot!(format!("defaulted-{stem}"), to_yaml(&inventory));
    }
}

#[test]
fn invalid_inventories_report_every_problem() {
    let paths = common::fixtures("invalid", "yaml");
    assert!(paths.len() >= 35, "at least 35 invalid fixtures expected");
    let mut wrong_codes = Vec::new();
    for path in paths {
        let stem = common::stem(&path);
        let name = format!("invalid/{stem}.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let error = match parse(&name, &text) {
            Ok(_) => panic!("{name} should be invalid"),
            Err(error) => error,
        };
        assert!(matches!(error, InventoryError::Invalid { .. }));
        let found: BTreeSet<&str> = error.problems().iter().map(|p| p.code).collect();
        let expected = expected_codes(&text);
        if found != expected {
            wrong_codes.push(format!("{name}: expected {expected:?}, found {found:?}"));
        }
        for problem in error.problems() {
            assert!(
                problem.line >= 1 && problem.column >= 1,
                "{name}: no position"
            );
            assert!(
                !problem.help.is_empty(),
                "{name}: `{}` has no help",
                problem.message
            );
        }
        insta::assert_snapshot!(format!("invalid-{stem}"), common::render(&error));
    }
    assert!(wrong_codes.is_empty(), "{}", wrong_codes.join("\n"));
}

/// The codes listed on the fixture's `# expect:` line; an empty file expects `empty`.
fn expected_codes(text: &str) -> BTreeSet<&str> {
    let Some(line) = text.lines().find_map(|line| line.strip_prefix("# expect:")) else {
        return BTreeSet::from(["inventory::empty"]);
    };
    line.split(',').map(str::trim).collect()
}

#[test]
fn problems_are_plain_data_for_json_output() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/invalid/many-problems.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let error = parse("many-problems.yaml", &text).unwrap_err();
    let json = serde_json::to_value(error.problems()).unwrap();
    insta::assert_json_snapshot!("problems-json", json);
}

#[test]
fn unreadable_files_name_their_path() {
    let error = metalk8s_inventory::load("/nonexistent/inventory.yaml".as_ref()).unwrap_err();
    assert!(matches!(error, InventoryError::Read { .. }));
    assert_eq!(
        error.to_string(),
        "cannot read inventory file /nonexistent/inventory.yaml"
    );
    assert!(std::error::Error::source(&error).is_some());
    assert!(error.problems().is_empty());
}

/// The examples in the reference documentation stay valid.
#[test]
fn documented_examples_are_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/inventory.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let examples: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("\n```").next())
        .collect();
    assert!(examples.len() >= 2, "no examples found in {path}");
    for example in examples {
        if let Err(error) = parse("docs/inventory.md", example) {
            panic!("{}", common::render(&error));
        }
    }
}
