//! Periodic verification of a copied medium's stored content (fixity), as part of the plan.
//!
//! Rules:
//! - Only a Medium whose target is `Copied` and whose every stage is done gets verify jobs,
//!   one at a time, never beside a pipeline job (a pipeline job that is due deletes a running
//!   verification, which resumes later where it stopped) and none while paused.
//! - A verification is due one interval after the medium was last wholly found right (or,
//!   before that, after its copy ended or its last verification ended with wrong blobs); at
//!   once when the `ntt.hrdag.org/verify` annotation changes, when the last job ran out of
//!   budget before covering the medium, or when it was interrupted; after a backoff when it
//!   failed.
//! - Each job re-hashes the blobs not found right within the interval (`staleBefore`), for at
//!   most the budget. Its end is taken in once: the status remembers the job's uid.
//! - Blobs found wrong make the medium `Degraded` (`FixityFailed`) with a Warning event naming
//!   the blobs and every medium holding them; the other Media holding them are asked to verify
//!   now (their annotation), so each finds and reports it itself.

use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use ntt_crds::condition::{self, event, reason};
use ntt_crds::{
    ErrorClass, JobState, MediumJob, Stage, Target, VerificationStatus, VerifyOptions, VerifyResult,
};

use super::{
    EventIntent, Observed, Plan, Settings, StageState, StatusBuilder, backoff, latest, new_job,
    signed, unsigned,
};

/// How verification is scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySettings {
    /// Each blob of a copied medium is re-hashed once per interval.
    pub interval: Duration,
    /// A verify job takes no further blob after this long (the next one goes on).
    pub budget: Duration,
}

impl Default for VerifySettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_hours(24 * 30),
            budget: Duration::from_hours(1),
        }
    }
}

/// Another Medium to ask for a verification now: it holds a blob found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The value to give its `ntt.hrdag.org/verify` annotation.
    pub value: String,
}

/// The verify job of `medium`, attempt `attempt`: a pipeline job's snapshot of the Medium,
/// with what to re-hash.
fn verify_job(
    seen: &Observed<'_>,
    status: &StatusBuilder<'_>,
    attempt: i32,
    settings: &VerifySettings,
) -> MediumJob {
    let mut job = new_job(seen.medium, &status.new, Stage::Verify, attempt);
    job.spec.verify = Some(VerifyOptions {
        stale_before: Time(seen.now - signed(settings.interval)),
        budget_seconds: i64::try_from(settings.budget.as_secs().max(1)).unwrap_or(i64::MAX),
    });
    job
}

/// The result of a verify job that succeeded.
fn result_of(job: &MediumJob) -> Option<&VerifyResult> {
    job.status
        .as_ref()
        .and_then(|s| s.result.as_ref())
        .and_then(|r| r.verification.as_ref())
}

/// For people: the wrong blobs and the media holding them.
fn fixity_message(result: &VerifyResult) -> String {
    let mut message = format!(
        "{} blob(s) of this medium failed verification",
        result.bad_total
    );
    for blob in &result.bad {
        let _ = write!(
            message,
            "; {} {} (held by {})",
            blob.blake3,
            blob.outcome,
            blob.media.join(", ")
        );
    }
    if result.bad_total > i64::try_from(result.bad.len()).unwrap_or(i64::MAX) {
        message.push_str("; ... (ntt verify --medium lists them all)");
    }
    message
}

/// This Medium's name in the catalog.
fn catalog_name(seen: &Observed<'_>) -> String {
    format!(
        "{}/{}",
        seen.medium.namespace().unwrap_or_default(),
        seen.medium.name_any()
    )
}

/// The verification step: takes in the end of the latest verify job, sets `Verified` (and
/// says what `Degraded` should), and creates the next verify job when one is due. Returns the
/// fixity failure message when blobs are wrong.
pub(super) fn verification(
    seen: &Observed<'_>,
    status: &mut StatusBuilder<'_>,
    plan: &mut Plan,
    settings: &Settings,
) -> Option<String> {
    let Some(verify) = &settings.verification else {
        status.condition(
            condition::VERIFIED,
            false,
            reason::NOT_SCHEDULED,
            "the controller schedules no verification (verification.interval is 0)".to_owned(),
        );
        return None;
    };
    if seen.medium.spec.target < Target::Copied {
        status.condition(
            condition::VERIFIED,
            false,
            reason::NOT_REQUESTED,
            "the target does not copy the content into the store".to_owned(),
        );
        return None;
    }
    let mut state = seen.old.verification.clone().unwrap_or_default();
    let latest_job = latest(seen.jobs, Stage::Verify);
    if let Some(job) = latest_job {
        take_in_end(seen, job, &mut state, plan);
    }
    let fixity = if state.bad_blobs > 0 {
        // The message of the job that found them (carried while a later one runs).
        let message = latest_job
            .filter(|j| j.uid() == state.job_uid)
            .and_then(result_of)
            .map(fixity_message)
            .or_else(|| {
                seen.old
                    .condition(condition::VERIFIED)
                    .map(|c| c.message.clone())
            })
            .unwrap_or_default();
        status.condition(
            condition::VERIFIED,
            false,
            reason::FIXITY_FAILED,
            message.clone(),
        );
        Some(message)
    } else if let Some(at) = &state.last_verified_at {
        status.condition(
            condition::VERIFIED,
            true,
            reason::ALL_BLOBS_MATCH,
            format!(
                "every blob was found right; the oldest of those checks is from {}",
                at.0
            ),
        );
        None
    } else {
        status.condition(
            condition::VERIFIED,
            false,
            reason::NOT_VERIFIED_YET,
            "no verification has covered the medium yet".to_owned(),
        );
        None
    };
    state.next_at = None;
    let idle = !seen.deleting && seen.next.is_none() && !seen.paused;
    match seen.stage(Stage::Verify) {
        StageState::Active(job) => lost(seen, job, plan, settings),
        StageState::Terminating(_) => {}
        _ if !idle => {}
        _ => schedule(seen, status, plan, settings, verify, latest_job, &mut state),
    }
    status.new.verification = Some(state);
    fixity
}

/// Takes in the end of `job` (once: the status remembers the job's uid).
fn take_in_end(
    seen: &Observed<'_>,
    job: &MediumJob,
    state: &mut VerificationStatus,
    plan: &mut Plan,
) {
    let Some(job_status) = job.status.as_ref().filter(|s| s.state.is_finished()) else {
        return;
    };
    if job.uid() == state.job_uid {
        return;
    }
    state.job.clone_from(&job.metadata.name);
    state.job_uid = job.uid();
    if job_status.state == JobState::Failed {
        let error = job_status.error.clone();
        let class = error.as_ref().map(|e| e.class);
        if !matches!(class, Some(ErrorClass::Interrupted | ErrorClass::Cancelled)) {
            state.failures += 1;
            plan.events.push(EventIntent {
                warning: true,
                reason: event::VERIFY_FAILED,
                note: format!(
                    "verification {} failed: {}; tried again later",
                    job.name_any(),
                    error.map_or_else(|| "without saying why".to_owned(), |e| e.message)
                ),
            });
        }
        return;
    }
    let Some(result) = result_of(job) else {
        return;
    };
    state.failures = 0;
    state.bad_blobs = result.bad_total;
    state.last_verified_at.clone_from(&result.verified_at);
    if result.bad_total > 0 {
        plan.events.push(EventIntent {
            warning: true,
            reason: reason::FIXITY_FAILED,
            note: fixity_message(result),
        });
        let own = catalog_name(seen);
        let mut others: Vec<&str> = result
            .bad
            .iter()
            .flat_map(|b| b.media.iter().map(String::as_str))
            .filter(|m| *m != own)
            .collect();
        others.sort_unstable();
        others.dedup();
        // Named after what was found, not after the job: a holder that finds the same blobs
        // wrong asks back with the same value, which changes nothing (no endless ping-pong).
        let value = format!(
            "fixity-failed-{}-{}",
            result.bad_total,
            result
                .bad
                .first()
                .map_or("", |b| &b.blake3[..b.blake3.len().min(16)])
        );
        for other in others {
            if let Some((namespace, name)) = other.split_once('/') {
                plan.verify_requests.push(VerifyRequest {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    value: value.clone(),
                });
            }
        }
    } else if result.complete && result.verified_at.is_some() {
        plan.events.push(EventIntent {
            warning: false,
            reason: event::VERIFIED,
            note: format!(
                "every blob of the medium was found right ({} re-hashed by this job)",
                result.checked
            ),
        });
    }
}

/// When the next verification is due; creates it when that is now.
fn schedule(
    seen: &Observed<'_>,
    status: &mut StatusBuilder<'_>,
    plan: &mut Plan,
    settings: &Settings,
    verify: &VerifySettings,
    latest_job: Option<&MediumJob>,
    state: &mut VerificationStatus,
) {
    let request = seen
        .medium
        .annotations()
        .get(condition::VERIFY_ANNOTATION)
        .cloned();
    let requested = request.is_some() && request != state.request_seen;
    let finished = latest_job
        .and_then(|j| j.status.as_ref())
        .and_then(|s| s.finished_at.clone().or_else(|| s.heartbeat_at.clone()))
        .map(|t| t.0);
    let failed = latest_job
        .and_then(|j| j.status.as_ref())
        .filter(|s| s.state == JobState::Failed);
    let due: Timestamp = if requested {
        seen.now
    } else if let Some(failed) = failed {
        match failed.error.as_ref().map(|e| e.class) {
            Some(ErrorClass::Interrupted | ErrorClass::Cancelled) => seen.now,
            _ => finished.unwrap_or(seen.now) + signed(backoff(settings, state.failures.max(1))),
        }
    } else if latest_job.and_then(result_of).is_some_and(|r| !r.complete) {
        seen.now
    } else {
        let base = state
            .last_verified_at
            .as_ref()
            .map(|t| t.0)
            .or(finished)
            .or_else(|| status.new.completed_at.as_ref().map(|t| t.0))
            .unwrap_or(seen.now);
        // Kubernetes keeps times to the second (rounded down): one more second, so the oldest
        // check is older than the job's `staleBefore` when it is due.
        base + signed(verify.interval) + SignedDuration::from_secs(1)
    };
    if due > seen.now {
        state.next_at = Some(Time(due));
        let wait = unsigned(due.duration_since(seen.now));
        plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
        return;
    }
    if requested {
        state.request_seen = request;
    }
    let attempt = latest_job.map_or(0, |j| j.spec.attempt).max(0) + 1;
    plan.create = Some(verify_job(seen, status, attempt, verify));
}

/// A verify job an agent claimed or runs, whose agent went silent past the heartbeat timeout:
/// failed as lost (then tried again after the backoff), like a pipeline job.
fn lost(seen: &Observed<'_>, job: &MediumJob, plan: &mut Plan, settings: &Settings) {
    let claimed = job
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == condition::AGENT_FINALIZER));
    let running = job
        .status
        .as_ref()
        .is_some_and(|s| s.state == JobState::Running);
    if !(claimed || running) || plan.fail.is_some() {
        return;
    }
    let seen_at = super::last_seen(job).unwrap_or(seen.now);
    let deadline = seen_at + signed(settings.heartbeat_timeout);
    if seen.now < deadline {
        let wait = unsigned(deadline.duration_since(seen.now));
        plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
        return;
    }
    plan.fail = Some(super::LostJob {
        name: job.metadata.name.clone().unwrap_or_default(),
        error: ntt_crds::JobError {
            class: ErrorClass::Lost,
            message: format!(
                "no heartbeat from its agent since {seen_at} (timeout {}s)",
                settings.heartbeat_timeout.as_secs()
            ),
        },
        at: Time(seen.now),
    });
}
