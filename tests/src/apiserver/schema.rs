//! A CRD's structural schema applied to a write, the way kube-apiserver applies it: unknown
//! fields are pruned (unless `x-kubernetes-preserve-unknown-fields`), defaults are filled in
//! where the parent object exists, and the result is validated against the `OpenAPI` rules a
//! structural schema may carry: `type` (with `nullable` and `x-kubernetes-int-or-string`),
//! `required`, `enum`, `minLength`/`maxLength`, `pattern`, `minimum`/`maximum`,
//! `minItems`/`maxItems`, `minProperties`/`maxProperties`, `items`, `properties` and
//! `additionalProperties`. `apiVersion`, `kind` and `metadata` at the root are the server's.
//!
//! Written here rather than taken from a JSON Schema crate: pruning and defaulting are not JSON
//! Schema operations, and a structural schema needs only this subset of its validation.

use serde_json::{Map, Value};

/// Prunes unknown fields and fills in defaults (in place).
pub fn prune_and_default(schema: &Value, object: &mut Value) {
    walk(schema, object, true);
}

fn walk(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            if let Some(properties) = schema["properties"].as_object() {
                if !preserve {
                    map.retain(|key, _| {
                        properties.contains_key(key)
                            || (root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata"))
                    });
                }
                for (key, property) in properties {
                    if root && key == "metadata" {
                        continue;
                    }
                    match map.get_mut(key) {
                        Some(child) => walk(property, child, false),
                        None => {
                            if let Some(default) = property.get("default") {
                                let mut default = default.clone();
                                walk(property, &mut default, false);
                                map.insert(key.clone(), default);
                            }
                        }
                    }
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for child in map.values_mut() {
                    walk(values, child, false);
                }
            } else if !preserve && schema["type"] == "object" && !root {
                // An object without properties or additionalProperties keeps nothing.
                map.clear();
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for child in items {
                    walk(item, child, false);
                }
            }
        }
        _ => {}
    }
}

/// Every violation of the schema by `value`, as `path: message` (empty when it is valid).
pub fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, value, "", true, &mut errors);
    errors
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn check(schema: &Value, value: &Value, path: &str, root: bool, errors: &mut Vec<String>) {
    let mut fail = |message: String| {
        errors.push(format!(
            "{}: {message}",
            if path.is_empty() { "<root>" } else { path }
        ));
    };
    if value.is_null() {
        if schema["nullable"] != true && schema.get("type").is_some() {
            fail("Invalid value: null: must not be null".to_owned());
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str() {
        let actual = kind_of(value);
        let int_or_string =
            schema["x-kubernetes-int-or-string"] == true && matches!(actual, "integer" | "string");
        let fits = actual == expected || (expected == "number" && actual == "integer");
        if !fits && !int_or_string {
            fail(format!(
                "Invalid value: {actual}: must be of type {expected}"
            ));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        fail(format!(
            "Unsupported value: {value}: supported values: {}",
            allowed
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    match value {
        Value::String(text) => {
            let length = text.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && length > max
            {
                fail(format!("Too long: may not be more than {max} characters"));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && length < min
            {
                fail(format!("Invalid value: must be at least {min} characters"));
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(text) => {
                        fail(format!("Invalid value: {text:?}: should match '{pattern}'"));
                    }
                    Ok(_) => {}
                    Err(error) => fail(format!("the schema's pattern does not compile: {error}")),
                }
            }
        }
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or_default();
            if let Some(max) = schema["maximum"].as_f64()
                && n > max
            {
                fail(format!(
                    "Invalid value: {number}: must be less than or equal to {max}"
                ));
            }
            if let Some(min) = schema["minimum"].as_f64()
                && n < min
            {
                fail(format!(
                    "Invalid value: {number}: must be greater than or equal to {min}"
                ));
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if let Some(max) = schema["maxItems"].as_u64()
                && count > max
            {
                fail(format!("Too many: {count}: must have at most {max} items"));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && count < min
            {
                fail(format!("Invalid value: must have at least {min} items"));
            }
            list_map_keys(schema, items, &mut fail);
            if let Some(item) = schema.get("items") {
                for (index, child) in items.iter().enumerate() {
                    check(item, child, &format!("{path}[{index}]"), false, errors);
                }
            }
        }
        Value::Object(map) => check_object(schema, map, path, root, errors),
        Value::Bool(_) | Value::Null => {}
    }
}

/// A list-map: every item has its keys, and no two items the same ones.
fn list_map_keys(schema: &Value, items: &[Value], fail: &mut impl FnMut(String)) {
    if schema["x-kubernetes-list-type"] != "map" {
        return;
    }
    let Some(keys) = schema["x-kubernetes-list-map-keys"].as_array() else {
        return;
    };
    let mut seen = Vec::new();
    for (index, child) in items.iter().enumerate() {
        let key: Vec<&Value> = keys
            .iter()
            .filter_map(Value::as_str)
            .map(|k| &child[k])
            .collect();
        if key.iter().any(|v| v.is_null()) {
            fail(format!(
                "[{index}]: Required value: the list-map keys {keys:?}"
            ));
        } else if seen.contains(&key) {
            fail(format!(
                "[{index}]: Duplicate value: {}",
                key.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else {
            seen.push(key);
        }
    }
}

fn check_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    errors: &mut Vec<String>,
) {
    let count = map.len() as u64;
    if let Some(max) = schema["maxProperties"].as_u64()
        && count > max
    {
        errors.push(format!(
            "{path}: Too many: must have at most {max} properties"
        ));
    }
    if let Some(min) = schema["minProperties"].as_u64()
        && count < min
    {
        errors.push(format!("{path}: must have at least {min} properties"));
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        if let Some(key) = required.as_str()
            && !map.contains_key(key)
        {
            errors.push(format!("{}: Required value", join(path, key)));
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (key, child) in map {
            if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(property) = properties.get(key) {
                check(property, child, &join(path, key), false, errors);
            }
        }
    } else if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        for (key, child) in map {
            check(values, child, &join(path, key), false, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                        "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                        "count": {"type": "integer", "minimum": 1},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "items": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "maybe": {"type": "string", "nullable": true}
                    }
                }
            }
        })
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_filled() {
        let mut object = json!({
            "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"name": "ab", "stray": 1, "free": {"any": {"thing": 1}}},
            "extra": true
        });
        prune_and_default(&schema(), &mut object);
        assert_eq!(
            object,
            json!({
                "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
                "spec": {"name": "ab", "mode": "A", "free": {"any": {"thing": 1}}}
            })
        );
        assert!(validate(&schema(), &object).is_empty());
    }

    #[test]
    fn list_maps_refuse_duplicate_and_missing_keys() {
        let schema = json!({"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["type"],
                            "items": {"type": "object", "properties": {"type": {"type": "string"}}}});
        assert!(validate(&schema, &json!([{"type": "Ready"}, {"type": "Stalled"}])).is_empty());
        let errors = validate(&schema, &json!([{"type": "Ready"}, {"type": "Ready"}]));
        assert!(
            errors.iter().any(|e| e.contains("Duplicate value")),
            "{errors:?}"
        );
        let errors = validate(&schema, &json!([{"reason": "x"}]));
        assert!(
            errors.iter().any(|e| e.contains("Required value")),
            "{errors:?}"
        );
    }

    #[test]
    fn violations_name_their_field() {
        let object = json!({"spec": {
            "name": "TooLong1", "mode": "C", "count": 0, "labels": {"a": 1},
            "items": ["a", "b", "c"], "maybe": null
        }});
        let errors = validate(&schema(), &object);
        for expected in [
            "spec.name: Too long",
            "should match",
            "spec.mode: Unsupported value",
            "spec.count: Invalid value: 0",
            "spec.labels.a: Invalid value: integer: must be of type string",
            "spec.items: Too many",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected} in {errors:?}"
            );
        }
        assert!(!errors.iter().any(|e| e.contains("maybe")), "{errors:?}");
        let missing = validate(&schema(), &json!({"spec": {}}));
        assert_eq!(missing, ["spec.name: Required value"]);
    }
}
