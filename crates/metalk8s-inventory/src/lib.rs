//! Reads the inventory: the one file an operator writes to describe a cluster.
//!
//! This crate sits on top of `metalk8s-model` in the layers of DESIGN.md: it turns an
//! inventory file into the fully defaulted [`Inventory`] the planner consumes, or into a
//! list of every problem found, each pointing at file:line:column with a fix. It reads
//! files and nothing else.
//!
//! - [`load`] / [`parse`]: YAML → [`Inventory`], or an [`InventoryError`] whose
//!   [`problems`](InventoryError::problems) are all the problems at once (as miette
//!   diagnostics and as plain data for `-o json`).
//! - [`to_yaml`]: the defaulted form, for `metalk8s inventory show`.
//! - [`json_schema`]: for `metalk8s inventory schema` and editors.
//! - [`import`]: Kubespray and MetalK8s 1.x Ansible INI inventories → [`Inventory`].
//!
//! Reading happens in three passes: the YAML text becomes a tree that keeps every span
//! (`tree`); the tree is checked field by field against the shape of an inventory
//! (`shape`, `decode`, `scalars`) and read into the model types with their defaults; and
//! checks across values run on the result (`validate`), skipping values already reported
//! (`paths`). Every problem becomes a miette diagnostic (`diagnostics`).

mod decode;
mod diagnostics;
pub mod import;
mod names;
mod paths;
mod scalars;
mod schema;
mod shape;
mod suggest;
mod tree;
mod validate;
mod values;

use std::io::Read;
use std::path::Path;

use metalk8s_model::Inventory;
use metalk8s_model::inventory::Prechecks;

use diagnostics::{Finding, Source};

pub use diagnostics::{InventoryError, MAX_PROBLEMS, Problem};
pub use schema::json_schema;
pub use tree::MAX_NESTING_DEPTH;

/// Largest inventory file read: a few hundred nodes with storage take well under 1 MiB.
pub const MAX_INVENTORY_BYTES: usize = 4 << 20;

/// Reads and checks the inventory file at `path`.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let read_error = |source| InventoryError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            // One byte past the limit is enough to know the file is too large.
            file.take(MAX_INVENTORY_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(read_error)?;
    let name = path.display().to_string();
    let mut inventory = match String::from_utf8(bytes) {
        Ok(text) => parse(&name, &text)?,
        Err(error) => return Err(not_utf8(&name, &error)),
    };
    if let Some(directory) = path.parent() {
        resolve_relative_paths(&mut inventory, directory);
    }
    Ok(inventory)
}

/// Paths written in an inventory are relative to the inventory file, wherever metalk8s is
/// run from; `~/` paths are left for the transport to expand for the user who connects.
fn resolve_relative_paths(inventory: &mut Inventory, directory: &Path) {
    let resolve = |path: &mut Option<String>| {
        if let Some(relative) = path
            .as_ref()
            .filter(|p| !p.starts_with('~') && Path::new(p).is_relative())
        {
            *path = Some(directory.join(relative).display().to_string());
        }
    };
    resolve(&mut inventory.ssh.identity_file);
    resolve(&mut inventory.ssh.known_hosts_file);
    for node in &mut inventory.nodes {
        resolve(&mut node.ssh.identity_file);
    }
}

/// Checks inventory `text`, read from `source_name` (used in messages), and returns it with
/// every default applied.
pub fn parse(source_name: &str, text: &str) -> Result<Inventory, InventoryError> {
    if text.len() > MAX_INVENTORY_BYTES {
        return Err(too_large(source_name, text));
    }
    let source = Source::new(source_name, text);
    let root = match tree::parse(text) {
        Ok(Some(root)) if !root.is_null() => root,
        Ok(_) => return Err(source.invalid(vec![empty_document()])),
        Err(finding) => return Err(source.invalid(vec![*finding])),
    };
    let mut decoded = decode::decode(&root, &shape::INVENTORY);
    fill_default_requirements(&mut decoded.json);
    let mut findings = std::mem::take(&mut decoded.findings);
    match serde_json::from_value::<Inventory>(decoded.json.clone()) {
        Ok(inventory) => {
            findings.extend(validate::validate(&inventory, &decoded));
            if findings.is_empty() {
                return Ok(inventory);
            }
        }
        // The shape pass only lets through what the model reads; reaching this is a bug
        // here, still reported as a problem rather than a panic.
        Err(error) => findings.push(
            Finding::new(
                "inventory::internal",
                "",
                root.span.clone(),
                format!("internal error: the checked inventory does not fit the model: {error}"),
            )
            .help("please report this bug with the inventory file"),
        ),
    }
    Err(source.invalid(findings))
}

/// The inventory in YAML with every default written out, as `metalk8s inventory show`
/// prints it; [`parse`] reads it back to the same value.
pub fn to_yaml(inventory: &Inventory) -> String {
    serde_saphyr::to_string(inventory)
        .expect("an Inventory holds only strings, numbers, lists and maps, which always serialize")
}

/// A role left out of `prechecks.requirements` keeps its default requirement, so that
/// raising one role's minimum does not silently drop the others.
fn fill_default_requirements(json: &mut serde_json::Value) {
    let Some(requirements) = json
        .pointer_mut("/prechecks/requirements")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let defaults = serde_json::to_value(Prechecks::default().requirements)
        .expect("default requirements serialize to JSON");
    if let serde_json::Value::Object(defaults) = defaults {
        for (role, requirement) in defaults {
            requirements.entry(role).or_insert(requirement);
        }
    }
}

fn empty_document() -> Finding {
    Finding::new(
        "inventory::empty",
        "",
        0..0,
        "the inventory is empty",
    )
    .label("no YAML document in this file")
    .help(format!(
        "start from the example in docs/inventory.md: `apiVersion: {}`, `kind: {}`, `name`, `networks` and `nodes`",
        metalk8s_model::inventory::API_VERSION,
        metalk8s_model::inventory::KIND
    ))
}

fn too_large(source_name: &str, text: &str) -> InventoryError {
    // Only the start is kept for the report: the rest is not worth holding in memory.
    let head = text.lines().next().unwrap_or_default();
    let head = &head[..floor_boundary(head, 200)];
    Source::new(source_name, head).invalid(vec![
        Finding::new(
            "inventory::too-large",
            "",
            0..head.len(),
            format!(
                "the inventory is larger than {} MiB",
                MAX_INVENTORY_BYTES >> 20
            ),
        )
        .help("an inventory of even a few hundred nodes is far smaller: check that this is the right file"),
    ])
}

fn not_utf8(source_name: &str, error: &std::string::FromUtf8Error) -> InventoryError {
    let valid = error.utf8_error().valid_up_to();
    let text = String::from_utf8_lossy(error.as_bytes());
    // In the lossy text every byte before the first bad one is unchanged.
    Source::new(source_name, &text).invalid(vec![
        Finding::new(
            "inventory::not-utf8",
            "",
            valid..valid + 1,
            format!("the inventory is not UTF-8 text (invalid byte at offset {valid})"),
        )
        .label("not UTF-8")
        .help("save the file as UTF-8; is it the right file, not a binary or an archive?"),
    ])
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}
