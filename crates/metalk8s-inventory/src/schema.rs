//! The JSON Schema of the inventory file, for editors and `metalk8s inventory schema`.

use metalk8s_model::Inventory;

/// The JSON Schema (draft 2020-12) of an inventory file, generated from the model types.
///
/// It describes the shape (fields, types, defaults); rules that span several values, such
/// as "exactly one bootstrap node", are checked by [`parse`](crate::parse) only.
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Inventory))
        .expect("a generated JSON Schema is plain JSON");
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".to_owned(),
            serde_json::Value::String(format!(
                "https://metalk8s.io/schemas/{}/inventory.json",
                metalk8s_model::inventory::API_VERSION
            )),
        );
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_top_level_field() {
        let schema = json_schema();
        let properties = schema["properties"].as_object().unwrap();
        for field in ["apiVersion", "kind", "name", "networks", "nodes", "ssh"] {
            assert!(properties.contains_key(field), "{field} missing");
        }
    }
}
