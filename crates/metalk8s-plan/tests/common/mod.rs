//! Helpers shared by the integration tests: fixture inventories and facts.
#![allow(dead_code)] // each test crate uses part of these helpers

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use metalk8s_model::{Facts, Inventory};

pub fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", root.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

pub fn fixture(name: &str) -> (Inventory, BTreeMap<String, Facts>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    (inventory(&dir), facts(&dir))
}

pub fn inventory(dir: &Path) -> Inventory {
    let path = dir.join("inventory.yaml");
    metalk8s_inventory::load(&path)
        .unwrap_or_else(|error| panic!("{} is not valid: {error:?}", path.display()))
}

/// facts.yaml holds, per node, only the facts the planner reads; the others keep their
/// defaults, as if the node had reported nothing about them.
pub fn facts(dir: &Path) -> BTreeMap<String, Facts> {
    let path = dir.join("facts.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let written: BTreeMap<String, serde_json::Value> =
        serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    written
        .into_iter()
        .map(|(node, partial)| {
            let mut facts = serde_json::to_value(Facts::default()).unwrap();
            merge(&mut facts, partial);
            let facts = serde_json::from_value(facts)
                .unwrap_or_else(|error| panic!("{}: facts of {node}: {error}", path.display()));
            (node, facts)
        })
        .collect()
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                merge(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (base, over) => *base = over,
    }
}
