//! Checks a YAML tree against the inventory [shape](crate::shape), collecting every problem,
//! and turns what is valid into JSON that serde then reads into the model types (so the
//! model's own defaults apply).
//!
//! A value that is wrong is reported once and replaced by a placeholder, and its path is
//! marked *tainted*: the cross-field checks in [`validate`](crate::validate) skip anything
//! tainted, so that one mistake does not cascade into a list of confusing follow-ups.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::diagnostics::{Finding, Span};
use crate::names;
use crate::paths::{SpanIndex, Tainted, entry_path, field_path, item_path, place};
use crate::scalars;
use crate::shape::{Field, Shape, StructShape, Text};
use crate::suggest;
use crate::tree::{Node, Scalar, Value};
use crate::values::shown;

/// The JSON form of the valid parts of a document, where each value was written, and what
/// was wrong with it.
pub(crate) struct Decoded {
    pub json: Json,
    pub spans: SpanIndex,
    pub tainted: Tainted,
    pub findings: Vec<Finding>,
}

pub(crate) fn decode(root: &Node, shape: &'static StructShape) -> Decoded {
    let mut decoder = Decoder::default();
    decoder.spans.insert("", None, root.span.clone());
    let json = decoder
        .structure(root, shape, "")
        .unwrap_or_else(|| placeholder(&Shape::Struct(shape)));
    Decoded {
        json,
        spans: decoder.spans,
        tainted: decoder.tainted,
        findings: decoder.findings,
    }
}

#[derive(Default)]
struct Decoder {
    findings: Vec<Finding>,
    spans: SpanIndex,
    tainted: Tainted,
}

impl Decoder {
    fn report(&mut self, path: &str, finding: Finding) {
        self.tainted.mark(path);
        self.findings.push(finding);
    }

    fn value(&mut self, node: &Node, shape: &Shape, path: &str, example: &str) -> Option<Json> {
        match shape {
            Shape::Struct(inner) => self.structure(node, inner, path),
            Shape::List { item, non_empty } => self.list(node, item, *non_empty, path, example),
            Shape::Labels => self.labels(node, path, example),
            Shape::RoleMap(inner) => self.role_map(node, inner, path, example),
            Shape::Sysctls => self.sysctls(node, path, example),
            _ => {
                let scalar = self.scalar(node, shape, path, example)?;
                let json = self.scalar_value(scalar, &node.span, shape, path);
                if json.is_none() {
                    self.tainted.mark(path);
                }
                json
            }
        }
    }

    fn structure(&mut self, node: &Node, shape: &'static StructShape, path: &str) -> Option<Json> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, &Shape::Struct(shape), path, shape.example);
            return None;
        };
        let mut object = Map::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut suggested: Vec<&str> = Vec::new();
        for (key, value) in entries {
            let Some(name) = self.key(key, path) else {
                continue;
            };
            if let Some(first) = seen.get(name) {
                self.duplicate_key(path, name, first.clone(), key.span.clone());
                continue;
            }
            seen.insert(name, key.span.clone());
            match shape.field(name) {
                Some(field) => self.field(field, key, value, path, &mut object),
                None => {
                    if let Some(suggestion) = self.unknown_field(shape, name, key, path) {
                        suggested.push(suggestion);
                    }
                }
            }
        }
        for field in shape.fields.iter().filter(|field| field.required) {
            if !seen.contains_key(field.name) {
                if !suggested.contains(&field.name) {
                    self.missing_field(node, field, path);
                }
                let child = field_path(path, field.name);
                self.tainted.mark(&child);
                object.insert(field.name.to_owned(), placeholder(&field.shape));
            }
        }
        Some(Json::Object(object))
    }

    fn field(
        &mut self,
        field: &'static Field,
        key: &Node,
        value: &Node,
        path: &str,
        object: &mut Map<String, Json>,
    ) {
        let child = field_path(path, field.name);
        self.spans
            .insert(&child, Some(key.span.clone()), value.span.clone());
        let example = format!("{}: {}", field.name, field.example);
        let json = if value.is_null() {
            if field.required {
                self.report(
                    &child,
                    Finding::new(
                        "inventory::missing-value",
                        &child,
                        key.span.clone(),
                        format!("{} has no value", place(&child)),
                    )
                    .label("no value")
                    .help(format!("give it a value, for example `{example}`")),
                );
            }
            // An empty optional field means "use the default", as if it were left out.
            None
        } else {
            self.value(value, &field.shape, &child, &example)
        };
        match json {
            Some(json) => {
                object.insert(field.name.to_owned(), json);
            }
            None if field.required => {
                object.insert(field.name.to_owned(), placeholder(&field.shape));
            }
            None => {}
        }
    }

    fn key<'n>(&mut self, key: &'n Node, path: &str) -> Option<&'n str> {
        match key.as_scalar() {
            Some(scalar) if !scalar.is_null() => Some(scalar.text.as_str()),
            _ => {
                // Its value is ignored like an unknown field's: nothing to taint.
                self.findings.push(
                    Finding::new(
                        "inventory::bad-key",
                        path,
                        key.span.clone(),
                        format!("{} has a key that is {}", place(path), key.describe()),
                    )
                    .label("not a field name")
                    .help("keys are field names written as plain words, such as `name:`"),
                );
                None
            }
        }
    }

    fn duplicate_key(&mut self, path: &str, name: &str, first: Span, again: Span) {
        self.report(
            &field_path(path, name),
            Finding::new(
                "inventory::duplicate-key",
                &field_path(path, name),
                again,
                format!("`{}` is set twice in {}", shown(name), place(path)),
            )
            .label("set again here")
            .also(first, "first set here")
            .help("keep only one of them"),
        );
    }

    /// Reports an unknown field; returns the field it is probably a typo of.
    fn unknown_field(
        &mut self,
        shape: &'static StructShape,
        name: &str,
        key: &Node,
        path: &str,
    ) -> Option<&'static str> {
        let names = shape.names();
        let suggestion = suggest::closest(name, &names);
        let help = if let Some(suggestion) = suggestion {
            format!("did you mean `{suggestion}`?")
        } else if let Some(home) = shape.home_of(name) {
            format!("`{}` belongs under `{home}`: move it there", shown(name))
        } else if name == "<<" {
            "YAML merge keys (`<<`) are not supported: write the fields out".to_owned()
        } else {
            format!(
                "remove it; the fields of {} are {}",
                shape.noun,
                suggest::one_of(&names)
            )
        };
        self.findings.push(
            Finding::new(
                "inventory::unknown-field",
                &field_path(path, name),
                key.span.clone(),
                format!("unknown field `{}` in {}", shown(name), place(path)),
            )
            .label("unknown field")
            .help(help),
        );
        suggestion
    }

    fn missing_field(&mut self, node: &Node, field: &Field, path: &str) {
        let span = if path.is_empty() {
            node.span.clone()
        } else {
            self.spans.key(path)
        };
        self.findings.push(
            Finding::new(
                "inventory::missing-field",
                &field_path(path, field.name),
                span,
                format!(
                    "{} is missing the required field `{}`",
                    place(path),
                    field.name
                ),
            )
            .label(format!("no `{}` here", field.name))
            .help(format!(
                "add it, for example `{}: {}`",
                field.name, field.example
            )),
        );
    }

    fn wrong_type(&mut self, node: &Node, shape: &Shape, path: &str, example: &str) {
        let found = node.describe();
        let help = match (shape, node.as_scalar()) {
            (Shape::List { .. }, Some(scalar)) if !scalar.is_null() => {
                format!(
                    "write a list, even of one item: `[{}]`",
                    shown(&scalar.text)
                )
            }
            _ => format!("write {}, for example `{example}`", shape.expected()),
        };
        self.report(
            path,
            Finding::new(
                "inventory::wrong-type",
                path,
                node.span.clone(),
                format!("{} must be {}, not {found}", place(path), shape.expected()),
            )
            .label(format!("{found} here"))
            .help(help),
        );
    }

    fn list(
        &mut self,
        node: &Node,
        item: &'static Shape,
        non_empty: bool,
        path: &str,
        example: &str,
    ) -> Option<Json> {
        let Value::List(items) = &node.value else {
            self.wrong_type(node, &Shape::List { item, non_empty }, path, example);
            return None;
        };
        if non_empty && items.is_empty() {
            self.report(
                path,
                Finding::new(
                    "inventory::empty-list",
                    path,
                    node.span.clone(),
                    format!("{} is empty", place(path)),
                )
                .label("empty list")
                .help(format!("list at least one item, for example `{example}`")),
            );
            return None;
        }
        let item_example = item.example();
        let values = items
            .iter()
            .enumerate()
            .map(|(index, element)| {
                let child = item_path(path, index);
                self.spans.insert(&child, None, element.span.clone());
                self.value(element, item, &child, &item_example)
                    .unwrap_or_else(|| placeholder(item))
            })
            .collect();
        Some(Json::Array(values))
    }

    /// The entries of a mapping whose keys are readable and not repeated (each repeat is
    /// reported), with each entry's path, its spans recorded.
    fn unique_entries<'n>(
        &mut self,
        entries: &'n [(Node, Node)],
        path: &str,
        child_path: fn(&str, &str) -> String,
    ) -> Vec<(&'n str, &'n Node, &'n Node, String)> {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut unique = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(name) = self.key(key, path) else {
                continue;
            };
            if let Some(first) = seen.insert(name, key.span.clone()) {
                self.duplicate_key(path, name, first, key.span.clone());
                continue;
            }
            let child = child_path(path, name);
            self.spans
                .insert(&child, Some(key.span.clone()), value.span.clone());
            unique.push((name, key, value, child));
        }
        unique
    }

    fn labels(&mut self, node: &Node, path: &str, example: &str) -> Option<Json> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, &Shape::Labels, path, example);
            return None;
        };
        let mut object = Map::new();
        for (name, key, value, child) in self.unique_entries(entries, path, entry_path) {
            if let Some(reason) = names::label_key_error(name) {
                self.report(
                    &child,
                    Finding::new(
                        "inventory::bad-label-key",
                        &child,
                        key.span.clone(),
                        format!("`{}` is not a valid label key: {reason}", shown(name)),
                    )
                    .label("invalid label key")
                    .help("label keys look like `rack` or `example.com/rack`"),
                );
                continue;
            }
            let text = if value.is_null() {
                Some(String::new())
            } else {
                self.value(value, &Shape::Text(Text::LabelValue), &child, "r1")
                    .and_then(|json| json.as_str().map(str::to_owned))
            };
            if let Some(text) = text {
                object.insert(name.to_owned(), Json::String(text));
            }
        }
        Some(Json::Object(object))
    }

    fn sysctls(&mut self, node: &Node, path: &str, example: &str) -> Option<Json> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, &Shape::Sysctls, path, example);
            return None;
        };
        let mut object = Map::new();
        for (name, key, value, child) in self.unique_entries(entries, path, entry_path) {
            if let Some(reason) = names::sysctl_key_error(name) {
                self.report(
                    &child,
                    Finding::new(
                        "inventory::bad-sysctl-key",
                        &child,
                        key.span.clone(),
                        format!("`{}` is not a kernel parameter name: {reason}", shown(name)),
                    )
                    .label("invalid sysctl name")
                    .help(sysctl_key_help(name)),
                );
                continue;
            }
            let Some(scalar) = value.as_scalar().filter(|scalar| !scalar.is_null()) else {
                let found = value.describe();
                self.report(
                    &child,
                    Finding::new(
                        "inventory::wrong-type",
                        &child,
                        value.span.clone(),
                        format!(
                            "{} must be a number or a string, not {found}",
                            place(&child)
                        ),
                    )
                    .label(format!("{found} here"))
                    .help(format!(
                        "write the value the kernel takes, for example `{name}: 1`"
                    )),
                );
                continue;
            };
            match scalars::sysctl_value(scalar, &child) {
                Ok(json) => {
                    object.insert(name.to_owned(), json);
                }
                Err(wrong) => self.report(
                    &child,
                    Finding::new(wrong.code, &child, value.span.clone(), wrong.message)
                        .label(wrong.label)
                        .help(wrong.help),
                ),
            }
        }
        Some(Json::Object(object))
    }

    fn role_map(
        &mut self,
        node: &Node,
        inner: &'static StructShape,
        path: &str,
        example: &str,
    ) -> Option<Json> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, &Shape::RoleMap(inner), path, example);
            return None;
        };
        let role_shape = Shape::Choice(&crate::shape::ROLE);
        let mut object = Map::new();
        for (_, key, value, child) in self.unique_entries(entries, path, field_path) {
            let Some(scalar) = key.as_scalar() else {
                continue;
            };
            let Some(role) = self.scalar_value(scalar, &key.span, &role_shape, &child) else {
                self.tainted.mark(&child);
                continue;
            };
            if let Some(json) = self.structure(value, inner, &child) {
                object.insert(role.as_str().unwrap_or_default().to_owned(), json);
            }
        }
        Some(Json::Object(object))
    }

    fn scalar<'n>(
        &mut self,
        node: &'n Node,
        shape: &Shape,
        path: &str,
        example: &str,
    ) -> Option<&'n Scalar> {
        match node.as_scalar() {
            Some(scalar) if !scalar.is_null() => Some(scalar),
            _ => {
                self.wrong_type(node, shape, path, example);
                None
            }
        }
    }

    /// The JSON for a scalar, or `None` after reporting why it does not fit `shape`.
    fn scalar_value(
        &mut self,
        scalar: &Scalar,
        span: &Span,
        shape: &Shape,
        path: &str,
    ) -> Option<Json> {
        let checked = scalars::check(scalar, shape, path);
        match checked {
            Ok(json) => Some(json),
            Err(wrong) => {
                self.findings.push(
                    Finding::new(wrong.code, path, span.clone(), wrong.message)
                        .label(wrong.label)
                        .help(wrong.help),
                );
                None
            }
        }
    }
}

/// Short names (`ip_forward`) are usually a default's last part: name it.
fn sysctl_key_help(name: &str) -> String {
    let suffix = format!(".{name}");
    let known = metalk8s_model::inventory::DEFAULT_SYSCTLS
        .iter()
        .map(|(key, _)| *key)
        .find(|key| key.ends_with(&suffix));
    match known {
        Some(key) => format!("write the full dotted name: did you mean `{key}`?"),
        None => "write the full dotted name `sysctl -a` prints, for example `net.ipv4.ip_forward`"
            .to_owned(),
    }
}

/// A valid stand-in for a value that was wrong or missing, so the rest can still be read.
fn placeholder(shape: &Shape) -> Json {
    match shape {
        Shape::Struct(inner) => Json::Object(
            inner
                .fields
                .iter()
                .filter(|field| field.required)
                .map(|field| (field.name.to_owned(), placeholder(&field.shape)))
                .collect(),
        ),
        Shape::List { .. } => Json::Array(Vec::new()),
        Shape::Labels | Shape::RoleMap(_) | Shape::Sysctls => Json::Object(Map::new()),
        Shape::Text(_) => Json::String(String::new()),
        Shape::Bool => Json::Bool(false),
        Shape::Integer { min, .. } => Json::from(*min),
        Shape::Seconds => Json::from(0),
        Shape::Cidr => Json::String("0.0.0.0/0".to_owned()),
        Shape::Ip => Json::String("0.0.0.0".to_owned()),
        Shape::Size => Json::from(1),
        Shape::Choice(choice) => Json::String(choice.values[0].to_owned()),
        Shape::Constant(value) => Json::String((*value).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_deserialize_into_the_model() {
        let json = placeholder(&Shape::Struct(&crate::shape::INVENTORY));
        serde_json::from_value::<metalk8s_model::Inventory>(json).unwrap();
    }
}
