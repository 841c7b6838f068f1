//! The bodies of the patches both binaries send (pure): finalizers changed under the object's
//! `resourceVersion` (a merge patch that fails with 409 when someone else changed the object
//! meanwhile), and a status written by server-side apply.

use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

/// A merge patch that adds `finalizer` to `object`'s finalizers, valid only against the
/// version of `object` that was read.
pub fn add_finalizer(object: &impl Resource, finalizer: &str) -> Value {
    let mut finalizers = object.finalizers().to_vec();
    if !finalizers.iter().any(|f| f == finalizer) {
        finalizers.push(finalizer.to_owned());
    }
    finalizers_patch(object, &finalizers)
}

/// A merge patch that removes `finalizer` from `object`'s finalizers, valid only against the
/// version of `object` that was read.
pub fn remove_finalizer(object: &impl Resource, finalizer: &str) -> Value {
    let finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    finalizers_patch(object, &finalizers)
}

/// [`add_finalizer`], also setting the annotation `key` to `value` in the same patch.
pub fn add_finalizer_annotated(
    object: &impl Resource,
    finalizer: &str,
    key: &str,
    value: &str,
) -> Value {
    let mut patch = add_finalizer(object, finalizer);
    patch["metadata"]["annotations"] = json!({ key: value });
    patch
}

fn finalizers_patch(object: &impl Resource, finalizers: &[String]) -> Value {
    json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}})
}

/// A server-side apply body that sets the status of a `K`: the fields in `status` are the
/// ones the applying field manager owns from now on.
pub fn status_apply<K: Resource<DynamicType = ()>>(status: &impl Serialize) -> Value {
    json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MediumJob, MediumJobSpec};

    fn job(finalizers: &[&str]) -> MediumJob {
        let mut job = MediumJob::new(
            "j",
            serde_json::from_value::<MediumJobSpec>(json!({
                "medium": "m", "stage": "Image", "nodeName": "n", "attempt": 1,
                "source": {"device": "/dev/sdz"}, "target": "Copied"
            }))
            .expect("a valid spec"),
        );
        job.metadata.finalizers = Some(finalizers.iter().map(|f| (*f).to_owned()).collect());
        job.metadata.resource_version = Some("7".into());
        job
    }

    #[test]
    fn finalizer_patches_keep_the_others_and_carry_the_version_read() {
        let patch = add_finalizer(&job(&["a"]), "b");
        assert_eq!(
            patch,
            json!({"metadata": {"finalizers": ["a", "b"], "resourceVersion": "7"}})
        );
        assert_eq!(
            add_finalizer(&job(&["b"]), "b")["metadata"]["finalizers"],
            json!(["b"])
        );
        let patch = remove_finalizer(&job(&["a", "b"]), "a");
        assert_eq!(
            patch,
            json!({"metadata": {"finalizers": ["b"], "resourceVersion": "7"}})
        );
    }

    #[test]
    fn status_apply_names_the_kind() {
        let patch = status_apply::<MediumJob>(&json!({"state": "Running"}));
        assert_eq!(patch["apiVersion"], "ntt.hrdag.org/v1alpha1");
        assert_eq!(patch["kind"], "MediumJob");
        assert_eq!(patch["status"]["state"], "Running");
    }
}
