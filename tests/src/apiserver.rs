//! An in-memory Kubernetes API server for tests: a real `kube::Client` talks to it over HTTP.
//!
//! ```text
//!   kube::Client ──HTTP──▶ axum (routes: /api/v1/..., /apis/{group}/{version}/...)
//!                              │
//!                              ▼
//!                           Store (objects, history, field managers)  ◀── tests inspect
//! ```
//!
//! Faithful where controllers depend on it (see `store` for the write rules): list and watch
//! with resourceVersion and bookmarks, initial events on watch, generation, the status
//! subresource, 409 on stale writes and apply conflicts, no-op writes, finalizers and
//! deletionTimestamp, ownerReference garbage collection, merge / JSON / server-side-apply
//! patches with field managers, label and field selectors (with CRD selectable fields), the
//! CRD's structural schema (pruning, defaulting, types, required, enums, lengths, patterns,
//! ranges: `schema`) and its CEL rules. Not modelled: authentication, admission webhooks,
//! pagination (lists return everything), foreground deletion, strategic merge (treated as a
//! merge patch).

pub mod fields;
pub mod schema;
pub mod select;
pub mod store;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};
use tokio::sync::watch;

use select::Selector;
use store::{ApiError, ResourceType, Store, Write};

/// Bookmarks are sent this often on watches that ask for them.
const BOOKMARK_EVERY: Duration = Duration::from_millis(500);

struct Shared {
    store: Mutex<Store>,
    changed: watch::Sender<u64>,
    requests: Mutex<Vec<Request>>,
    faults: Mutex<Faults>,
    /// Service proxy backends: `(namespace, service, port name)` → where the pods listen.
    services: Mutex<Vec<(String, String, String, SocketAddr)>>,
}

/// Faults a test asks for, to see its clients survive what real API servers do at times.
#[derive(Debug, Default)]
struct Faults {
    /// `(verb, resource, times)`: the next `times` such requests fail with 500.
    refuse: Vec<(String, String, u32)>,
    /// Bumped to end every open watch (as an API server restart or a load balancer does).
    watch_epoch: u64,
    /// Each watch event waits this long before it is sent.
    event_delay: Duration,
}

/// One request as RBAC sees it: who asked, the verb, and the resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    /// The user: the bearer token a client sends (`anonymous` without one).
    pub user: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group (`""` for the core group).
    pub group: String,
    /// Plural, with `/status` for the status subresource.
    pub resource: String,
    /// The namespace (none for cluster-wide requests).
    pub namespace: Option<String>,
    /// The object named (for `resourceNames` rules), when the path names one.
    pub name: Option<String>,
}

/// A running in-memory API server; stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    shared: Arc<SharedHandle>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Shared state behind a newtype, so `ApiServer` can be `Debug`.
pub struct SharedHandle(Shared);

impl std::fmt::Debug for SharedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedHandle")
    }
}

/// A resource type from a CRD (its first version): names, scope, status subresource, CEL
/// schema and selectable fields.
pub fn resource_from_crd(crd: &CustomResourceDefinition) -> ResourceType {
    let version = &crd.spec.versions[0];
    ResourceType {
        group: crd.spec.group.clone(),
        version: version.name.clone(),
        plural: crd.spec.names.plural.clone(),
        kind: crd.spec.names.kind.clone(),
        namespaced: crd.spec.scope == "Namespaced",
        status_subresource: version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some()),
        schema: version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok()),
        selectable: version
            .selectable_fields
            .as_ref()
            .map(|f| f.iter().map(|f| f.json_path.clone()).collect())
            .unwrap_or_default(),
    }
}

/// The built-in types controllers here use: leases, events (both APIs), config maps.
pub fn builtin_types() -> Vec<ResourceType> {
    let t = |group: &str, version: &str, plural: &str, kind: &str| ResourceType {
        group: group.to_owned(),
        version: version.to_owned(),
        plural: plural.to_owned(),
        kind: kind.to_owned(),
        namespaced: true,
        status_subresource: false,
        schema: None,
        selectable: Vec::new(),
    };
    vec![
        t("coordination.k8s.io", "v1", "leases", "Lease"),
        t("events.k8s.io", "v1", "events", "Event"),
        t("", "v1", "events", "Event"),
        t("", "v1", "configmaps", "ConfigMap"),
    ]
}

/// Everything NTT's cluster uses: the `Medium` and `MediumJob` CRDs and the built-in types.
pub fn ntt_types() -> Vec<ResourceType> {
    use kube::CustomResourceExt;
    let mut types = vec![
        resource_from_crd(&ntt_crds::Medium::crd()),
        resource_from_crd(&ntt_crds::MediumJob::crd()),
    ];
    types.extend(builtin_types());
    types
}

impl ApiServer {
    /// Starts a server for `types` on a free local port.
    pub async fn start(types: Vec<ResourceType>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(SharedHandle(Shared {
            store: Mutex::new(Store::new(types)),
            changed,
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            services: Mutex::new(Vec::new()),
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    match proxied(uri.path()) {
                        Some(target) => proxy(&state, &method, &uri, &headers, body, target).await,
                        None => handle(&state, &method, &uri, &headers, &body),
                    }
                }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            shared,
            addr,
            stop: Some(stop),
        })
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for the server, with `namespace` as its default namespace.
    pub fn client(&self, namespace: &str) -> kube::Client {
        let uri: axum::http::Uri = self.url().parse().expect("local URL parses");
        let mut config = kube::Config::new(uri);
        namespace.clone_into(&mut config.default_namespace);
        kube::Client::try_from(config).expect("a client for the local server")
    }

    /// A client that authenticates as `user` (a bearer token the server takes as the user's
    /// name), so that its requests can be checked against RBAC ([`ApiServer::requests`]).
    pub async fn client_as(&self, namespace: &str, user: &str) -> kube::Client {
        kube::Client::try_from(self.config_as(namespace, user).await)
            .expect("a client for the local server")
    }

    /// The client configuration [`ApiServer::client_as`] uses, for clients built otherwise.
    pub async fn config_as(&self, namespace: &str, user: &str) -> kube::Config {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig(namespace, user))
            .expect("the kubeconfig parses");
        kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("a client config")
    }

    /// A kubeconfig for the server, as `user` (its bearer token), in `namespace`.
    pub fn kubeconfig(&self, namespace: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: test\n  user:\n    token: {user}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {namespace}\ncurrent-context: test\n",
            self.url()
        )
    }

    /// Fails the next `times` requests with `verb` on `resource` (a plural, or `plural/status`)
    /// with 500 Internal Server Error, as an overloaded or restarting API server does.
    pub fn refuse(&self, verb: &str, resource: &str, times: u32) {
        self.faults()
            .refuse
            .push((verb.to_owned(), resource.to_owned(), times));
    }

    /// Ends every open watch at once (clients must watch again from their resourceVersion).
    pub fn drop_watches(&self) {
        self.faults().watch_epoch += 1;
        self.shared.0.changed.send_modify(|n| *n += 1);
    }

    /// Delays every watch event by `delay` from now on.
    pub fn delay_events(&self, delay: Duration) {
        self.faults().event_delay = delay;
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.shared
            .0
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every request so far that a resource was named in, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .0
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The storage, for inspection.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.shared
            .0
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends what the service proxy receives for port `port` of Service `namespace/name`
    /// (`/api/v1/namespaces/NS/services/NAME:PORT/proxy/...`) to `backend`, as the API server
    /// does to the Service's endpoints.
    pub fn serve_service(&self, namespace: &str, name: &str, port: &str, backend: SocketAddr) {
        self.shared
            .0
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((
                namespace.to_owned(),
                name.to_owned(),
                port.to_owned(),
                backend,
            ));
    }

    /// Forgets the watch history (watches from older resourceVersions get 410 Gone).
    pub fn compact(&self) {
        self.store().compact();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Who asked: the bearer token is the user's name (`ApiServer::client_as`).
fn user_of(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("anonymous")
        .to_owned()
}

/// Records who asked for what, as RBAC names it.
fn record(
    shared: &Shared,
    store: &Store,
    method: &Method,
    target: &Target,
    params: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Option<ApiError> {
    let user = user_of(headers);
    let watch = param(params, "watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => other,
    };
    let t = &store.types[target.resource];
    let resource = if target.status {
        format!("{}/status", t.plural)
    } else {
        t.plural.clone()
    };
    let mut requests = shared
        .requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // OwnerReferencesPermissionEnforcement: setting `blockOwnerDeletion` on a reference needs
    // `update` on the owner's `finalizers` subresource.
    if matches!(verb, "create" | "update" | "patch")
        && let Ok(object) = serde_json::from_slice::<Value>(body)
    {
        for owner in object["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["blockOwnerDeletion"] == true)
        {
            let api_version = owner["apiVersion"].as_str().unwrap_or_default();
            let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            if let Some(owner_type) = store
                .types
                .iter()
                .find(|o| o.group == group && Some(o.kind.as_str()) == owner["kind"].as_str())
            {
                requests.push(Request {
                    user: user.clone(),
                    verb: "update".to_owned(),
                    group: owner_type.group.clone(),
                    resource: format!("{}/finalizers", owner_type.plural),
                    namespace: target.namespace.clone(),
                    name: owner["name"].as_str().map(str::to_owned),
                });
            }
        }
    }
    let mut faults = shared
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let refused = faults
        .refuse
        .iter_mut()
        .find(|(v, r, times)| v == verb && *r == resource && *times > 0)
        .map(|(_, _, times)| *times -= 1)
        .map(|()| ApiError {
            code: 500,
            reason: "InternalError",
            message: format!("{verb} {resource}: refused (a fault the test asked for)"),
        });
    requests.push(Request {
        user,
        verb: verb.to_owned(),
        group: t.group.clone(),
        resource,
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    });
    refused
}

/// A service proxy request: namespace, service, port name (empty: the only one) and the path
/// on the service.
struct Proxied {
    namespace: String,
    service: String,
    port: String,
    rest: String,
}

/// `/api/v1/namespaces/NS/services/[SCHEME:]NAME[:PORT]/proxy[/REST]`.
fn proxied(path: &str) -> Option<Proxied> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (namespace, rest) = rest.split_once("/services/")?;
    let (service, rest) = rest.split_once("/proxy")?;
    if namespace.contains('/') || service.contains('/') {
        return None;
    }
    let parts: Vec<&str> = service.split(':').collect();
    let (service, port) = match parts.as_slice() {
        [name] => (*name, ""),
        [name, port] => (*name, *port),
        [_scheme, name, port] => (*name, *port),
        _ => return None,
    };
    Some(Proxied {
        namespace: namespace.to_owned(),
        service: service.to_owned(),
        port: port.to_owned(),
        rest: if rest.is_empty() { "/" } else { rest }.to_owned(),
    })
}

/// The service proxy: records `VERB services/proxy` for RBAC, then forwards the request to the
/// Service's backend and its answer back (503 when nothing listens, as for a Service without
/// ready endpoints).
async fn proxy(
    state: &Arc<SharedHandle>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    target: Proxied,
) -> Response {
    let shared = &state.0;
    let user = user_of(headers);
    let verb = match method.as_str() {
        "GET" | "HEAD" | "OPTIONS" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        other => other,
    };
    shared
        .requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Request {
            user,
            verb: verb.to_owned(),
            group: String::new(),
            resource: "services/proxy".to_owned(),
            namespace: Some(target.namespace.clone()),
            name: Some(target.service.clone()),
        });
    let backend = shared
        .services
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(ns, name, port, _)| {
            *ns == target.namespace
                && *name == target.service
                && (target.port.is_empty() || *port == target.port)
        })
        .map(|s| s.3);
    let unavailable = |message: String| {
        error(&ApiError {
            code: 503,
            reason: "ServiceUnavailable",
            message,
        })
    };
    let Some(backend) = backend else {
        return error(&ApiError {
            code: 404,
            reason: "NotFound",
            message: format!(
                "services \"{}\" not found (or no port {:?})",
                target.service, target.port
            ),
        });
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let forward = axum::http::Request::builder()
        .method(method.clone())
        .uri(format!("{}{query}", target.rest))
        .body(kube::client::Body::from(body.to_vec()));
    let Ok(forward) = forward else {
        return unavailable("cannot build the proxied request".to_owned());
    };
    let client = match format!("http://{backend}")
        .parse::<Uri>()
        .map_err(|e| e.to_string())
        .and_then(|uri| {
            // The API server answers with what the backend said; it never retries.
            let mut config = kube::Config::new(uri);
            config.default_retry = false;
            kube::Client::try_from(config).map_err(|e| e.to_string())
        }) {
        Ok(client) => client,
        Err(e) => return unavailable(e),
    };
    match client.send(forward).await {
        Ok(answer) => {
            let (parts, body) = answer.into_parts();
            let mut response = Response::new(Body::new(body));
            *response.status_mut() = parts.status;
            *response.headers_mut() = parts.headers;
            response
        }
        Err(e) => unavailable(format!("error trying to reach service: {e}")),
    }
}

/// The parts of a request path.
struct Target {
    resource: usize,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(store: &Store, path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some((*name).to_owned()), false),
        [plural, name, "status"] => (*plural, Some((*name).to_owned()), true),
        _ => return None,
    };
    let resource = store.resource(group, version, plural)?;
    Some(Target {
        resource,
        namespace,
        name,
        status,
    })
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn respond(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn error(e: &ApiError) -> Response {
    respond(e.code, &e.status())
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice(body))
        .map_err(|e| ApiError {
            code: 400,
            reason: "BadRequest",
            message: format!("cannot parse the body: {e}"),
        })
}

#[expect(
    clippy::too_many_lines,
    reason = "one dispatch over method and path; each arm is short"
)]
fn handle(
    state: &Arc<SharedHandle>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let shared = &state.0;
    let params = query(uri);
    let manager = param(&params, "fieldManager")
        .unwrap_or("unknown")
        .to_owned();
    let mut store = shared
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if uri.path() == "/version" {
        return respond(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-ntt-test"}),
        );
    }
    let Some(target) = parse_path(&store, uri.path()) else {
        return error(&ApiError {
            code: 404,
            reason: "NotFound",
            message: format!(
                "the server could not find the requested resource ({})",
                uri.path()
            ),
        });
    };
    if let Some(refused) = record(shared, &store, method, &target, &params, headers, body) {
        return error(&refused);
    }
    let namespace = target.namespace.clone().unwrap_or_default();
    let before = store.resource_version();
    let result: Result<(u16, Value), ApiError> =
        (|| match (method.clone(), &target.name) {
            (Method::GET, None) => {
                let labels = Selector::labels(param(&params, "labelSelector").unwrap_or(""))
                    .map_err(|e| ApiError {
                        code: 400,
                        reason: "BadRequest",
                        message: e.to_string(),
                    })?;
                let fields = Selector::fields(param(&params, "fieldSelector").unwrap_or(""))
                    .map_err(|e| ApiError {
                        code: 400,
                        reason: "BadRequest",
                        message: e.to_string(),
                    })?;
                store.check_fields(target.resource, &fields)?;
                if param(&params, "watch").is_some_and(|w| w == "true" || w == "1") {
                    return Err(ApiError {
                        code: 0,
                        reason: "Watch",
                        message: String::new(),
                    });
                }
                let t = &store.types[target.resource];
                let items = store.list(
                    target.resource,
                    target.namespace.as_deref(),
                    &labels,
                    &fields,
                );
                Ok((
                    200,
                    json!({
                        "apiVersion": t.api_version(),
                        "kind": format!("{}List", t.kind),
                        "metadata": {"resourceVersion": store.resource_version().to_string()},
                        "items": items,
                    }),
                ))
            }
            (Method::GET, Some(name)) => Ok((200, store.get(target.resource, &namespace, name)?)),
            (Method::POST, None) => {
                let object = parse_body(body)?;
                Ok((
                    201,
                    store.create(target.resource, &namespace, object, &manager)?,
                ))
            }
            (Method::PUT, Some(name)) => {
                let object = parse_body(body)?;
                Ok((
                    200,
                    store.write(
                        target.resource,
                        &namespace,
                        name,
                        target.status,
                        Write::Replace(object),
                        &manager,
                    )?,
                ))
            }
            (Method::PATCH, Some(name)) => {
                let patch = parse_body(body)?;
                let content_type = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let write = if content_type.starts_with("application/apply-patch") {
                    if param(&params, "fieldManager").is_none() {
                        return Err(ApiError {
                            code: 400,
                            reason: "BadRequest",
                            message: "PATCH with apply requires a fieldManager".to_owned(),
                        });
                    }
                    Write::Apply {
                        config: patch,
                        force: param(&params, "force") == Some("true"),
                    }
                } else if content_type.starts_with("application/json-patch") {
                    Write::Json(patch)
                } else {
                    Write::Merge(patch)
                };
                Ok((
                    200,
                    store.write(
                        target.resource,
                        &namespace,
                        name,
                        target.status,
                        write,
                        &manager,
                    )?,
                ))
            }
            (Method::DELETE, Some(name)) => {
                Ok((200, store.delete(target.resource, &namespace, name)?))
            }
            _ => Err(ApiError {
                code: 405,
                reason: "MethodNotAllowed",
                message: format!("{method} is not supported here"),
            }),
        })();
    if store.resource_version() != before {
        shared.changed.send_replace(store.resource_version());
    }
    match result {
        Ok((code, value)) => respond(code, &value),
        Err(e) if e.reason == "Watch" => {
            drop(store);
            watch_response(state.clone(), target, &params)
        }
        Err(e) => error(&e),
    }
}

struct WatchState {
    shared: Arc<SharedHandle>,
    resource: usize,
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
    cursor: u64,
    pending: std::collections::VecDeque<Value>,
    bookmarks: bool,
    deadline: tokio::time::Instant,
    next_bookmark: tokio::time::Instant,
    receiver: watch::Receiver<u64>,
    failed: bool,
    /// The fault epoch the watch started in; a later one ends it.
    epoch: u64,
}

#[expect(
    clippy::too_many_lines,
    reason = "the watch stream's state machine reads best in one piece"
)]
fn watch_response(
    shared: Arc<SharedHandle>,
    target: Target,
    params: &[(String, String)],
) -> Response {
    let labels = Selector::labels(param(params, "labelSelector").unwrap_or("")).unwrap_or_default();
    let fields = Selector::fields(param(params, "fieldSelector").unwrap_or("")).unwrap_or_default();
    let timeout = param(params, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let bookmarks = param(params, "allowWatchBookmarks") == Some("true");
    let initial = param(params, "sendInitialEvents") == Some("true");
    let rv = param(params, "resourceVersion").unwrap_or("");
    let store = shared
        .0
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut pending = std::collections::VecDeque::new();
    let t = &store.types[target.resource];
    let cursor = if rv.is_empty() || rv == "0" || initial {
        // Current state first, as ADDED events (then a bookmark marking their end).
        for object in store.list(
            target.resource,
            target.namespace.as_deref(),
            &labels,
            &fields,
        ) {
            pending.push_back(json!({"type": "ADDED", "object": object}));
        }
        if initial {
            pending.push_back(json!({
                "type": "BOOKMARK",
                "object": {
                    "apiVersion": t.api_version(),
                    "kind": t.kind,
                    "metadata": {
                        "resourceVersion": store.resource_version().to_string(),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                },
            }));
        }
        store.resource_version()
    } else {
        match rv.parse::<u64>() {
            Ok(rv) => {
                if let Err(e) = store.changes_since(target.resource, rv) {
                    pending.push_back(json!({"type": "ERROR", "object": e.status()}));
                }
                rv
            }
            Err(_) => {
                return error(&ApiError {
                    code: 400,
                    reason: "BadRequest",
                    message: format!("invalid resourceVersion {rv:?}"),
                });
            }
        }
    };
    let failed = pending.iter().any(|e| e["type"] == "ERROR");
    drop(store);
    let now = tokio::time::Instant::now();
    let receiver = shared.0.changed.subscribe();
    let epoch = shared
        .0
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .watch_epoch;
    let state = WatchState {
        epoch,
        shared,
        resource: target.resource,
        namespace: target.namespace,
        labels,
        fields,
        cursor,
        pending,
        bookmarks,
        deadline: now + Duration::from_secs(timeout),
        next_bookmark: now + BOOKMARK_EVERY,
        receiver,
        failed,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            let (epoch, delay) = {
                let faults = state
                    .shared
                    .0
                    .faults
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (faults.watch_epoch, faults.event_delay)
            };
            if epoch != state.epoch {
                return None;
            }
            if let Some(event) = state.pending.pop_front() {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mut line = event.to_string();
                line.push('\n');
                return Some((Ok::<Bytes, Infallible>(Bytes::from(line)), state));
            }
            if state.failed {
                return None;
            }
            let now = tokio::time::Instant::now();
            if now >= state.deadline {
                return None;
            }
            {
                let store = state
                    .shared
                    .0
                    .store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match store.changes_since(state.resource, state.cursor) {
                    Ok(changes) => {
                        for change in changes {
                            state.cursor = change.rv;
                            let object = &change.object;
                            let in_namespace = state.namespace.as_deref().is_none_or(|ns| {
                                object["metadata"]["namespace"].as_str() == Some(ns)
                            });
                            if in_namespace
                                && state.labels.matches_labels(object)
                                && state.fields.matches_fields(object)
                            {
                                state.pending.push_back(
                                    json!({"type": change.kind.as_str(), "object": object}),
                                );
                            }
                        }
                        state.cursor = state.cursor.max(store.resource_version());
                    }
                    Err(e) => {
                        state
                            .pending
                            .push_back(json!({"type": "ERROR", "object": e.status()}));
                        state.failed = true;
                    }
                }
                if state.pending.is_empty() && state.bookmarks && now >= state.next_bookmark {
                    let t = &store.types[state.resource];
                    state.pending.push_back(json!({
                        "type": "BOOKMARK",
                        "object": {
                            "apiVersion": t.api_version(),
                            "kind": t.kind,
                            "metadata": {"resourceVersion": state.cursor.to_string()},
                        },
                    }));
                    state.next_bookmark = now + BOOKMARK_EVERY;
                }
            }
            if !state.pending.is_empty() {
                continue;
            }
            let wake = state.deadline.min(state.next_bookmark);
            let _ = tokio::time::timeout_at(wake, state.receiver.changed()).await;
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}
