//! Whether a `MediumJob` came from the controller for its `Medium`, or was made by hand.
//!
//! A `MediumJob` is a command to a privileged agent. The controller makes each one as a
//! snapshot of a Medium it owns; anyone else who can write MediumJobs could otherwise make the
//! agent image any path, or purge a medium whose Medium never asked for it. So before it runs a
//! job, the agent reads the job's Medium and checks ([`check`], pure):
//!
//! - the job is owned (controller reference) by a Medium of the job's `spec.medium`, and that
//!   Medium exists with the owner's uid (not a namesake made later);
//! - the job's node and source are the Medium's;
//! - a catalog hash the job acts on is the one the Medium's status records (a purge or a
//!   verification acts on one only);
//! - a forced mount (a failed medium's volumes) only where the Medium's `force` holds that
//!   recorded hash;
//! - a purge runs only for a Medium being deleted whose purge was armed (its annotation holds
//!   the Medium's uid).
//!
//! A job that fails a check is refused (failed, permanent) without anything being run.

use kube::ResourceExt;
use ntt_crds::{Medium, MediumJob, Stage};

/// Why a job is not its Medium's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: not a job the controller made for its Medium: {0}")]
pub struct NotFromItsMedium(pub String);

/// Checks `job` against `medium`, the Medium named by its `spec.medium` (`None`: there is none).
///
/// # Errors
///
/// [`NotFromItsMedium`] saying which check failed.
pub fn check(job: &MediumJob, medium: Option<&Medium>) -> Result<(), NotFromItsMedium> {
    let refuse = |why: String| Err(NotFromItsMedium(why));
    let owner = job
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Medium");
    let Some(owner) = owner else {
        return refuse("it has no owning Medium".to_owned());
    };
    if owner.name != job.spec.medium || owner.api_version != "ntt.hrdag.org/v1alpha1" {
        return refuse(format!(
            "its owner {} {} is not its medium {}",
            owner.api_version, owner.name, job.spec.medium
        ));
    }
    let Some(medium) = medium else {
        return refuse(format!("its Medium {} does not exist", job.spec.medium));
    };
    if medium.uid().as_deref() != Some(owner.uid.as_str()) {
        return refuse(format!(
            "its Medium {} is not the one that owns it (uid {})",
            job.spec.medium, owner.uid
        ));
    }
    if medium.spec.node_name != job.spec.node_name {
        return refuse(format!(
            "it runs on {} but its Medium is on {}",
            job.spec.node_name, medium.spec.node_name
        ));
    }
    if medium.spec.source != job.spec.source {
        return refuse("its source is not its Medium's".to_owned());
    }
    let recorded = medium
        .status
        .as_ref()
        .and_then(|status| status.medium_hash.as_deref());
    match (job.spec.medium_hash.as_deref(), recorded) {
        (Some(job_hash), Some(recorded)) if job_hash != recorded => {
            return refuse(format!(
                "it acts on medium {job_hash} but its Medium recorded {recorded}"
            ));
        }
        (Some(job_hash), None) if job.spec.stage == Stage::Purge => {
            return refuse(format!(
                "it purges medium {job_hash} but its Medium recorded none"
            ));
        }
        (None, _) if job.spec.stage == Stage::Verify => {
            return refuse("it verifies a medium without naming its hash".to_owned());
        }
        (Some(job_hash), None) if job.spec.stage == Stage::Verify => {
            return refuse(format!(
                "it verifies medium {job_hash} but its Medium recorded none"
            ));
        }
        _ => {}
    }
    if job.spec.force && !medium.spec.force_confirmed(recorded) {
        return refuse(
            "it forces mounting a failed medium but its Medium's force does not confirm the recorded medium hash".to_owned(),
        );
    }
    if job.spec.stage == Stage::Purge {
        if medium.metadata.deletion_timestamp.is_none() {
            return refuse("it purges a Medium that is not being deleted".to_owned());
        }
        if !medium.purge_armed() {
            return refuse(
                "it purges a Medium whose purge was not armed (kubectl ntt purge)".to_owned(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn medium() -> Medium {
        serde_json::from_value(json!({
            "apiVersion": "ntt.hrdag.org/v1alpha1",
            "kind": "Medium",
            "metadata": {"name": "box-7", "namespace": "lab", "uid": "uid-1"},
            "spec": {"nodeName": "dock-1", "source": {"device": "/dev/disk/by-id/usb-x"}},
            "status": {"mediumHash": "0123456789abcdef0123456789abcdef"},
        }))
        .unwrap()
    }

    /// The job the controller makes for `medium` (its `new_job`, as the agent sees it).
    fn job_of(medium: &Medium, stage: Stage) -> MediumJob {
        serde_json::from_value(json!({
            "apiVersion": "ntt.hrdag.org/v1alpha1",
            "kind": "MediumJob",
            "metadata": {
                "name": "box-7-job",
                "namespace": "lab",
                "ownerReferences": [{
                    "apiVersion": "ntt.hrdag.org/v1alpha1",
                    "kind": "Medium",
                    "name": medium.name_any(),
                    "uid": medium.uid().unwrap(),
                    "controller": true,
                }],
            },
            "spec": {
                "medium": medium.name_any(),
                "mediumHash": medium.status.as_ref().and_then(|s| s.medium_hash.clone()),
                "stage": stage,
                "nodeName": medium.spec.node_name,
                "attempt": 1,
                "source": medium.spec.source,
                "target": medium.spec.target,
            },
        }))
        .unwrap()
    }

    fn refused(job: &MediumJob, medium: Option<&Medium>) -> String {
        check(job, medium).unwrap_err().0
    }

    #[test]
    fn the_controllers_job_passes() {
        let medium = medium();
        assert_eq!(check(&job_of(&medium, Stage::Copy), Some(&medium)), Ok(()));
    }

    #[test]
    fn a_hand_made_job_is_refused() {
        let medium = medium();
        let mut orphan = job_of(&medium, Stage::Image);
        orphan.metadata.owner_references = None;
        assert!(refused(&orphan, Some(&medium)).contains("no owning Medium"));
        let job = job_of(&medium, Stage::Image);
        assert!(refused(&job, None).contains("does not exist"));
        let mut namesake = medium.clone();
        namesake.metadata.uid = Some("uid-2".to_owned());
        assert!(refused(&job, Some(&namesake)).contains("not the one that owns it"));
        let mut elsewhere = job.clone();
        elsewhere.spec.source.device = Some("/dev/nvme0n1".to_owned());
        assert!(refused(&elsewhere, Some(&medium)).contains("source"));
        let mut other_node = job.clone();
        other_node.spec.node_name = "dock-2".to_owned();
        assert!(refused(&other_node, Some(&medium)).contains("dock-2"));
        let mut other_hash = job_of(&medium, Stage::Copy);
        other_hash.spec.medium_hash = Some("ffffffffffffffffffffffffffffffff".to_owned());
        assert!(refused(&other_hash, Some(&medium)).contains("recorded"));
    }

    #[test]
    fn a_purge_runs_only_for_a_medium_being_deleted_whose_purge_was_armed() {
        let mut medium = medium();
        let purge = job_of(&medium, Stage::Purge);
        assert!(refused(&purge, Some(&medium)).contains("not being deleted"));
        medium.metadata.deletion_timestamp = Some(super::super::now());
        assert!(refused(&purge, Some(&medium)).contains("not armed"));
        let arm = |medium: &mut Medium, value: &str| {
            medium.metadata.annotations = Some(
                [(
                    ntt_crds::condition::PURGE_ANNOTATION.to_owned(),
                    value.to_owned(),
                )]
                .into(),
            );
        };
        arm(&mut medium, "uid-of-another-medium");
        assert!(refused(&purge, Some(&medium)).contains("not armed"));
        arm(&mut medium, "uid-1");
        assert_eq!(check(&purge, Some(&medium)), Ok(()));
        let mut unrecorded = medium.clone();
        unrecorded.status = None;
        assert!(refused(&purge, Some(&unrecorded)).contains("recorded none"));
    }

    #[test]
    fn a_forced_mount_needs_the_mediums_confirmation_of_the_recorded_hash() {
        let mut medium = medium();
        let mut forced = job_of(&medium, Stage::Enumerate);
        forced.spec.force = true;
        assert!(refused(&forced, Some(&medium)).contains("force"));
        medium.spec.force = Some("ffffffffffffffffffffffffffffffff".to_owned());
        assert!(refused(&forced, Some(&medium)).contains("force"));
        medium.spec.force = Some("0123456789abcdef0123456789abcdef".to_owned());
        assert_eq!(check(&forced, Some(&medium)), Ok(()));
        // An unforced job of a Medium that confirms force is still the controller's.
        assert_eq!(check(&job_of(&medium, Stage::Copy), Some(&medium)), Ok(()));
    }
}
