//! Field ownership for server-side apply, at leaf granularity.
//!
//! A field path is the chain of map keys from the object root to a leaf; lists and scalars are
//! leaves (lists are atomic here, as they are for CRD fields without list-type markers).
//! Identity metadata is nobody's field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// A field path.
pub type FieldPath = Vec<String>;

/// Fields of `metadata` that belong to the server, never to a manager.
const SERVER_FIELDS: [&str; 9] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The leaf paths of `value` that a manager can own.
pub fn leaves(value: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let mut path = Vec::new();
    walk(value, &mut path, &mut out);
    out.retain(|p| {
        let top = p.first().map(String::as_str);
        !(matches!(top, Some("apiVersion" | "kind"))
            || (top == Some("metadata")
                && p.get(1)
                    .is_some_and(|k| SERVER_FIELDS.contains(&k.as_str()))))
    });
    out
}

fn walk(value: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(key.clone());
                walk(child, path, out);
                path.pop();
            }
        }
        // An empty map owns nothing (`spec: {}` in an apply claims no field).
        Value::Object(_) => {}
        _ if !path.is_empty() => {
            out.insert(path.clone());
        }
        _ => {}
    }
}

/// The value at `path`.
pub fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// Sets the value at `path`, creating maps on the way.
pub fn set(value: &mut Value, path: &[String], leaf: Value) {
    let Some((last, parents)) = path.split_last() else {
        *value = leaf;
        return;
    };
    let mut here = value;
    for key in parents {
        if !here.is_object() {
            *here = Value::Object(Map::new());
        }
        let Value::Object(map) = here else {
            return;
        };
        here = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !here.is_object() {
        *here = Value::Object(Map::new());
    }
    if let Value::Object(map) = here {
        map.insert(last.clone(), leaf);
    }
}

/// Removes the value at `path`, and maps left empty on the way up.
pub fn remove(value: &mut Value, path: &[String]) {
    if path.is_empty() {
        return;
    }
    remove_one(value, path);
    // Prune empty parents.
    for depth in (1..path.len()).rev() {
        let parent = &path[..depth];
        let empty = get(value, parent).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
        if empty {
            remove_one(value, parent);
        } else {
            break;
        }
    }
}

fn remove_one(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut here = &mut *value;
    for key in parents {
        match here.get_mut(key) {
            Some(child) => here = child,
            None => return,
        }
    }
    if let Some(map) = here.as_object_mut() {
        map.remove(last);
    }
}

/// Whether two paths overlap (one is a prefix of the other).
fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Who manages which fields of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managers {
    /// (manager, operation `Apply`/`Update`, subresource) → fields.
    pub owned: BTreeMap<(String, String, String), BTreeSet<FieldPath>>,
}

/// An apply that would change fields another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The contested field, dotted.
    pub field: String,
}

impl Managers {
    /// Applies `applied` (the manager's whole intent for this subresource) to `current`: its
    /// fields are set, fields it applied before and no longer does are removed (unless another
    /// manager owns them), and a field another manager owns with a different value is a
    /// conflict unless `force`, which takes it over.
    pub fn apply(
        &mut self,
        current: &Value,
        applied: &Value,
        manager: &str,
        subresource: &str,
        force: bool,
    ) -> Result<Value, Vec<Conflict>> {
        let wanted = leaves(applied);
        let mut conflicts = Vec::new();
        for path in &wanted {
            for ((other, _, _), fields) in &self.owned {
                if other == manager {
                    continue;
                }
                // The field (or a part of it) would end up different from what the other
                // manager set.
                let contested = fields
                    .iter()
                    .any(|f| overlaps(f, path) && get(current, f) != get(applied, f));
                if contested {
                    conflicts.push(Conflict {
                        manager: other.clone(),
                        field: path.join("."),
                    });
                }
            }
        }
        if !conflicts.is_empty() && !force {
            conflicts.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
            conflicts.dedup();
            return Err(conflicts);
        }
        let mut new = current.clone();
        for path in &wanted {
            if let Some(leaf) = get(applied, path) {
                set(&mut new, path, leaf.clone());
            }
            if force {
                // Contested fields change hands; fields set to the same value stay shared.
                for ((other, _, _), fields) in &mut self.owned {
                    if other != manager {
                        fields
                            .retain(|f| !(overlaps(f, path) && get(current, f) != get(applied, f)));
                    }
                }
            }
        }
        let key = (
            manager.to_owned(),
            "Apply".to_owned(),
            subresource.to_owned(),
        );
        let before = self.owned.get(&key).cloned().unwrap_or_default();
        for gone in before.difference(&wanted) {
            let kept_by_other = self
                .owned
                .iter()
                .any(|(k, fields)| k != &key && fields.iter().any(|f| overlaps(f, gone)));
            if !kept_by_other {
                remove(&mut new, gone);
            }
        }
        self.owned.insert(key, wanted);
        self.owned.retain(|_, fields| !fields.is_empty());
        Ok(new)
    }

    /// Records a non-apply write by `manager`: the leaves it changed become its own.
    pub fn update(&mut self, old: &Value, new: &Value, manager: &str, subresource: &str) {
        let mut changed: BTreeSet<FieldPath> = leaves(new)
            .into_iter()
            .filter(|p| get(old, p) != get(new, p))
            .collect();
        let removed: BTreeSet<FieldPath> = leaves(old)
            .into_iter()
            .filter(|p| get(new, p).is_none())
            .collect();
        for fields in self.owned.values_mut() {
            fields.retain(|f| !changed.iter().chain(&removed).any(|c| overlaps(f, c)));
        }
        if !changed.is_empty() {
            let key = (
                manager.to_owned(),
                "Update".to_owned(),
                subresource.to_owned(),
            );
            self.owned.entry(key).or_default().append(&mut changed);
        }
        self.owned.retain(|_, fields| !fields.is_empty());
    }

    /// `metadata.managedFields` as the API server shows it.
    pub fn render(&self, api_version: &str) -> Value {
        Value::Array(
            self.owned
                .iter()
                .map(|((manager, operation, subresource), fields)| {
                    let mut tree = Value::Object(Map::new());
                    for path in fields {
                        let keyed: Vec<String> = path.iter().map(|k| format!("f:{k}")).collect();
                        set(&mut tree, &keyed, Value::Object(Map::new()));
                    }
                    let mut entry = serde_json::json!({
                        "manager": manager,
                        "operation": operation,
                        "apiVersion": api_version,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": tree,
                    });
                    if !subresource.is_empty() {
                        entry["subresource"] = Value::String(subresource.clone());
                    }
                    entry
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_sets_removes_and_conflicts_like_server_side_apply() {
        let mut managers = Managers::default();
        let object = json!({"metadata": {"name": "m"}, "spec": {"a": 1}});
        let object = managers
            .apply(
                &object,
                &json!({"spec": {"a": 1, "b": 2}}),
                "one",
                "",
                false,
            )
            .unwrap();
        assert_eq!(object["spec"], json!({"a": 1, "b": 2}));
        // Another manager setting the same value is no conflict; a different one is.
        let same = managers.apply(&object, &json!({"spec": {"b": 2}}), "two", "", false);
        assert!(same.is_ok());
        let conflict = managers
            .apply(&object, &json!({"spec": {"a": 9}}), "two", "", false)
            .unwrap_err();
        assert_eq!(conflict[0].manager, "one");
        assert_eq!(conflict[0].field, "spec.a");
        let forced = managers
            .apply(&object, &json!({"spec": {"a": 9}}), "two", "", true)
            .unwrap();
        assert_eq!(forced["spec"]["a"], 9);
        // "one" stops applying b: b stays, because "two" applied it too; a is two's now.
        let after = managers
            .apply(&forced, &json!({"spec": {}}), "one", "", false)
            .unwrap();
        assert_eq!(
            after["spec"],
            json!({"a": 9}),
            "two's last apply no longer has b"
        );
    }

    #[test]
    fn leaves_skip_server_metadata_and_treat_lists_as_atomic() {
        let value = json!({"apiVersion": "v1", "metadata": {"name": "x", "labels": {"a": "b"}},
                           "status": {"conditions": [{"type": "Ready"}]}});
        let paths: Vec<String> = leaves(&value).into_iter().map(|p| p.join(".")).collect();
        assert_eq!(paths, ["metadata.labels.a", "status.conditions"]);
    }
}
