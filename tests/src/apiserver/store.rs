//! The API server's storage and write semantics, without HTTP.
//!
//! Rules (those of kube-apiserver that controllers depend on):
//! - One global resourceVersion counter, bumped by every write that changes an object; a write
//!   that changes nothing (a no-op update or apply) does not bump it and sends no watch event.
//! - `metadata.generation` starts at 1 and is bumped only when something outside `metadata`
//!   and `status` changes.
//! - With a status subresource, writes to the object ignore `status` (and create drops it);
//!   writes to `/status` change only `status`.
//! - An update carrying a `resourceVersion` other than the stored one is a 409 Conflict.
//! - Deleting an object with finalizers sets `deletionTimestamp`; it goes when the last
//!   finalizer is removed. New finalizers cannot be added once it is being deleted.
//! - When an object goes, its dependents (by `ownerReferences` uid) are deleted (background
//!   propagation).
//! - Every change is kept in a history that watches replay from a resourceVersion; a
//!   resourceVersion older than the compacted history is 410 Gone.
//! - A custom resource's write is pruned to its schema, defaulted, then validated (the
//!   structural rules, then CEL); a violation is 422 Invalid and nothing is stored.
//! - Marking an object for deletion (`deletionTimestamp`) bumps its `generation`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::fields::Managers;
use super::select::Selector;

/// A kind of resource the server serves.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group (`""` for the core group).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural (the URL segment).
    pub plural: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether `status` is a subresource.
    pub status_subresource: bool,
    /// The `OpenAPI` schema whose CEL rules validate writes.
    pub schema: Option<Value>,
    /// Field paths usable in field selectors besides `metadata.name` and `metadata.namespace`.
    pub selectable: Vec<String>,
}

impl ResourceType {
    /// `group/version` (or `version` for the core group).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// A watch event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Gone.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion after the change.
    pub rv: u64,
    /// Index of the resource type.
    pub resource: usize,
    /// What happened.
    pub kind: EventType,
    /// The object after (for deletions: its last state).
    pub object: Value,
}

/// An API error, rendered as a `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP code.
    pub code: u16,
    /// Status reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Gone`, ...).
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

type Key = (usize, String, String);

#[derive(Debug, Clone)]
struct Stored {
    object: Value,
    managers: Managers,
}

/// How a write is made.
#[derive(Debug, Clone)]
pub enum Write {
    /// Replace the whole object (PUT).
    Replace(Value),
    /// JSON merge patch.
    Merge(Value),
    /// JSON patch.
    Json(Value),
    /// Server-side apply: the manager's intent, and whether to force conflicts.
    Apply {
        /// The applied configuration.
        config: Value,
        /// Take over conflicting fields.
        force: bool,
    },
}

/// The storage.
#[derive(Debug, Default)]
pub struct Store {
    /// The resource types served.
    pub types: Vec<ResourceType>,
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Stored>,
    history: Vec<Change>,
    compacted_before: u64,
    /// Writes that changed something, per resource type.
    pub writes: BTreeMap<usize, u64>,
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

fn without_volatile(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    copy
}

fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        for key in ["metadata", "status", "apiVersion", "kind"] {
            map.remove(key);
        }
    }
    copy
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Some(map) = target.as_object_mut() {
                for (key, value) in patch {
                    if value.is_null() {
                        map.remove(key);
                    } else {
                        merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl Store {
    /// An empty store serving `types`.
    pub fn new(types: Vec<ResourceType>) -> Self {
        Self {
            types,
            ..Self::default()
        }
    }

    /// The time stamps carry (RFC 3339, seconds).
    fn timestamp() -> String {
        k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The type at `index`.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.types
            .iter()
            .position(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Forgets history up to the current resourceVersion (as etcd compaction does): watches
    /// from an older resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.compacted_before = self.rv;
        self.history.clear();
    }

    /// The changes after `rv` for `resource`; `Err` when `rv` is compacted away.
    pub fn changes_since(&self, resource: usize, rv: u64) -> Result<Vec<Change>, ApiError> {
        if rv < self.compacted_before {
            return Err(ApiError::new(
                410,
                "Expired",
                format!("too old resource version: {rv} ({})", self.compacted_before),
            ));
        }
        Ok(self
            .history
            .iter()
            .filter(|c| c.rv > rv && c.resource == resource)
            .cloned()
            .collect())
    }

    fn render(&self, key: &Key) -> Option<Value> {
        let stored = self.objects.get(key)?;
        let mut object = stored.object.clone();
        let api_version = self.types[key.0].api_version();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "managedFields".to_owned(),
                stored.managers.render(&api_version),
            );
        }
        Some(object)
    }

    /// One object.
    pub fn get(&self, resource: usize, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.render(&(resource, namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| self.not_found(resource, name))
    }

    fn not_found(&self, resource: usize, name: &str) -> ApiError {
        let t = &self.types[resource];
        ApiError::new(
            404,
            "NotFound",
            format!("{}.{} \"{name}\" not found", t.plural, t.group),
        )
    }

    /// Objects of a type in a namespace (`None`: all), filtered by selectors.
    pub fn list(
        &self,
        resource: usize,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> Vec<Value> {
        self.objects
            .keys()
            .filter(|(r, ns, _)| *r == resource && namespace.is_none_or(|n| n == ns))
            .filter_map(|key| self.render(key))
            .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
            .collect()
    }

    /// Checks a field selector's paths are selectable for the type.
    pub fn check_fields(&self, resource: usize, fields: &Selector) -> Result<(), ApiError> {
        let t = &self.types[resource];
        for key in fields.keys() {
            let allowed = key == "metadata.name"
                || key == "metadata.namespace"
                || t.selectable
                    .iter()
                    .any(|s| s.trim_start_matches('.') == key);
            if !allowed {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    format!("field label not supported: {key}"),
                ));
            }
        }
        Ok(())
    }

    /// Prunes, defaults and checks `object` against its type's structural schema.
    fn structural(&self, resource: usize, object: &mut Value) -> Result<(), ApiError> {
        let Some(schema) = &self.types[resource].schema else {
            return Ok(());
        };
        super::schema::prune_and_default(schema, object);
        let errors = super::schema::validate(schema, object);
        if errors.is_empty() {
            return Ok(());
        }
        Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{}\" is invalid: {}",
                self.types[resource].kind,
                meta_str(object, "name").unwrap_or_default(),
                errors.join("; ")
            ),
        ))
    }

    fn validate(
        &self,
        resource: usize,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(schema) = &self.types[resource].schema else {
            return Ok(());
        };
        match kube::core::cel::Validator::new().validate(schema, object, old) {
            Ok(()) => Ok(()),
            Err(errors) => {
                let messages: Vec<String> = errors
                    .into_vec()
                    .into_iter()
                    .map(|e| format!("{}: {}", e.field_path, e.message))
                    .collect();
                Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"{}\" is invalid: {}",
                        self.types[resource].kind,
                        meta_str(object, "name").unwrap_or_default(),
                        messages.join("; ")
                    ),
                ))
            }
        }
    }

    fn record(&mut self, resource: usize, kind: EventType, object: Value) {
        self.history.push(Change {
            rv: self.rv,
            resource,
            kind,
            object,
        });
        *self.writes.entry(resource).or_default() += 1;
    }

    /// Creates an object.
    pub fn create(
        &mut self,
        resource: usize,
        namespace: &str,
        mut object: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let t = self.types[resource].clone();
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        let name = match (meta_str(&object, "name"), meta_str(&object, "generateName")) {
            (Some(name), _) => name.to_owned(),
            (None, Some(prefix)) => format!("{prefix}{:05x}", self.uid + 1),
            (None, None) => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name: Required value",
                ));
            }
        };
        let key = (resource, namespace.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{}.{} \"{name}\" already exists", t.plural, t.group),
            ));
        }
        if t.status_subresource
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        self.structural(resource, &mut object)?;
        self.validate(resource, &object, None)?;
        self.rv += 1;
        self.uid += 1;
        object["apiVersion"] = json!(t.api_version());
        object["kind"] = json!(t.kind);
        let meta = &mut object["metadata"];
        meta["name"] = json!(name);
        if t.namespaced {
            meta["namespace"] = json!(namespace);
        }
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        meta["resourceVersion"] = json!(self.rv.to_string());
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!(Self::timestamp());
        if let Some(map) = meta.as_object_mut() {
            map.remove("deletionTimestamp");
            map.remove("managedFields");
        }
        let mut managers = Managers::default();
        managers.update(&json!({}), &object, manager, "");
        self.objects
            .insert(key.clone(), Stored { object, managers });
        let rendered = self.render(&key).unwrap_or_default();
        self.record(resource, EventType::Added, rendered.clone());
        Ok(rendered)
    }

    /// Changes an object (or its status): replace, merge patch, JSON patch or apply. An apply
    /// to a missing object creates it.
    #[expect(
        clippy::too_many_lines,
        reason = "the write path in the order the API server takes it: patch, restrict, compare, validate, store"
    )]
    pub fn write(
        &mut self,
        resource: usize,
        namespace: &str,
        name: &str,
        status: bool,
        write: Write,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let t = self.types[resource].clone();
        let key = (resource, namespace.to_owned(), name.to_owned());
        let Some(stored) = self.objects.get(&key).cloned() else {
            if let Write::Apply { config, .. } = write
                && !status
            {
                let mut config = config;
                config["metadata"]["name"] = json!(name);
                let created = self.create(resource, namespace, config.clone(), manager)?;
                // The applier owns what it applied.
                if let Some(stored) = self.objects.get_mut(&key) {
                    stored.managers = Managers::default();
                    let _ = stored.managers.apply(&created, &config, manager, "", true);
                }
                return self.get(resource, namespace, name);
            }
            return Err(self.not_found(resource, name));
        };
        let current = stored.object.clone();
        let subresource = if status { "status" } else { "" };
        let mut managers = stored.managers.clone();
        let mut proposed = match &write {
            Write::Replace(object) => {
                let given = meta_str(object, "resourceVersion");
                let current_rv = meta_str(&current, "resourceVersion");
                if given.is_some_and(|g| Some(g) != current_rv) {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                            t.plural, t.group
                        ),
                    ));
                }
                object.clone()
            }
            Write::Merge(patch) => {
                let mut object = current.clone();
                merge_patch(&mut object, patch);
                object
            }
            Write::Json(patch) => {
                let patch: json_patch::Patch =
                    serde_json::from_value(patch.clone()).map_err(|e| {
                        ApiError::new(400, "BadRequest", format!("invalid JSON patch: {e}"))
                    })?;
                let mut object = current.clone();
                json_patch::patch(&mut object, &patch).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("the JSON patch cannot be applied: {e}"),
                    )
                })?;
                object
            }
            Write::Apply { config, force } => {
                let mut config = config.clone();
                // Only the part the endpoint writes counts.
                if let Some(map) = config.as_object_mut() {
                    if status {
                        map.retain(|k, _| {
                            k == "status" || k == "metadata" || k == "apiVersion" || k == "kind"
                        });
                    } else if t.status_subresource {
                        map.remove("status");
                    }
                }
                managers
                    .apply(&current, &config, manager, subresource, *force)
                    .map_err(|conflicts| {
                        let list: Vec<String> = conflicts
                            .iter()
                            .map(|c| format!("conflict with \"{}\": .{}", c.manager, c.field))
                            .collect();
                        ApiError::new(
                            409,
                            "Conflict",
                            format!(
                                "Apply failed with {} conflict(s): {}",
                                list.len(),
                                list.join("; ")
                            ),
                        )
                    })?
            }
        };
        // A resourceVersion in a patch is a precondition too (as in a replace).
        if !matches!(write, Write::Replace(_))
            && let Some(given) = meta_str(&proposed, "resourceVersion")
            && Some(given) != meta_str(&current, "resourceVersion")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    t.plural, t.group
                ),
            ));
        }
        // What each endpoint may change.
        if status {
            let mut object = current.clone();
            match proposed.get("status") {
                Some(s) => object["status"] = s.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            proposed = object;
        } else if t.status_subresource {
            match current.get("status") {
                Some(s) => proposed["status"] = s.clone(),
                None => {
                    if let Some(map) = proposed.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        // Server-owned metadata stays.
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "resourceVersion",
        ] {
            match current["metadata"].get(field) {
                Some(v) => proposed["metadata"][field] = v.clone(),
                None => {
                    if let Some(meta) = proposed["metadata"].as_object_mut() {
                        meta.remove(field);
                    }
                }
            }
        }
        proposed["apiVersion"] = json!(t.api_version());
        proposed["kind"] = json!(t.kind);
        if let Some(meta) = proposed["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
        let deleting = current["metadata"].get("deletionTimestamp").is_some();
        if deleting {
            let finalizers = |o: &Value| -> Vec<String> {
                o["metadata"]["finalizers"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let old = finalizers(&current);
            if finalizers(&proposed).iter().any(|f| !old.contains(f)) {
                return Err(ApiError::new(
                    422,
                    "Forbidden",
                    "no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        self.structural(resource, &mut proposed)?;
        if without_volatile(&proposed) == without_volatile(&current) {
            // A no-op: nothing changes, not even the resourceVersion (apply ownership may).
            if let Some(stored) = self.objects.get_mut(&key) {
                stored.managers = managers;
            }
            return self.get(resource, namespace, name);
        }
        self.validate(resource, &proposed, Some(&current))?;
        if !matches!(write, Write::Apply { .. }) {
            managers.update(&current, &proposed, manager, subresource);
        }
        if spec_part(&proposed) != spec_part(&current) {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            proposed["metadata"]["generation"] = json!(generation);
        }
        self.rv += 1;
        proposed["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let gone = deleting
            && proposed["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        self.objects.insert(
            key.clone(),
            Stored {
                object: proposed,
                managers,
            },
        );
        let rendered = self.render(&key).unwrap_or_default();
        if gone {
            self.remove(&key);
        } else {
            self.record(resource, EventType::Modified, rendered.clone());
        }
        Ok(rendered)
    }

    /// Deletes an object: marks it when finalizers hold it, else removes it (and its
    /// dependents).
    pub fn delete(
        &mut self,
        resource: usize,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = (resource, namespace.to_owned(), name.to_owned());
        let Some(stored) = self.objects.get(&key).cloned() else {
            return Err(self.not_found(resource, name));
        };
        let held = stored.object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if held {
            if stored.object["metadata"].get("deletionTimestamp").is_none() {
                self.rv += 1;
                let timestamp = Self::timestamp();
                if let Some(stored) = self.objects.get_mut(&key) {
                    let generation = stored.object["metadata"]["generation"]
                        .as_i64()
                        .unwrap_or(1);
                    stored.object["metadata"]["deletionTimestamp"] = json!(timestamp);
                    stored.object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    stored.object["metadata"]["generation"] = json!(generation + 1);
                    stored.object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                }
                let rendered = self.render(&key).unwrap_or_default();
                self.record(resource, EventType::Modified, rendered);
            }
            return self.get(resource, namespace, name);
        }
        let rendered = self.render(&key).unwrap_or_default();
        self.remove(&key);
        Ok(rendered)
    }

    /// Removes an object for good, then its dependents (background propagation).
    fn remove(&mut self, key: &Key) {
        let Some(stored) = self.objects.remove(key) else {
            return;
        };
        self.rv += 1;
        let mut last = stored.object.clone();
        last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let uid = meta_str(&stored.object, "uid")
            .unwrap_or_default()
            .to_owned();
        self.record(key.0, EventType::Deleted, last);
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, s)| {
                s.object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|owners| owners.iter().any(|o| o["uid"] == json!(uid)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for dependent in dependents {
            let _ = self.delete(dependent.0, &dependent.1, &dependent.2);
        }
    }
}
