//! Calico's objects from upstream's release manifest (`tests/fixtures/calico-v3.32.1.yaml`,
//! the file served at
//! https://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/calico.yaml,
//! checked by its sha256 below): every object validates with `kubernetes-validate
//! --strict` for 1.35-1.37 (the CRDs included), every custom resource metalk8s adds
//! validates against its CRD's `openAPIV3Schema` from the same manifest, and the edits are
//! snapshot per variant as a diff against upstream, which also shows that nothing else
//! changed.

mod common;

use std::collections::BTreeMap;

use jsonschema::Validator;
use metalk8s_kubernetes::calico::{self, CalicoSettings};
use metalk8s_kubernetes::yaml;
use metalk8s_model::inventory::Encapsulation;
use serde_json::{Value, json};

const MANIFEST: &str = include_str!("fixtures/calico-v3.32.1.yaml");
const MANIFEST_SHA256: &str = "a1df919d9721cf667accdc3e72848911b0cb25cfab7d2478ad0c996302c95744";
const REGISTRY: &str = "10.100.0.11:5000";

fn settings(encapsulation: Encapsulation, wireguard: bool) -> CalicoSettings {
    CalicoSettings {
        pods: "10.233.0.0/16".parse().unwrap(),
        workload_plane: vec![
            "10.200.0.0/16".parse().unwrap(),
            "10.201.0.0/24".parse().unwrap(),
            "fd00:200::/64".parse().unwrap(),
        ],
        encapsulation,
        wireguard,
        workload_mtu: 1500,
        image_repository: REGISTRY.to_owned(),
    }
}

fn variants() -> [(&'static str, CalicoSettings); 3] {
    [
        ("ipip", settings(Encapsulation::Ipip, false)),
        ("vxlan", settings(Encapsulation::Vxlan, false)),
        ("wireguard", settings(Encapsulation::Ipip, true)),
    ]
}

fn upstream() -> Vec<Value> {
    yaml::parse_documents(MANIFEST)
        .unwrap()
        .into_iter()
        .filter(|document| !document.is_null())
        .collect()
}

fn is_custom(object: &Value) -> bool {
    object["apiVersion"] == calico::CRD_API_VERSION
}

#[test]
fn the_fixture_is_the_upstream_release_manifest() {
    use sha2::{Digest, Sha256};
    assert_eq!(
        hex::encode(Sha256::digest(MANIFEST.as_bytes())),
        MANIFEST_SHA256
    );
}

#[test]
fn every_object_validates_against_the_api_schemas_of_each_minor() {
    let Some(tool) = common::validate_tool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut documents = 0;
    for (label, settings) in [
        ("ipip", settings(Encapsulation::Ipip, false)),
        ("vxlan-wireguard", settings(Encapsulation::Vxlan, true)),
    ] {
        let objects: Vec<Value> = calico::objects(MANIFEST, &settings)
            .unwrap()
            .into_iter()
            .filter(|object| !is_custom(object))
            .collect();
        documents += objects.len();
        let path = dir.path().join(format!("{label}.yaml"));
        std::fs::write(&path, yaml::documents(&objects)).unwrap();
        files.push(path);
    }
    common::validate_strict(&tool, &files, documents);
}

/// The `openAPIV3Schema` of the CRD of `kind` in the manifest, made strict the way the API
/// server is with `fieldValidation=Strict`: a field the schema does not declare is refused
/// (jsonschema would accept it; the API server prunes it silently otherwise). Also the
/// names of the fields whose `pattern` had to be left out: Go's RE2 takes inline flags
/// (`(?i)`), jsonschema's ECMAScript patterns do not.
fn crd_schema(kind: &str) -> (Validator, Vec<String>) {
    let crd = upstream()
        .into_iter()
        .find(|document| {
            document["kind"] == "CustomResourceDefinition"
                && document["spec"]["group"] == "crd.projectcalico.org"
                && document["spec"]["names"]["kind"] == kind
        })
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|version| version["name"] == "v1")
        .unwrap();
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    let mut unchecked = Vec::new();
    close_objects(&mut schema, "", &mut unchecked);
    let validator =
        jsonschema::draft4::new(&schema).unwrap_or_else(|error| panic!("{kind}: {error}"));
    (validator, unchecked)
}

fn close_objects(schema: &mut Value, name: &str, unchecked: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".to_owned(), json!(false));
            }
            if map
                .get("pattern")
                .and_then(Value::as_str)
                .is_some_and(|pattern| pattern.contains("(?"))
            {
                map.remove("pattern");
                unchecked.push(name.to_owned());
            }
            for (key, value) in map.iter_mut() {
                close_objects(value, key, unchecked);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| close_objects(item, name, unchecked)),
        _ => {}
    }
}

fn errors(validator: &Validator, object: &Value) -> Vec<String> {
    validator
        .iter_errors(object)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}

#[test]
fn every_custom_resource_validates_against_its_crd() {
    for (label, settings) in variants() {
        let objects = calico::objects(MANIFEST, &settings).unwrap();
        let custom: Vec<&Value> = objects.iter().filter(|object| is_custom(object)).collect();
        assert_eq!(custom.len(), 2, "{label}");
        for object in custom {
            let kind = object["kind"].as_str().unwrap();
            let (schema, unchecked) = crd_schema(kind);
            let found = errors(&schema, object);
            assert!(found.is_empty(), "{label} {kind}: {found:#?}");
            for field in object["spec"].as_object().unwrap().keys() {
                assert!(!unchecked.contains(field), "{kind}: {field} is not checked");
            }
        }
    }
}

#[test]
fn the_crd_schemas_do_refuse_a_wrong_field() {
    let settings = settings(Encapsulation::Ipip, false);
    let mut pool = serde_json::to_value(calico::ip_pool(&settings)).unwrap();
    pool["spec"]["ipipMode"] = json!("Sometimes");
    assert!(!errors(&crd_schema("IPPool").0, &pool).is_empty());
    let mut felix = serde_json::to_value(calico::felix_configuration(&settings)).unwrap();
    felix["spec"]["wireguardEnable"] = json!(true);
    assert!(!errors(&crd_schema("FelixConfiguration").0, &felix).is_empty());
}

#[test]
fn every_image_comes_from_the_bootstrap_registry() {
    let objects = calico::objects(MANIFEST, &settings(Encapsulation::Ipip, false)).unwrap();
    let mut images = Vec::new();
    collect_images(&Value::Array(objects), &mut images);
    images.sort();
    images.dedup();
    assert_eq!(
        images,
        [
            format!("{REGISTRY}/calico/cni:v3.32.1"),
            format!("{REGISTRY}/calico/kube-controllers:v3.32.1"),
            format!("{REGISTRY}/calico/node:v3.32.1"),
        ]
    );
}

fn collect_images(value: &Value, images: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("image", Value::String(image)) => images.push(image.clone()),
                    _ => collect_images(value, images),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_images(item, images)),
        _ => {}
    }
}

/// Every leaf of `value` by its path; list items that have a `name` are keyed by it (so
/// that a removed variable shows as one line, not as every later one shifted).
fn leaves(value: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                leaves(value, format!("{path}.{key}"), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                let key = match item["name"].as_str() {
                    Some(name) => format!("{path}[{name}]"),
                    None => format!("{path}[{index}]"),
                };
                leaves(item, key, out);
            }
        }
        _ => {
            out.insert(path, value.clone());
        }
    }
}

fn object_key(object: &Value) -> String {
    format!(
        "{} {}",
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// What differs from upstream's manifest, one line a changed leaf, then the objects added.
fn edits(settings: &CalicoSettings) -> String {
    let upstream: BTreeMap<String, Value> = upstream()
        .into_iter()
        .map(|object| (object_key(&object), object))
        .collect();
    let mut report = String::new();
    for object in calico::objects(MANIFEST, settings).unwrap() {
        let key = object_key(&object);
        let Some(original) = upstream.get(&key) else {
            report.push_str(&format!("added {key}:\n{}", yaml::documents(&[object])));
            continue;
        };
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        leaves(original, String::new(), &mut before);
        leaves(&object, String::new(), &mut after);
        let paths: std::collections::BTreeSet<&String> =
            before.keys().chain(after.keys()).collect();
        for path in paths {
            match (before.get(path), after.get(path)) {
                (Some(old), Some(new)) if old == new => {}
                (old, new) => report.push_str(&format!(
                    "{key}: {path}: {} -> {}\n",
                    old.map_or("(none)".to_owned(), Value::to_string),
                    new.map_or("(none)".to_owned(), Value::to_string),
                )),
            }
        }
    }
    report
}

#[test]
fn the_edits_of_each_variant() {
    for (label, settings) in variants() {
        insta::assert_snapshot!(format!("edits-{label}"), edits(&settings));
    }
}

#[test]
fn the_objects_keep_the_manifests_order_and_add_the_pool_and_felix_last() {
    let objects = calico::objects(MANIFEST, &settings(Encapsulation::Ipip, false)).unwrap();
    let keys: Vec<String> = objects.iter().map(object_key).collect();
    let mut expected: Vec<String> = upstream().iter().map(object_key).collect();
    expected.push(format!("IPPool {}", calico::IP_POOL));
    expected.push("FelixConfiguration default".to_owned());
    assert_eq!(keys, expected);
}
