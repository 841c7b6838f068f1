//! The in-memory API server behaves like kube-apiserver where controllers depend on it; each
//! test talks to it through a real `kube::Client`.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use ntt_crds::{Medium, MediumJob, MediumJobSpec, MediumSpec, Source, Stage, Target};
use ntt_tests::apiserver::{ApiServer, ntt_types};
use serde_json::json;

async fn server() -> ApiServer {
    ApiServer::start(ntt_types()).await.expect("server starts")
}

fn medium(name: &str) -> Medium {
    Medium::new(
        name,
        MediumSpec {
            node_name: "dock-1".to_owned(),
            source: Source {
                device: Some(format!("/dev/disk/by-id/{name}")),
                ..Source::default()
            },
            target: Target::Copied,
            description: None,
            imaging: ntt_crds::ImagingOptions::default(),
            ignore: ntt_crds::IgnoreOptions::default(),
            deletion_policy: ntt_crds::DeletionPolicy::Retain,
            force: None,
        },
    )
}

fn job(name: &str, node: &str, owner: &Medium) -> MediumJob {
    let mut job = MediumJob::new(
        name,
        MediumJobSpec {
            medium: owner.name_any(),
            medium_hash: None,
            stage: Stage::Image,
            node_name: node.to_owned(),
            attempt: 1,
            source: owner.spec.source.clone(),
            target: Target::Copied,
            imaging: ntt_crds::ImagingOptions::default(),
            ignore: ntt_crds::IgnoreOptions::default(),
            description: None,
            force: false,
            image_profile: None,
            verify: None,
        },
    );
    job.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "ntt.hrdag.org/v1alpha1".to_owned(),
            kind: "Medium".to_owned(),
            name: owner.name_any(),
            uid: owner.uid().expect("created objects have a uid"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    ]);
    job.metadata.labels = Some([("tier".to_owned(), node.to_owned())].into());
    job
}

fn code(error: &kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn create_get_list_and_already_exists() {
    let server = server().await;
    let api: Api<Medium> = Api::namespaced(server.client("lab"), "lab");
    let created = api
        .create(&PostParams::default(), &medium("a"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.uid().is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let again = api
        .create(&PostParams::default(), &medium("a"))
        .await
        .unwrap_err();
    assert_eq!(code(&again), 409);
    api.create(&PostParams::default(), &medium("b"))
        .await
        .unwrap();
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let other: Api<Medium> = Api::namespaced(server.client("lab"), "elsewhere");
    assert!(
        other
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(code(&api.get("missing").await.unwrap_err()), 404);
}

#[tokio::test]
async fn generation_moves_with_the_spec_only_and_status_is_a_subresource() {
    let server = server().await;
    let api: Api<Medium> = Api::namespaced(server.client("lab"), "lab");
    let mut m = medium("a");
    m.status = Some(ntt_crds::MediumStatus {
        attempts: 7,
        ..Default::default()
    });
    let created = api.create(&PostParams::default(), &m).await.unwrap();
    assert!(created.status.is_none(), "create drops status");
    // A label change: new resourceVersion, same generation.
    let labelled = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    assert_ne!(labelled.resource_version(), created.resource_version());
    // A status write through the object is ignored; through /status it lands, same generation.
    let ignored = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"attempts": 3}})),
        )
        .await
        .unwrap();
    assert!(ignored.status.is_none());
    let status = api
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"attempts": 3}, "spec": {"target": "Imaged"}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.unwrap().attempts, 3);
    assert_eq!(
        status.spec.target,
        Target::Copied,
        "/status does not change the spec"
    );
    assert_eq!(status.metadata.generation, Some(1));
    let spec = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"target": "Imaged"}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
}

#[tokio::test]
async fn stale_writes_conflict_and_no_op_writes_change_nothing() {
    let server = server().await;
    let api: Api<Medium> = Api::namespaced(server.client("lab"), "lab");
    let created = api
        .create(&PostParams::default(), &medium("a"))
        .await
        .unwrap();
    let mut first = created.clone();
    first.spec.description = Some("one".to_owned());
    api.replace("a", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created.clone();
    stale.spec.description = Some("two".to_owned());
    assert_eq!(
        code(
            &api.replace("a", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );

    let current = api.get("a").await.unwrap();
    let same = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "one"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.resource_version(),
        current.resource_version(),
        "no-op patch"
    );
    let apply = PatchParams::apply("tester");
    let applied = api
        .patch("a", &apply, &Patch::Apply(json!({"apiVersion": "ntt.hrdag.org/v1alpha1", "kind": "Medium", "spec": {"description": "one"}})))
        .await
        .unwrap();
    assert_eq!(
        applied.resource_version(),
        current.resource_version(),
        "no-op apply"
    );
}

#[tokio::test]
async fn server_side_apply_tracks_managers_conflicts_and_force() {
    let server = server().await;
    let api: Api<Medium> = Api::namespaced(server.client("lab"), "lab");
    api.create(&PostParams::default(), &medium("a"))
        .await
        .unwrap();
    let status = |attempts: i32| json!({"apiVersion": "ntt.hrdag.org/v1alpha1", "kind": "Medium", "status": {"attempts": attempts, "phase": "Imaging"}});
    api.patch_status(
        "a",
        &PatchParams::apply("ntt-controller"),
        &Patch::Apply(status(1)),
    )
    .await
    .unwrap();
    let conflict = api
        .patch_status(
            "a",
            &PatchParams::apply("intruder"),
            &Patch::Apply(status(2)),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&conflict), 409);
    let forced = api
        .patch_status(
            "a",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(status(2)),
        )
        .await
        .unwrap();
    assert_eq!(forced.status.as_ref().unwrap().attempts, 2);
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.contains(&"intruder".to_owned()), "{managers:?}");
    // An apply that leaves out a field it set before removes it.
    let trimmed = api
        .patch_status(
            "a",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(json!({"apiVersion": "ntt.hrdag.org/v1alpha1", "kind": "Medium", "status": {"attempts": 2}})),
        )
        .await
        .unwrap();
    let raw = serde_json::to_value(&trimmed).unwrap();
    assert_eq!(
        raw["status"]["phase"], "Imaging",
        "still owned by ntt-controller"
    );
    // Applying a whole object that does not exist creates it.
    let created = api
        .patch(
            "b",
            &PatchParams::apply("tester"),
            &Patch::Apply(serde_json::to_value(medium("b")).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
}

#[tokio::test]
async fn json_patches_apply_and_fail_on_a_failed_test() {
    let server = server().await;
    let api: Api<Medium> = Api::namespaced(server.client("lab"), "lab");
    api.create(&PostParams::default(), &medium("a"))
        .await
        .unwrap();
    let add: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}
    ]))
    .unwrap();
    let patched = api
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(add))
        .await
        .unwrap();
    assert_eq!(patched.finalizers(), ["x/y"]);
    // A `test` that fails refuses the whole patch, as a guard against lost updates.
    let guarded: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": ["other"]},
        {"op": "replace", "path": "/metadata/finalizers", "value": []}
    ]))
    .unwrap();
    let refused = api
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(guarded))
        .await
        .unwrap_err();
    assert_eq!(code(&refused), 422);
    assert_eq!(api.get("a").await.unwrap().finalizers(), ["x/y"]);
}

#[tokio::test]
async fn finalizers_hold_a_deletion_and_owners_take_their_dependents_along() {
    let server = server().await;
    let client = server.client("lab");
    let media: Api<Medium> = Api::namespaced(client.clone(), "lab");
    let jobs: Api<MediumJob> = Api::namespaced(client, "lab");
    let mut m = medium("a");
    m.metadata.finalizers = Some(vec!["ntt.hrdag.org/cleanup".to_owned()]);
    let owner = media.create(&PostParams::default(), &m).await.unwrap();
    let mut held = job("a-image-1", "dock-1", &owner);
    held.metadata.finalizers = Some(vec!["ntt.hrdag.org/agent".to_owned()]);
    jobs.create(&PostParams::default(), &held).await.unwrap();
    jobs.create(&PostParams::default(), &job("a-image-2", "dock-1", &owner))
        .await
        .unwrap();

    let generation = media.get("a").await.unwrap().metadata.generation;
    let deleting = media.delete("a", &DeleteParams::default()).await.unwrap();
    let deleting = deleting.left().expect("still there, held by its finalizer");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        deleting.metadata.generation,
        generation.map(|g| g + 1),
        "marking for deletion bumps the generation"
    );
    assert_eq!(
        media.get("a").await.unwrap().metadata.deletion_timestamp,
        deleting.metadata.deletion_timestamp
    );
    let refused = media
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["ntt.hrdag.org/cleanup", "new/one"]}}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&refused), 422, "no new finalizers while deleting");
    media
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(
        code(&media.get("a").await.unwrap_err()),
        404,
        "gone with its last finalizer"
    );
    // Its jobs follow: the free one is gone, the held one waits for its finalizer.
    assert_eq!(code(&jobs.get("a-image-2").await.unwrap_err()), 404);
    let waiting = jobs.get("a-image-1").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    jobs.patch(
        "a-image-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": []}})),
    )
    .await
    .unwrap();
    assert_eq!(code(&jobs.get("a-image-1").await.unwrap_err()), 404);
}

#[tokio::test]
async fn label_and_selectable_field_selectors_filter_lists_and_watches() {
    let server = server().await;
    let client = server.client("lab");
    let media: Api<Medium> = Api::namespaced(client.clone(), "lab");
    let jobs: Api<MediumJob> = Api::namespaced(client, "lab");
    let owner = media
        .create(&PostParams::default(), &medium("a"))
        .await
        .unwrap();
    jobs.create(&PostParams::default(), &job("j1", "dock-1", &owner))
        .await
        .unwrap();
    jobs.create(&PostParams::default(), &job("j2", "dock-2", &owner))
        .await
        .unwrap();
    let names = |list: kube::core::ObjectList<MediumJob>| {
        list.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            jobs.list(&ListParams::default().fields("spec.nodeName=dock-2"))
                .await
                .unwrap()
        ),
        ["j2"]
    );
    assert_eq!(
        names(
            jobs.list(&ListParams::default().labels("tier in (dock-1)"))
                .await
                .unwrap()
        ),
        ["j1"]
    );
    assert_eq!(
        names(
            jobs.list(&ListParams::default().fields("metadata.name!=j1"))
                .await
                .unwrap()
        ),
        ["j2"]
    );
    let unsupported = jobs
        .list(&ListParams::default().fields("spec.stage=Image"))
        .await
        .unwrap_err();
    assert_eq!(code(&unsupported), 400, "only selectable fields");

    let mut stream = watcher(
        jobs.clone(),
        watcher::Config::default().fields("spec.nodeName=dock-1"),
    )
    .applied_objects()
    .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.name_any(), "j1");
    jobs.create(&PostParams::default(), &job("j3", "dock-2", &owner))
        .await
        .unwrap();
    jobs.create(&PostParams::default(), &job("j4", "dock-1", &owner))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.name_any(), "j4", "dock-2's job is not seen");
}

#[tokio::test]
async fn watches_replay_from_a_resource_version_send_bookmarks_and_expire_when_compacted() {
    let server = server().await;
    let api: Api<Medium> = Api::namespaced(server.client("lab"), "lab");
    let created = api
        .create(&PostParams::default(), &medium("a"))
        .await
        .unwrap();
    let rv = created.resource_version().unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"description": "x"}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let events: Vec<String> = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .map(|e| match e.unwrap() {
            WatchEvent::Added(_) => "added".to_owned(),
            WatchEvent::Modified(_) => "modified".to_owned(),
            WatchEvent::Deleted(_) => "deleted".to_owned(),
            WatchEvent::Bookmark(_) => "bookmark".to_owned(),
            WatchEvent::Error(e) => format!("error {}", e.code),
        })
        .collect()
        .await;
    assert_eq!(events[..2], ["modified", "deleted"], "{events:?}");
    assert!(
        events[2..].iter().all(|e| e == "bookmark") && events.len() > 2,
        "{events:?}"
    );

    server.compact();
    let expired: Vec<WatchEvent<Medium>> = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(&expired[..], [WatchEvent::Error(e)] if e.code == 410),
        "{expired:?}"
    );

    // kube's watcher recovers from 410 by listing again.
    api.create(&PostParams::default(), &medium("b"))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let seen = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.name_any(), "b");
}

#[tokio::test]
async fn the_crd_cel_rules_refuse_bad_media() {
    let server = server().await;
    let api: Api<Medium> = Api::namespaced(server.client("lab"), "lab");
    let mut two = medium("two");
    two.spec.source.image = Some("/srv/x.img".to_owned());
    let refused = api.create(&PostParams::default(), &two).await.unwrap_err();
    assert_eq!(code(&refused), 422);
    assert!(
        refused
            .to_string()
            .contains("exactly one of device, image, directory"),
        "{refused}"
    );
    api.create(&PostParams::default(), &medium("a"))
        .await
        .unwrap();
    let moved = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"source": {"device": "/dev/sdz"}}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&moved), 422);
    assert!(moved.to_string().contains("source is immutable"), "{moved}");
}

/// A MediumJob is a command to a privileged agent; once made, its spec cannot be
/// changed (an existing job cannot be turned into another command), while its status can.
#[tokio::test]
async fn a_medium_jobs_spec_is_immutable_and_its_status_is_not() {
    let server = server().await;
    let client = server.client("lab");
    let media: Api<Medium> = Api::namespaced(client.clone(), "lab");
    let jobs: Api<MediumJob> = Api::namespaced(client, "lab");
    let owner = media
        .create(&PostParams::default(), &medium("owner"))
        .await
        .unwrap();
    jobs.create(
        &PostParams::default(),
        &job("owner-image-1", "dock-1", &owner),
    )
    .await
    .unwrap();
    for change in [
        json!({"spec": {"source": {"device": "/dev/nvme0n1"}}}),
        json!({"spec": {"stage": "Purge"}}),
        json!({"spec": {"nodeName": "dock-2"}}),
    ] {
        let refused = jobs
            .patch(
                "owner-image-1",
                &PatchParams::default(),
                &Patch::Merge(&change),
            )
            .await
            .unwrap_err();
        assert_eq!(code(&refused), 422, "{change}");
        assert!(
            refused.to_string().contains("spec is immutable"),
            "{refused}"
        );
    }
    jobs.patch_status(
        "owner-image-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"state": "Running"}})),
    )
    .await
    .unwrap();
}

/// The CRD's structural schema as a real API server applies it: unknown fields
/// pruned, defaults filled, types, enums and lengths refused with 422 (the in-memory server
/// used to take anything the CEL rules allowed).
#[tokio::test]
async fn the_crd_schema_prunes_defaults_and_refuses_like_the_real_server() {
    let server = server().await;
    let client = server.client("lab");
    let media: Api<Medium> = Api::namespaced(client.clone(), "lab");
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "lab",
        &kube::api::ApiResource::erase::<Medium>(&()),
    );
    let mut manifest = serde_json::to_value(medium("pruned")).unwrap();
    manifest["spec"]["unknownField"] = json!("dropped");
    manifest["spec"]
        .as_object_mut()
        .unwrap()
        .remove("deletionPolicy");
    manifest["spec"].as_object_mut().unwrap().remove("target");
    let object: kube::api::DynamicObject = serde_json::from_value(manifest).unwrap();
    let created = raw.create(&PostParams::default(), &object).await.unwrap();
    assert!(created.data["spec"].get("unknownField").is_none(), "pruned");
    assert_eq!(
        created.data["spec"]["deletionPolicy"], "Retain",
        "defaulted"
    );
    assert_eq!(created.data["spec"]["target"], "Copied", "defaulted");

    let mut bad = serde_json::to_value(medium("bad-target")).unwrap();
    bad["spec"]["target"] = json!("Sometimes");
    let object: kube::api::DynamicObject = serde_json::from_value(bad).unwrap();
    let refused = raw
        .create(&PostParams::default(), &object)
        .await
        .unwrap_err();
    assert_eq!(code(&refused), 422);
    assert!(
        refused
            .to_string()
            .contains("spec.target: Unsupported value"),
        "{refused}"
    );

    // A status over the schema's limits is refused too (a job message past 4096 characters).
    let owner = media.get("pruned").await.unwrap();
    let jobs: Api<MediumJob> = Api::namespaced(client, "lab");
    jobs.create(
        &PostParams::default(),
        &job("pruned-image-1", "dock-1", &owner),
    )
    .await
    .unwrap();
    let long = json!({"apiVersion": "ntt.hrdag.org/v1alpha1", "kind": "MediumJob",
                      "status": {"state": "Failed", "error": {"class": "Transient", "message": "x".repeat(5000)}}});
    let refused = jobs
        .patch_status(
            "pruned-image-1",
            &PatchParams::apply("ntt-agent"),
            &Patch::Apply(long),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&refused), 422);
    assert!(
        refused
            .to_string()
            .contains("status.error.message: Too long"),
        "{refused}"
    );
    let wrong_state = json!({"apiVersion": "ntt.hrdag.org/v1alpha1", "kind": "MediumJob",
                             "status": {"state": "Sleeping"}});
    let refused = jobs
        .patch_status(
            "pruned-image-1",
            &PatchParams::apply("ntt-agent"),
            &Patch::Apply(wrong_state),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&refused), 422);
}

#[tokio::test]
async fn leases_and_events_are_served() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::events::v1::Event;
    let server = server().await;
    let client = server.client("lab");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "lab");
    let lease: Lease = serde_json::from_value(
        json!({"metadata": {"name": "ntt-controller"}, "spec": {"holderIdentity": "a"}}),
    )
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let got = leases.get("ntt-controller").await.unwrap();
    assert_eq!(got.spec.unwrap().holder_identity.as_deref(), Some("a"));
    let events: Api<Event> = Api::namespaced(client, "lab");
    let event: Event = serde_json::from_value(json!({"metadata": {"name": "e1"}, "eventTime": "2026-12-01T12:00:00.000000Z", "reason": "Test", "action": "Test", "reportingController": "t", "reportingInstance": "t"})).unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    assert_eq!(
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

/// Faults on demand: a refused write fails with 500 the number of times asked, a
/// dropped watch ends the stream at once, delayed events arrive late but in order.
#[tokio::test]
async fn faults_refuse_writes_drop_watches_and_delay_events() {
    let server = server().await;
    let media: Api<Medium> = Api::namespaced(server.client("lab"), "lab");
    server.refuse("create", "media", 2);
    for _ in 0..2 {
        let refused = media
            .create(&PostParams::default(), &medium("a"))
            .await
            .unwrap_err();
        assert_eq!(code(&refused), 500);
    }
    media
        .create(&PostParams::default(), &medium("a"))
        .await
        .unwrap();

    let mut events = media
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, Some(WatchEvent::Added(_))), "{first:?}");
    server.drop_watches();
    let ended = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .expect("the dropped watch ends at once")
        .unwrap();
    assert!(ended.is_none(), "{ended:?}");

    server.delay_events(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let mut events = media
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let first = events.try_next().await.unwrap();
    assert!(matches!(first, Some(WatchEvent::Added(_))));
    assert!(started.elapsed() >= Duration::from_millis(300));
}
