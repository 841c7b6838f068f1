//! The CRDs as the API server sees them: the chart's copy is what `crdgen` writes, every field
//! is documented (for `kubectl explain`), and the CEL rules accept good manifests and refuse
//! bad ones (evaluated client-side with kube's CEL interpreter, the API server's rules).

#![expect(clippy::unwrap_used, reason = "tests fail with the error")]
#![allow(
    clippy::disallowed_methods,
    clippy::needless_pass_by_value,
    reason = "test code: the drift check names the path itself; builders take values"
)]

use kube::CustomResourceExt;
use ntt_crds::{Medium, MediumJob};
use serde_json::{Value, json};

fn schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// Validates a Medium manifest (and, for an update, the old one) against the CRD's CEL rules;
/// the messages of the rules that failed.
fn medium_errors(object: &Value, old: Option<&Value>) -> Vec<String> {
    let schema = schema_of(&Medium::crd());
    match kube::core::cel::Validator::new().validate(&schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

fn medium(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "ntt.hrdag.org/v1alpha1",
        "kind": "Medium",
        "metadata": {"name": name, "namespace": "lab"},
        "spec": spec,
    })
}

#[test]
fn the_chart_holds_what_crdgen_writes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../",
        "charts/ntt/templates/crds.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = ntt_crds::crds_yaml().unwrap();
    assert!(
        committed == generated,
        "{path} is out of date: run `cargo run -p ntt-crds --bin crdgen` and commit it"
    );
}

#[test]
fn names_columns_and_subresources_are_what_kubectl_shows() {
    let crd = Medium::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("media.ntt.hrdag.org"));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["med".to_owned()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["ntt".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<(String, i32)> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.name.clone(), c.priority.unwrap_or(0)))
        .collect();
    assert_eq!(
        columns,
        [
            ("Phase", 0),
            ("Ready", 0),
            ("Target", 0),
            ("Source", 0),
            ("Node", 0),
            ("Health", 0),
            ("Progress", 0),
            ("Age", 0),
            ("Reason", 1),
            ("Error", 1),
            ("Verified", 1)
        ]
        .map(|(n, p)| (n.to_owned(), p))
    );
    assert_eq!(
        crd.metadata
            .annotations
            .as_ref()
            .unwrap()
            .get("helm.sh/resource-policy")
            .map(String::as_str),
        Some("keep"),
        "helm uninstall must not delete the CRDs (and with them every Medium)"
    );

    let job = MediumJob::crd();
    assert_eq!(
        job.metadata.name.as_deref(),
        Some("mediumjobs.ntt.hrdag.org")
    );
    let version = &job.spec.versions[0];
    let selectable: Vec<&str> = version
        .selectable_fields
        .as_ref()
        .unwrap()
        .iter()
        .map(|f| f.json_path.as_str())
        .collect();
    assert_eq!(
        selectable,
        [".spec.nodeName"],
        "agents select their node's jobs"
    );
    assert!(version.subresources.as_ref().unwrap().status.is_some());
}

/// Every property of the schema, with its path, lacks a description.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let here = format!("{path}.{name}");
            // metadata, apiVersion and kind are the API server's own.
            let standard =
                path.is_empty() && ["metadata", "apiVersion", "kind"].contains(&name.as_str());
            if !standard
                && property
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                out.push(here.clone());
            }
            undocumented(property, &here, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_field_is_documented_for_kubectl_explain() {
    for crd in [Medium::crd(), MediumJob::crd()] {
        let mut missing = Vec::new();
        undocumented(&schema_of(&crd), "", &mut missing);
        // Conditions are metav1.Condition, documented by Kubernetes itself.
        missing.retain(|p| !p.starts_with(".status.conditions[]"));
        assert!(
            missing.is_empty(),
            "{:?}: undocumented {missing:?}",
            crd.metadata.name
        );
    }
}

#[test]
fn a_good_manifest_of_each_source_kind_is_accepted() {
    for source in [
        json!({"device": "/dev/disk/by-id/usb-WD_Elements_1234-0:0"}),
        json!({"image": "/srv/ntt/incoming/box-7/floppy-12.E01"}),
        json!({"directory": "/srv/ntt/photorec/recup_dir.1"}),
    ] {
        let object = medium("box-7", json!({"nodeName": "dock-1", "source": source}));
        assert_eq!(
            medium_errors(&object, None),
            Vec::<String>::new(),
            "{object}"
        );
    }
}

#[test]
fn exactly_one_source_kind_is_required() {
    for source in [
        json!({}),
        json!({"device": "/dev/sdb", "image": "/srv/a.img"}),
        json!({"device": "/dev/sdb", "image": "/srv/a.img", "directory": "/srv/d"}),
    ] {
        let object = medium("m", json!({"nodeName": "dock-1", "source": source}));
        let errors = medium_errors(&object, None);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("exactly one of device, image, directory")),
            "{source}: {errors:?}"
        );
    }
}

#[test]
fn paths_outside_dev_or_with_dot_dot_are_refused() {
    let cases = [
        (
            json!({"device": "/srv/disk.img"}),
            "device must be a path under /dev/",
        ),
        (
            json!({"device": "/dev/../etc/shadow"}),
            "device must not contain '..'",
        ),
        (
            json!({"device": "/dev/disk/.."}),
            "device must not contain '..'",
        ),
        (
            json!({"image": "relative/a.img"}),
            "image must be an absolute path",
        ),
        (
            json!({"image": "/srv/../etc/a.img"}),
            "image must not contain '..'",
        ),
        (
            json!({"directory": "/srv/x/.."}),
            "directory must not contain '..'",
        ),
    ];
    for (source, message) in cases {
        let object = medium("m", json!({"nodeName": "dock-1", "source": source}));
        let errors = medium_errors(&object, None);
        assert!(errors.iter().any(|e| e == message), "{source}: {errors:?}");
    }
    // A name that merely contains dots is fine.
    let object = medium(
        "m",
        json!({"nodeName": "n", "source": {"image": "/srv/a..b/c...img"}}),
    );
    assert_eq!(medium_errors(&object, None), Vec::<String>::new());
}

#[test]
fn the_source_is_immutable_but_the_target_is_not() {
    let old = medium(
        "m",
        json!({"nodeName": "dock-1", "source": {"device": "/dev/sdb"}, "target": "Imaged"}),
    );
    let raised = medium(
        "m",
        json!({"nodeName": "dock-1", "source": {"device": "/dev/sdb"}, "target": "Copied"}),
    );
    assert_eq!(medium_errors(&raised, Some(&old)), Vec::<String>::new());
    let moved = medium(
        "m",
        json!({"nodeName": "dock-1", "source": {"device": "/dev/sdc"}, "target": "Imaged"}),
    );
    let errors = medium_errors(&moved, Some(&old));
    assert!(
        errors.iter().any(|e| e.contains("source is immutable")),
        "{errors:?}"
    );
    let kind = medium(
        "m",
        json!({"nodeName": "dock-1", "source": {"image": "/srv/sdb.img"}}),
    );
    let errors = medium_errors(&kind, Some(&old));
    assert!(
        errors.iter().any(|e| e.contains("source is immutable")),
        "{errors:?}"
    );
}

#[test]
fn a_manifest_cannot_declare_a_purge() {
    let spec =
        json!({"nodeName": "n", "source": {"device": "/dev/sdb"}, "deletionPolicy": "Purge"});
    let parsed: Result<ntt_crds::MediumSpec, _> = serde_json::from_value(spec);
    assert!(parsed.is_err(), "Purge is no deletion policy");
    let crd = serde_json::to_value(Medium::crd()).unwrap();
    let properties = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"];
    assert_eq!(properties["deletionPolicy"]["enum"], json!(["Retain"]));
    assert!(properties.get("purgeConfirmation").is_none());
    // Retain (the default) needs nothing.
    let retain = medium(
        "box-7",
        json!({"nodeName": "n", "source": {"device": "/dev/sdb"}}),
    );
    assert_eq!(medium_errors(&retain, None), Vec::<String>::new());
}

#[test]
fn defaults_fill_what_a_short_manifest_leaves_out() {
    let parsed: Medium = serde_json::from_value(medium(
        "m",
        json!({"nodeName": "n", "source": {"device": "/dev/sdb"}}),
    ))
    .unwrap();
    assert_eq!(parsed.spec.target, ntt_crds::Target::Copied);
    assert_eq!(
        parsed.spec.deletion_policy,
        ntt_crds::DeletionPolicy::Retain
    );
    assert_eq!(
        parsed.spec.imaging.profile,
        ntt_crds::ImagingProfile::Default
    );
    assert_eq!(
        parsed.spec.source.kind(),
        Some(ntt_crds::SourceKind::Device("/dev/sdb"))
    );
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    let crd = serde_json::to_value(Medium::crd()).unwrap();
    let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        ["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map", "{conditions}");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
}
