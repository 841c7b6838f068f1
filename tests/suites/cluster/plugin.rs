//! `kubectl ntt` against the in-memory API server.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ntt_controller::plugin;
use ntt_crds::condition::{PAUSED_ANNOTATION, RETRY_ANNOTATION};
use ntt_crds::{Medium, MediumSpec, Source, Target};
use ntt_tests::apiserver::{ApiServer, ntt_types};
use serde_json::json;

async fn setup() -> (ApiServer, Api<Medium>) {
    let server = ApiServer::start(ntt_types()).await.expect("server");
    let api: Api<Medium> = Api::namespaced(server.client("lab"), "lab");
    let medium = Medium::new(
        "box-7-disk-2",
        MediumSpec {
            node_name: "dock-1".to_owned(),
            source: Source {
                device: Some("/dev/sdb".to_owned()),
                ..Source::default()
            },
            target: Target::Copied,
            description: None,
            imaging: ntt_crds::ImagingOptions::default(),
            ignore: ntt_crds::IgnoreOptions::default(),
            deletion_policy: ntt_crds::DeletionPolicy::Retain,
            force: None,
        },
    );
    api.create(&PostParams::default(), &medium)
        .await
        .expect("create");
    let status = json!({"status": {"phase": "Copying", "reason": "InProgress", "health": "incomplete",
        "mediumHash": "726cdff6dc73e3dd1abe0e4c9762dff5",
        "progress": {"summary": "copying: 40 of 100 files (40%)"},
        "lastError": {"class": "Transient", "message": "database unreachable"},
        "conditions": [{"type": "Imaged", "status": "True", "reason": "Succeeded", "message": "", "lastTransitionTime": "2026-12-01T12:00:00Z"}]}});
    api.patch_status(
        "box-7-disk-2",
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .expect("status");
    (server, api)
}

#[tokio::test]
async fn status_lists_media_with_phase_health_and_progress() {
    let (server, _api) = setup().await;
    let mut out = Vec::new();
    plugin::status(server.client("lab"), Some("lab"), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("box-7-disk-2"))
        .expect("the medium's line");
    for field in [
        "lab",
        "Copying",
        "dock-1",
        "incomplete",
        "copying: 40 of 100 files (40%)",
        "InProgress",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(
        text.contains("last error (Transient): database unreachable"),
        "{text}"
    );
    let mut other = Vec::new();
    plugin::status(server.client("lab"), Some("elsewhere"), &mut other)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(other).unwrap().lines().count(),
        1,
        "only the header"
    );
}

#[tokio::test]
async fn retry_pause_and_resume_set_the_annotations_the_controller_reads() {
    let (_server, api) = setup().await;
    let mut out = Vec::new();
    plugin::retry(&api, "box-7-disk-2", &mut out).await.unwrap();
    let first = api.get("box-7-disk-2").await.unwrap().annotations()[RETRY_ANNOTATION].clone();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    plugin::retry(&api, "box-7-disk-2", &mut out).await.unwrap();
    let second = api.get("box-7-disk-2").await.unwrap().annotations()[RETRY_ANNOTATION].clone();
    assert_ne!(first, second, "every retry is a new value");
    plugin::pause(&api, "box-7-disk-2", true, &mut out)
        .await
        .unwrap();
    assert_eq!(
        api.get("box-7-disk-2").await.unwrap().annotations()[PAUSED_ANNOTATION],
        "true"
    );
    plugin::pause(&api, "box-7-disk-2", false, &mut out)
        .await
        .unwrap();
    assert!(
        !api.get("box-7-disk-2")
            .await
            .unwrap()
            .annotations()
            .contains_key(PAUSED_ANNOTATION)
    );
    let missing = plugin::retry(&api, "no-such-medium", &mut out)
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("no-such-medium"), "{missing}");
}

#[tokio::test]
async fn report_prints_the_status_and_finds_the_node_and_hash() {
    let (_server, api) = setup().await;
    let mut out = Vec::new();
    let (node, hash) = plugin::report_status(&api, "box-7-disk-2", &mut out)
        .await
        .unwrap();
    assert_eq!(node, "dock-1");
    assert_eq!(hash.as_deref(), Some("726cdff6dc73e3dd1abe0e4c9762dff5"));
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("Imaged True (Succeeded)")
            && text.contains("Transient: database unreachable"),
        "{text}"
    );
}
