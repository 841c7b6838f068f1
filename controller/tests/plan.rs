//! The controller's `plan`, without any server: a small world (one Medium, its jobs, a clock)
//! where each plan is carried out the way the reconcile shell does, and a scripted agent runs
//! the jobs. Table tests walk every phase and annotation; a property test drives random
//! agents, clocks and user edits and checks the invariants that must always hold.

#![expect(clippy::unwrap_used, reason = "tests fail with the error")]

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use ntt_controller::plan::{
    AgentFacts, Facts, FinalizerAction, Plan, Settings, VerifySettings, backoff, job_name, plan,
};
use ntt_crds::condition::{
    self, AGENT_FINALIZER, FINALIZER, PAUSED_ANNOTATION, RETRY_ANNOTATION, VERIFY_ANNOTATION,
};
use ntt_crds::{
    DeletionPolicy, ErrorClass, ImagingProfile, JobError, JobResult, JobState, Medium, MediumJob,
    MediumJobStatus, MediumSpec, Phase, Progress, Source, Stage, Target,
};

fn settings() -> Settings {
    Settings {
        heartbeat_timeout: Duration::from_mins(1),
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(100),
        max_attempts: 3,
        unclaimed_warning: Duration::from_mins(2),
        verification: None,
    }
}

/// One Medium and its jobs, as the API server would hold them.
struct World {
    medium: Medium,
    jobs: Vec<MediumJob>,
    agent: Option<AgentFacts>,
    now: Timestamp,
    settings: Settings,
    gone: bool,
}

impl World {
    fn new(target: Target) -> Self {
        let mut medium = Medium::new(
            "box-7-disk-2",
            MediumSpec {
                node_name: "dock-1".to_owned(),
                source: Source {
                    device: Some("/dev/disk/by-id/usb-WD_1234".to_owned()),
                    ..Source::default()
                },
                target,
                description: None,
                imaging: ntt_crds::ImagingOptions::default(),
                ignore: ntt_crds::IgnoreOptions::default(),
                deletion_policy: DeletionPolicy::Retain,
                force: None,
            },
        );
        medium.metadata.namespace = Some("lab".to_owned());
        medium.metadata.uid = Some("2f1c9a4e-0000-4000-8000-000000000001".to_owned());
        medium.metadata.generation = Some(1);
        Self {
            medium,
            jobs: Vec::new(),
            agent: None,
            now: "2026-12-01T12:00:00Z".parse().unwrap(),
            settings: settings(),
            gone: false,
        }
    }

    fn plan(&self) -> Plan {
        plan(
            Facts {
                medium: &self.medium,
                jobs: &self.jobs,
                agent: self.agent.as_ref(),
                now: self.now,
            },
            &self.settings,
        )
    }

    /// Plans and carries the plan out like the reconcile shell; returns the plan.
    fn reconcile(&mut self) -> Plan {
        let plan = self.plan();
        let finalizers = self.medium.metadata.finalizers.get_or_insert_default();
        match plan.finalizer {
            FinalizerAction::Keep => {}
            FinalizerAction::Add => finalizers.push(FINALIZER.to_owned()),
            FinalizerAction::Remove => finalizers.retain(|f| f != FINALIZER),
        }
        if self.medium.metadata.deletion_timestamp.is_some()
            && self
                .medium
                .metadata
                .finalizers
                .as_ref()
                .is_none_or(Vec::is_empty)
        {
            self.gone = true;
        }
        if let Some(lost) = &plan.fail {
            let job = self.job_mut(&lost.name);
            let status = job.status.get_or_insert_default();
            status.state = JobState::Failed;
            status.error = Some(lost.error.clone());
            status.finished_at = Some(lost.at.clone());
        }
        for name in &plan.release {
            self.job_mut(name)
                .metadata
                .finalizers
                .get_or_insert_default()
                .retain(|f| f != AGENT_FINALIZER);
        }
        for name in &plan.delete {
            self.job_mut(name).metadata.deletion_timestamp = Some(Time(self.now));
        }
        // Objects being deleted without finalizers go away.
        self.jobs.retain(|j| {
            j.metadata.deletion_timestamp.is_none()
                || j.metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| !f.is_empty())
        });
        if let Some(job) = &plan.create {
            assert!(
                !self
                    .jobs
                    .iter()
                    .any(|j| j.metadata.name == job.metadata.name),
                "a job is never created twice: {:?}",
                job.metadata.name
            );
            let mut job = job.clone();
            job.metadata.creation_timestamp = Some(Time(self.now));
            // As the API server does: each object its own uid.
            job.metadata.uid = Some(format!(
                "uid-{}-{}",
                job.metadata.name.as_deref().unwrap_or_default(),
                self.now.as_second()
            ));
            self.jobs.push(job);
        }
        self.medium.status = Some(plan.status.clone());
        plan
    }

    /// Carries a plan out except its status write, which the API server refused (or the
    /// controller died before it): the job exists, the Medium's status does not know it.
    fn reconcile_status_lost(&mut self) -> Plan {
        let before = self.medium.status.clone();
        let plan = self.reconcile();
        self.medium.status = before;
        plan
    }

    fn job_mut(&mut self, name: &str) -> &mut MediumJob {
        self.jobs
            .iter_mut()
            .find(|j| j.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no job {name}"))
    }

    fn active(&self) -> Vec<&MediumJob> {
        self.jobs
            .iter()
            .filter(|j| {
                !j.status.as_ref().is_some_and(|s| s.state.is_finished())
                    && j.metadata.deletion_timestamp.is_none()
            })
            .collect()
    }

    /// The one active job (panics unless there is exactly one).
    fn the_job(&self) -> String {
        let active = self.active();
        assert_eq!(active.len(), 1, "one active job: {:?}", self.names());
        active[0].metadata.name.clone().unwrap()
    }

    fn names(&self) -> Vec<String> {
        self.jobs
            .iter()
            .map(|j| j.metadata.name.clone().unwrap())
            .collect()
    }

    /// The agent claims the job (its finalizer, Running, a heartbeat).
    fn claim(&mut self, name: &str) {
        let now = self.now;
        let job = self.job_mut(name);
        job.metadata
            .finalizers
            .get_or_insert_default()
            .push(AGENT_FINALIZER.to_owned());
        job.status = Some(MediumJobStatus {
            state: JobState::Running,
            agent: Some("ntt-agent-x7".to_owned()),
            started_at: Some(Time(now)),
            heartbeat_at: Some(Time(now)),
            ..MediumJobStatus::default()
        });
    }

    fn heartbeat(&mut self, name: &str, progress: Option<Progress>) {
        let now = self.now;
        let status = self.job_mut(name).status.as_mut().unwrap();
        status.heartbeat_at = Some(Time(now));
        status.progress = progress;
    }

    /// The agent finishes the job and releases it.
    fn finish(&mut self, name: &str, outcome: Result<JobResult, JobError>) {
        let now = self.now;
        let job = self.job_mut(name);
        job.metadata
            .finalizers
            .get_or_insert_default()
            .retain(|f| f != AGENT_FINALIZER);
        let status = job.status.get_or_insert_default();
        status.finished_at = Some(Time(now));
        match outcome {
            Ok(result) => {
                status.state = JobState::Succeeded;
                status.result = Some(result);
            }
            Err(error) => {
                status.state = JobState::Failed;
                status.error = Some(error);
            }
        }
    }

    /// The agent runs the active job to success.
    fn run_active(&mut self) -> String {
        let name = self.the_job();
        self.claim(&name);
        self.advance(5);
        let result = JobResult {
            medium_hash: Some("726cdff6dc73e3dd1abe0e4c9762dff5".to_owned()),
            health: Some("ok".to_owned()),
            summary: String::new(),
            verification: None,
        };
        self.finish(&name, Ok(result));
        name
    }

    fn advance(&mut self, seconds: i64) {
        self.now += SignedDuration::from_secs(seconds);
    }

    fn status(&self) -> &ntt_crds::MediumStatus {
        self.medium.status.as_ref().unwrap()
    }

    fn condition(&self, type_: &str) -> (String, String) {
        let c = self.status().condition(type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    fn annotate(&mut self, key: &str, value: &str) {
        self.medium
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(key.to_owned(), value.to_owned());
    }

    fn set_target(&mut self, target: Target) {
        self.medium.spec.target = target;
        *self.medium.metadata.generation.as_mut().unwrap() += 1;
    }

    fn delete(&mut self) {
        self.medium.metadata.deletion_timestamp = Some(Time(self.now));
    }

    /// Reconciles until nothing changes; asserts the settled plan writes nothing.
    fn settle(&mut self) {
        for _ in 0..10 {
            let before = (self.medium.clone(), self.jobs.clone());
            self.reconcile();
            if (self.medium.clone(), self.jobs.clone()) == before {
                assert_no_writes(&self.plan(), &self.medium);
                return;
            }
        }
        panic!("did not settle: {:?}", self.status());
    }
}

fn error(class: ErrorClass, message: &str) -> JobError {
    JobError {
        class,
        message: message.to_owned(),
    }
}

fn assert_no_writes(plan: &Plan, medium: &Medium) {
    assert_eq!(plan.finalizer, FinalizerAction::Keep);
    assert!(plan.create.is_none(), "{:?}", plan.create);
    assert!(plan.fail.is_none());
    assert!(plan.delete.is_empty(), "{:?}", plan.delete);
    assert!(plan.release.is_empty());
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    assert_eq!(
        Some(&plan.status),
        medium.status.as_ref(),
        "status unchanged"
    );
}

#[test]
fn a_new_medium_first_gets_the_finalizer_and_nothing_else() {
    let world = World::new(Target::Copied);
    let plan = world.plan();
    assert_eq!(plan.finalizer, FinalizerAction::Add);
    assert!(plan.create.is_none());
    assert!(plan.events.is_empty());
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one medium's whole life, step by step"
)]
fn the_full_lifecycle_runs_one_job_per_stage_to_copied_and_then_settles() {
    let mut world = World::new(Target::Copied);
    world.medium.spec.description = Some("box 7, second disk".to_owned());
    world.reconcile();
    let plan = world.reconcile();
    let job = plan.create.as_ref().unwrap();
    assert_eq!(job.spec.stage, Stage::Image);
    assert_eq!(job.spec.attempt, 1);
    assert_eq!(job.spec.node_name, "dock-1");
    assert_eq!(
        job.spec.description.as_deref(),
        Some("box 7, second disk"),
        "the catalog gets the Medium's description"
    );
    assert_eq!(job.metadata.name.as_deref(), Some("box-7-disk-2-image-1"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Medium", "box-7-disk-2", Some(true))
    );
    assert_eq!(
        job.metadata.labels.as_ref().unwrap()[condition::MEDIUM_UID_LABEL],
        "2f1c9a4e-0000-4000-8000-000000000001"
    );
    assert_eq!(world.status().phase, Phase::Imaging);
    assert_eq!(
        world.status().current_job.as_deref(),
        Some("box-7-disk-2-image-1")
    );
    assert!(plan.events.iter().any(|e| e.reason == "JobCreated"));

    // The agent runs it, reporting progress that shows on the Medium.
    world.claim("box-7-disk-2-image-1");
    world.advance(10);
    world.heartbeat(
        "box-7-disk-2-image-1",
        Some(Progress {
            stage: Some(Stage::Image),
            percent: Some(40),
            summary: "imaging 40%".to_owned(),
            ..Progress::default()
        }),
    );
    let plan = world.reconcile();
    assert!(plan.create.is_none());
    assert_eq!(world.status().progress.as_ref().unwrap().percent, Some(40));
    assert_eq!(
        world.condition(condition::IMAGED),
        ("False".to_owned(), "InProgress".to_owned())
    );
    assert_eq!(
        plan.requeue,
        Some(Duration::from_mins(1)),
        "until the heartbeat deadline"
    );
    world.finish(
        "box-7-disk-2-image-1",
        Ok(JobResult {
            medium_hash: Some("726cdff6".to_owned()),
            health: Some("ok".to_owned()),
            summary: String::new(),
            verification: None,
        }),
    );
    let plan = world.reconcile();
    assert_eq!(plan.create.as_ref().unwrap().spec.stage, Stage::Enumerate);
    assert_eq!(world.status().medium_hash.as_deref(), Some("726cdff6"));
    assert_eq!(world.condition(condition::IMAGED).0, "True");
    assert_eq!(world.status().phase, Phase::Enumerating);
    world.run_active();
    let plan = world.reconcile();
    assert_eq!(plan.create.as_ref().unwrap().spec.stage, Stage::Copy);
    let copy = world.the_job();
    world.claim(&copy);
    world.heartbeat(
        &copy,
        Some(Progress {
            percent: Some(90),
            summary: "copying 90%".to_owned(),
            ..Progress::default()
        }),
    );
    world.reconcile();
    world.job_mut(&copy).status.as_mut().unwrap().progress = Some(Progress {
        percent: Some(100),
        summary: "21 entries: 21 copied".to_owned(),
        ..Progress::default()
    });
    world.finish(&copy, Ok(JobResult::default()));
    let plan = world.reconcile();
    assert!(plan.create.is_none());
    assert!(plan.events.iter().any(|e| e.reason == "Completed"));
    assert_eq!(
        world.status().progress.as_ref().unwrap().summary,
        "21 entries: 21 copied",
        "the final progress, not the last heartbeat's"
    );
    let status = world.status();
    assert_eq!(status.phase, Phase::Completed);
    assert!(status.completed_at.is_some());
    for type_ in [
        condition::IMAGED,
        condition::ENUMERATED,
        condition::COPIED,
        condition::READY,
    ] {
        assert_eq!(world.condition(type_).0, "True", "{type_}");
    }
    assert_eq!(world.condition(condition::DEGRADED).0, "False");
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(1))
    );
    assert_eq!(world.jobs.len(), 3, "one job per stage, kept as history");
    world.advance(3600);
    world.settle();
}

#[test]
fn a_job_whose_status_write_was_lost_still_counts_as_an_attempt() {
    let mut world = World::new(Target::Copied);
    world.reconcile();
    world.reconcile();
    world.run_active();
    // The reconcile that creates the enumerate job cannot record it (status refused).
    let plan = world.reconcile_status_lost();
    let job = plan.create.as_ref().unwrap().metadata.name.clone().unwrap();
    assert_eq!(
        world.status().stage,
        Some(Stage::Image),
        "the write was lost"
    );
    world.claim(&job);
    let plan = world.reconcile();
    assert!(plan.create.is_none(), "the job is found, not made twice");
    assert_eq!(world.status().stage, Some(Stage::Enumerate));
    assert_eq!(world.status().current_job.as_deref(), Some(job.as_str()));
    assert_eq!(world.status().attempts, 1, "its attempt counts");
    world.reconcile();
    assert_eq!(world.status().attempts, 1, "and only once");
    // Within a stage too: a transient failure, then the retry's status write is lost.
    world.finish(&job, Err(error(ErrorClass::Transient, "bus reset")));
    world.advance(3600);
    let plan = world.reconcile_status_lost();
    let retry = plan.create.as_ref().unwrap().metadata.name.clone().unwrap();
    assert_eq!(world.status().attempts, 1);
    world.reconcile();
    assert_eq!(world.status().current_job.as_deref(), Some(retry.as_str()));
    assert_eq!(world.status().attempts, 2, "the retry counts");
    world.claim(&retry);
    world.settle();
    assert_eq!(world.status().attempts, 2);
}

#[test]
fn raising_the_target_later_continues_where_the_medium_stopped() {
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    world.run_active();
    world.reconcile();
    assert_eq!(world.status().phase, Phase::Completed);
    assert_eq!(
        world.condition(condition::ENUMERATED),
        ("False".to_owned(), "NotRequested".to_owned())
    );
    world.settle();
    world.set_target(Target::Copied);
    let plan = world.reconcile();
    assert_eq!(plan.create.as_ref().unwrap().spec.stage, Stage::Enumerate);
    assert_eq!(world.status().observed_generation, Some(2));
    assert_eq!(world.condition(condition::READY).0, "False");
    assert!(world.status().completed_at.is_none());
    world.run_active();
    world.reconcile();
    world.run_active();
    world.reconcile();
    assert_eq!(world.status().phase, Phase::Completed);
    assert_eq!(
        world
            .jobs
            .iter()
            .filter(|j| j.spec.stage == Stage::Image)
            .count(),
        1,
        "imaged once"
    );
}

#[test]
fn lowering_the_target_cancels_the_job_of_a_stage_no_longer_wanted() {
    let mut world = World::new(Target::Copied);
    world.reconcile();
    world.reconcile();
    world.run_active();
    world.reconcile();
    world.run_active();
    world.reconcile();
    let copy = world.the_job();
    world.claim(&copy);
    world.set_target(Target::Enumerated);
    let plan = world.reconcile();
    assert_eq!(plan.delete, std::slice::from_ref(&copy));
    assert_eq!(world.status().phase, Phase::Completed);
}

#[test]
fn pause_stops_new_jobs_but_not_a_running_one_and_resume_continues() {
    let mut world = World::new(Target::Copied);
    world.annotate(PAUSED_ANNOTATION, "true");
    world.reconcile();
    let plan = world.reconcile();
    assert!(plan.create.is_none());
    assert_eq!(world.status().phase, Phase::Paused);
    world.settle();

    world.annotate(PAUSED_ANNOTATION, "false");
    let plan = world.reconcile();
    assert_eq!(plan.create.as_ref().unwrap().spec.stage, Stage::Image);
    let image = world.the_job();
    world.claim(&image);
    world.annotate(PAUSED_ANNOTATION, "true");
    let plan = world.reconcile();
    assert!(plan.delete.is_empty(), "a running job finishes");
    assert_eq!(world.status().phase, Phase::Imaging);
    world.advance(5);
    world.finish(&image, Ok(JobResult::default()));
    let plan = world.reconcile();
    assert!(plan.create.is_none(), "no new job while paused");
    assert_eq!(world.status().phase, Phase::Paused);
    assert_eq!(world.condition(condition::IMAGED).0, "True");
    world
        .medium
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove(PAUSED_ANNOTATION);
    let plan = world.reconcile();
    assert_eq!(plan.create.as_ref().unwrap().spec.stage, Stage::Enumerate);
}

#[test]
fn transient_failures_back_off_exponentially_then_stop_until_the_retry_annotation_changes() {
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    for attempt in 1..=3 {
        let name = world.the_job();
        assert_eq!(name, format!("box-7-disk-2-image-{attempt}"));
        world.claim(&name);
        world.finish(
            &name,
            Err(error(ErrorClass::Transient, "database unreachable")),
        );
        let plan = world.reconcile();
        if attempt == 3 {
            break;
        }
        assert!(plan.create.is_none(), "no retry before the backoff");
        let wait = Duration::from_secs(10 << (attempt - 1));
        assert_eq!(plan.requeue, Some(wait));
        assert_eq!(world.status().reason.as_deref(), Some("BackingOff"));
        assert!(world.status().next_attempt_at.is_some());
        assert!(
            plan.events
                .iter()
                .any(|e| e.reason == "JobFailed" && e.warning)
        );
        // Reconciling again before the time changes nothing.
        world.settle();
        world.advance(i64::try_from(wait.as_secs()).unwrap());
        let plan = world.reconcile();
        assert_eq!(plan.create.as_ref().unwrap().spec.attempt, attempt + 1);
        assert!(
            world.jobs.iter().all(|j| j.spec.attempt > attempt - 1),
            "older attempts are cleaned up: {:?}",
            world.names()
        );
    }
    // Three attempts: terminal.
    assert_eq!(world.status().phase, Phase::Failed);
    assert_eq!(world.status().attempts, 3);
    assert_eq!(
        world.condition(condition::DEGRADED),
        ("True".to_owned(), "Failed".to_owned())
    );
    assert_eq!(
        world.status().last_error.as_ref().unwrap().message,
        "database unreachable"
    );
    world.advance(100_000);
    world.settle();
    assert!(world.active().is_empty(), "no job however long one waits");

    world.annotate(RETRY_ANNOTATION, "1");
    let plan = world.reconcile();
    let job = plan.create.as_ref().unwrap();
    assert_eq!(job.spec.attempt, 4, "attempt numbers keep counting");
    assert_eq!(world.status().retry_seen.as_deref(), Some("1"));
    assert_eq!(world.status().attempts, 1, "the retry starts a fresh count");
    world.run_active();
    world.reconcile();
    assert_eq!(world.status().phase, Phase::Completed);
    assert_eq!(world.condition(condition::DEGRADED).0, "False");
    world.settle();
}

#[test]
fn a_permanent_failure_is_terminal_at_once_and_the_same_retry_value_does_nothing_twice() {
    let mut world = World::new(Target::Imaged);
    world.annotate(RETRY_ANNOTATION, "a");
    world.reconcile();
    world.reconcile();
    assert_eq!(
        world.status().retry_seen.as_deref(),
        Some("a"),
        "recorded while healthy"
    );
    let name = world.the_job();
    world.claim(&name);
    world.finish(
        &name,
        Err(error(ErrorClass::Permanent, "/dev/sdz: no such device")),
    );
    let plan = world.reconcile();
    assert!(plan.create.is_none());
    assert_eq!(world.status().phase, Phase::Failed);
    assert_eq!(world.condition(condition::DEGRADED).0, "True");
    assert_eq!(
        world.status().last_error.as_ref().unwrap().message,
        "/dev/sdz: no such device"
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "StageFailed" && e.warning)
    );
    world.settle();
    // No backoff brings it back: a day later it still waits for a person.
    world.advance(86_400);
    assert!(world.reconcile().create.is_none());
    world.settle();
    world.annotate(RETRY_ANNOTATION, "b");
    let plan = world.reconcile();
    let retry = plan.create.as_ref().unwrap();
    assert_eq!(
        (retry.metadata.name.as_deref(), retry.spec.attempt),
        (Some("box-7-disk-2-image-2"), 2)
    );
    assert_eq!(world.status().retry_seen.as_deref(), Some("b"));
    let name = world.the_job();
    world.claim(&name);
    world.finish(
        &name,
        Err(error(ErrorClass::Permanent, "/dev/sdz: no such device")),
    );
    world.reconcile();
    assert_eq!(world.status().phase, Phase::Failed);
    world.settle();
}

#[test]
fn a_stale_heartbeat_fails_the_job_as_lost_and_a_new_attempt_follows() {
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    let first = world.the_job();
    world.claim(&first);
    world.advance(59);
    assert!(world.reconcile().fail.is_none(), "not yet");
    world.advance(1);
    let plan = world.reconcile();
    let lost = plan.fail.as_ref().unwrap();
    assert_eq!(lost.name, first);
    assert_eq!(lost.error.class, ErrorClass::Lost);
    assert!(plan.events.iter().any(|e| e.reason == "JobLost"));
    // Failed as lost: retried after the backoff, like a transient failure.
    world.reconcile();
    assert_eq!(world.status().reason.as_deref(), Some("BackingOff"));
    world.advance(10);
    let plan = world.reconcile();
    assert_eq!(plan.create.as_ref().unwrap().spec.attempt, 2);
    // The lost job is deleted; its agent never releases it, so the controller does.
    let plan = world.reconcile();
    assert!(plan.delete.contains(&first), "{plan:?}");
    let plan = world.reconcile();
    assert_eq!(plan.release, std::slice::from_ref(&first));
    assert!(!world.names().contains(&first), "{:?}", world.names());
    world.run_active();
    world.reconcile();
    assert_eq!(world.status().phase, Phase::Completed);
}

#[test]
fn an_interrupted_job_is_replaced_at_once_without_counting_an_attempt() {
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    let first = world.the_job();
    world.claim(&first);
    assert_eq!(world.status().attempts, 1);
    // The agent shut down (an upgrade, a drain) mid-stage: no backoff, no attempt counted.
    world.finish(
        &first,
        Err(error(ErrorClass::Interrupted, "the agent shut down")),
    );
    let plan = world.reconcile();
    let next = plan.create.as_ref().expect("a new job at once");
    assert_eq!(next.spec.attempt, 2);
    assert_eq!(world.status().attempts, 1, "{:?}", world.status());
    assert!(plan.events.iter().any(|e| e.note.contains("interrupted")));
    // Interrupted many more times than max_attempts: never Failed.
    for _ in 0..5 {
        world.reconcile();
        let name = world.the_job();
        world.claim(&name);
        world.finish(&name, Err(error(ErrorClass::Interrupted, "again")));
        world.reconcile();
        assert_ne!(world.status().phase, Phase::Failed);
        assert_eq!(world.status().attempts, 1);
    }
    // Paused meanwhile: nothing starts and nothing is counted, however often it reconciles.
    world.annotate(PAUSED_ANNOTATION, "true");
    world.reconcile();
    let name = world.the_job();
    world.claim(&name);
    world.finish(&name, Err(error(ErrorClass::Interrupted, "drain")));
    for _ in 0..3 {
        assert!(world.reconcile().create.is_none());
        assert_eq!(world.status().attempts, 1);
    }
    world.annotate(PAUSED_ANNOTATION, "false");
    world.reconcile();
    world.run_active();
    world.reconcile();
    assert_eq!(world.status().phase, Phase::Completed);
    assert_eq!(world.status().attempts, 1);
}

#[test]
fn a_drive_is_undockable_once_imaged_and_every_later_job_carries_the_hash() {
    let mut world = World::new(Target::Copied);
    world.reconcile();
    world.reconcile();
    assert_eq!(
        world.condition(condition::UNDOCKABLE),
        ("False".to_owned(), "Imaging".to_owned())
    );
    world.run_active();
    let plan = world.reconcile();
    assert_eq!(
        world.condition(condition::UNDOCKABLE),
        ("True".to_owned(), "ImageComplete".to_owned())
    );
    assert!(
        plan.events.iter().any(|e| e.reason == "MayUndock"),
        "{:?}",
        plan.events
    );
    // The enumeration job, created in the same plan that recorded the hash, carries it.
    let job = plan.create.as_ref().expect("the enumeration job");
    assert_eq!(job.spec.stage, Stage::Enumerate);
    assert_eq!(
        job.spec.medium_hash.as_deref(),
        Some("726cdff6dc73e3dd1abe0e4c9762dff5")
    );
    world.run_active();
    let plan = world.reconcile();
    assert!(!plan.events.iter().any(|e| e.reason == "MayUndock"), "once");
    assert_eq!(
        plan.create.as_ref().unwrap().spec.medium_hash.as_deref(),
        Some("726cdff6dc73e3dd1abe0e4c9762dff5")
    );
    // An image file or a directory is read in place by every stage: never undockable.
    let mut world = World::new(Target::Imaged);
    world.medium.spec.source = Source {
        image: Some("/srv/ntt/laptop.E01".to_owned()),
        ..Source::default()
    };
    world.reconcile();
    world.reconcile();
    world.run_active();
    world.reconcile();
    assert_eq!(
        world.condition(condition::UNDOCKABLE),
        ("False".to_owned(), "NotADevice".to_owned())
    );
    world.settle();
}

#[test]
fn a_claimed_job_is_failed_as_lost_whatever_its_state_says() {
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    let name = world.the_job();
    // Queued for an hour, then claimed: the agent put its finalizer (and the claim's time) on
    // the job and died before writing `Running`. The deadline counts from the claim.
    world.advance(3600);
    let claimed_at = world.now.to_string();
    let job = world.job_mut(&name);
    job.metadata
        .finalizers
        .get_or_insert_default()
        .push(AGENT_FINALIZER.to_owned());
    job.metadata
        .annotations
        .get_or_insert_default()
        .insert(condition::CLAIMED_AT_ANNOTATION.to_owned(), claimed_at);
    assert!(world.reconcile().fail.is_none(), "not lost at the claim");
    world.advance(59);
    assert!(world.reconcile().fail.is_none(), "not yet");
    world.advance(2);
    let plan = world.reconcile();
    assert_eq!(
        plan.fail.as_ref().map(|f| f.error.class),
        Some(ErrorClass::Lost)
    );
}

#[test]
fn a_waiting_job_says_why_it_waits_and_warns_once_when_it_waits_too_long() {
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    // The job's creation brings the next reconcile, which sees it wait.
    world.reconcile();
    let scheduled = |world: &World| world.condition(condition::SCHEDULED).1;
    assert_eq!(
        scheduled(&world),
        "NoAgent",
        "no agent ever announced itself"
    );
    let agent = |world: &World, running| AgentFacts {
        identity: "ntt-agent-x7".to_owned(),
        renewed: world.now,
        valid_for: Duration::from_secs(30),
        running,
        max_jobs: 1,
    };
    world.agent = Some(agent(&world, 1));
    world.reconcile();
    assert_eq!(scheduled(&world), "Queued", "{:?}", world.status());
    world.agent = Some(agent(&world, 0));
    world.reconcile();
    assert_eq!(scheduled(&world), "Unclaimed");
    world.advance(31);
    world.reconcile();
    assert_eq!(scheduled(&world), "AgentLost", "its Lease ran out");
    world.settle();
    // Past the warning time (2 minutes after the job's creation): one Warning event.
    world.advance(90);
    let plan = world.reconcile();
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "JobUnclaimed" && e.warning),
        "{:?}",
        plan.events
    );
    assert!(
        world
            .status()
            .condition(condition::SCHEDULED)
            .unwrap()
            .message
            .contains("not claimed in time")
    );
    world.settle();
    world.advance(600);
    assert!(world.reconcile().events.is_empty(), "warned once");
    // Claimed at last.
    let name = world.the_job();
    world.claim(&name);
    world.reconcile();
    assert_eq!(
        world.condition(condition::SCHEDULED),
        ("True".to_owned(), "Claimed".to_owned())
    );
    world.run_active();
    world.reconcile();
    assert!(
        world.status().condition(condition::SCHEDULED).is_none(),
        "no job, no Scheduled"
    );
}

#[test]
fn a_pending_job_waits_for_its_agent_without_failing() {
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    world.advance(86_400);
    let plan = world.reconcile();
    assert!(plan.fail.is_none());
    assert_eq!(world.status().reason.as_deref(), Some("WaitingForAgent"));
}

#[test]
fn deleting_a_medium_cancels_its_running_job_then_releases_and_retains_the_evidence() {
    let mut world = World::new(Target::Copied);
    world.reconcile();
    world.reconcile();
    let job = world.the_job();
    world.claim(&job);
    world.delete();
    let plan = world.reconcile();
    assert_eq!(plan.delete, std::slice::from_ref(&job));
    assert_eq!(
        plan.finalizer,
        FinalizerAction::Keep,
        "not while the job holds the medium"
    );
    assert_eq!(world.status().phase, Phase::Deleting);
    assert!(plan.create.is_none());
    // The agent is still releasing (heartbeats): wait.
    world.advance(5);
    world.heartbeat(&job, None);
    let plan = world.reconcile();
    assert_eq!(plan.finalizer, FinalizerAction::Keep);
    assert!(plan.release.is_empty());
    // It cancels, releases and drops its finalizer: the job goes, then the Medium.
    world.finish(&job, Err(error(ErrorClass::Cancelled, "cancelled")));
    world
        .jobs
        .retain(|j| j.metadata.name.as_deref() != Some(job.as_str()));
    let plan = world.reconcile();
    assert_eq!(plan.finalizer, FinalizerAction::Remove);
    assert!(plan.create.is_none(), "Retain: no purge job");
    assert!(world.gone);
}

#[test]
fn a_dead_agents_cancelled_job_is_released_by_the_controller() {
    let mut world = World::new(Target::Copied);
    world.reconcile();
    world.reconcile();
    let job = world.the_job();
    world.claim(&job);
    world.delete();
    world.reconcile();
    world.advance(61);
    let plan = world.reconcile();
    assert_eq!(plan.release, [job]);
    let plan = world.reconcile();
    assert_eq!(plan.finalizer, FinalizerAction::Remove);
}

fn arm_purge(world: &mut World, value: &str) {
    world.medium.metadata.annotations = Some(
        [(
            ntt_crds::condition::PURGE_ANNOTATION.to_owned(),
            value.to_owned(),
        )]
        .into(),
    );
}

#[test]
fn a_purge_annotation_without_this_mediums_uid_is_refused_and_the_evidence_retained() {
    let mut world = World::new(Target::Imaged);
    // Copied from another Medium, or written into a manifest: not this object's uid.
    arm_purge(&mut world, "purge box-7-disk-2");
    world.reconcile();
    world.reconcile();
    world.run_active();
    world.reconcile();
    world.delete();
    let plan = world.reconcile();
    assert!(plan.create.is_none(), "no purge job");
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "PurgeNotArmed" && e.warning)
    );
    assert_eq!(plan.finalizer, FinalizerAction::Remove);
    assert_eq!(world.status().reason.as_deref(), Some("PurgeNotArmed"));
}

#[test]
fn an_armed_purge_runs_a_purge_job_before_the_finalizer_goes() {
    let mut world = World::new(Target::Imaged);
    let uid = world.medium.metadata.uid.clone().unwrap();
    arm_purge(&mut world, &uid);
    world.reconcile();
    world.reconcile();
    world.run_active();
    world.reconcile();
    world.delete();
    let plan = world.reconcile();
    let job = plan.create.as_ref().unwrap();
    assert_eq!(job.spec.stage, Stage::Purge);
    assert_eq!(plan.finalizer, FinalizerAction::Keep);
    let purge = world.the_job();
    world.claim(&purge);
    world.finish(&purge, Err(error(ErrorClass::Transient, "database down")));
    let plan = world.reconcile();
    assert_eq!(
        plan.finalizer,
        FinalizerAction::Keep,
        "a failed purge holds the Medium"
    );
    world.advance(10);
    world.reconcile();
    world.run_active();
    let plan = world.reconcile();
    assert_eq!(plan.finalizer, FinalizerAction::Remove);
    assert!(plan.events.iter().any(|e| e.reason == "Purged"));
}

#[test]
fn unreadable_areas_show_as_degraded_but_the_pipeline_goes_on() {
    let mut world = World::new(Target::Enumerated);
    world.reconcile();
    world.reconcile();
    let name = world.the_job();
    world.claim(&name);
    world.finish(
        &name,
        Ok(JobResult {
            medium_hash: Some("aa".to_owned()),
            health: Some("incomplete".to_owned()),
            summary: String::new(),
            verification: None,
        }),
    );
    let plan = world.reconcile();
    assert_eq!(plan.create.as_ref().unwrap().spec.stage, Stage::Enumerate);
    assert_eq!(
        world.condition(condition::DEGRADED),
        ("True".to_owned(), "UnreadableAreas".to_owned())
    );
    assert_eq!(world.status().health.as_deref(), Some("incomplete"));
}

/// Every condition describes the Medium's current generation.
fn assert_conditions_observe_the_generation(world: &World) {
    let generation = world.medium.metadata.generation;
    for c in &world.status().conditions {
        assert_eq!(c.observed_generation, generation, "{c:?}");
    }
}

/// `(Ready, Reconciling, Stalled)` statuses.
fn kstatus(world: &World) -> (String, String, String) {
    (
        world.condition(condition::READY).0,
        world.condition(condition::RECONCILING).0,
        world.condition(condition::STALLED).0,
    )
}

fn kstatus_of(ready: &str, reconciling: &str, stalled: &str) -> (String, String, String) {
    (ready.to_owned(), reconciling.to_owned(), stalled.to_owned())
}

#[test]
fn ready_reconciling_and_stalled_follow_the_medium_kstatus_style() {
    let mut world = World::new(Target::Copied);
    world.reconcile();
    world.reconcile();
    assert_eq!(kstatus(&world), kstatus_of("False", "True", "False"));
    assert_conditions_observe_the_generation(&world);
    world.run_active();
    world.reconcile();
    assert_eq!(kstatus(&world), kstatus_of("False", "True", "False"));
    // A transient failure backs off: still reconciling, not stalled.
    let name = world.the_job();
    world.claim(&name);
    world.finish(&name, Err(error(ErrorClass::Transient, "database down")));
    world.reconcile();
    assert_eq!(kstatus(&world), kstatus_of("False", "True", "False"));
    assert_eq!(world.condition(condition::RECONCILING).1, "BackingOff");
    world.advance(60);
    world.reconcile();
    world.run_active();
    world.reconcile();
    world.run_active();
    world.settle();
    assert_eq!(kstatus(&world), kstatus_of("True", "False", "False"));
    // A spec change: conditions carry the new generation at once.
    world.set_target(Target::Copied);
    world.reconcile();
    assert_conditions_observe_the_generation(&world);

    // Paused: neither ready, reconciling nor stalled (Argo CD shows it suspended).
    let mut world = World::new(Target::Imaged);
    world.annotate(PAUSED_ANNOTATION, "true");
    world.reconcile();
    world.reconcile();
    assert_eq!(kstatus(&world), kstatus_of("False", "False", "False"));
    assert_eq!(world.condition(condition::READY).1, "Suspended");

    // A permanent failure stalls with the error's message.
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    let name = world.the_job();
    world.claim(&name);
    world.finish(
        &name,
        Err(error(ErrorClass::Permanent, "refused (outside-roots)")),
    );
    world.reconcile();
    assert_eq!(kstatus(&world), kstatus_of("False", "False", "True"));
    let stalled = world.status().condition(condition::STALLED).unwrap();
    assert!(stalled.message.contains("outside-roots"), "{stalled:?}");

    // No agent ever claims the job: stalled once the warning time passed.
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    assert_eq!(kstatus(&world), kstatus_of("False", "True", "False"));
    world.advance(301);
    world.reconcile();
    assert_eq!(kstatus(&world), kstatus_of("False", "False", "True"));
    assert_eq!(world.condition(condition::STALLED).1, "NoAgent");
}

#[test]
fn a_deletion_says_what_blocks_it_and_whether_evidence_is_retained() {
    let mut world = World::new(Target::Copied);
    world.reconcile();
    world.reconcile();
    let name = world.the_job();
    world.claim(&name);
    assert!(
        world
            .status()
            .condition(condition::DELETION_BLOCKED)
            .is_none()
    );
    world.delete();
    world.reconcile();
    let blocked = world
        .status()
        .condition(condition::DELETION_BLOCKED)
        .unwrap()
        .clone();
    assert_eq!(
        (blocked.status.as_str(), blocked.reason.as_str()),
        ("True", "CancellingJobs")
    );
    assert!(blocked.message.contains("retained"), "{blocked:?}");
    assert_eq!(world.condition(condition::RECONCILING).0, "True");

    // An armed purge that fails holds the deletion, and says so.
    let mut world = World::new(Target::Imaged);
    let uid = world.medium.metadata.uid.clone().unwrap();
    arm_purge(&mut world, &uid);
    world.reconcile();
    world.reconcile();
    world.run_active();
    world.reconcile();
    world.delete();
    world.reconcile();
    assert_eq!(
        world.condition(condition::DELETION_BLOCKED),
        ("True".to_owned(), "Purging".to_owned())
    );
    let purge = world.the_job();
    world.claim(&purge);
    world.finish(&purge, Err(error(ErrorClass::Permanent, "catalog refused")));
    world.reconcile();
    assert_eq!(
        world.condition(condition::DELETION_BLOCKED),
        ("True".to_owned(), "PurgeFailed".to_owned())
    );
    assert_eq!(world.condition(condition::STALLED).0, "True");
}

#[test]
fn a_raised_profile_images_again_then_maps_and_copies_again() {
    let mut world = World::new(Target::Copied);
    world.reconcile();
    world.reconcile();
    let first = world.run_active();
    world.reconcile();
    world.run_active();
    world.reconcile();
    world.run_active();
    world.settle();
    assert_eq!(world.status().imaged_profile, Some(ImagingProfile::Default));
    assert_eq!(
        world.status().source.as_deref(),
        Some("/dev/disk/by-id/usb-WD_1234")
    );

    world.medium.spec.imaging.profile = ImagingProfile::Thorough;
    world.medium.spec.imaging.retries = Some(7);
    *world.medium.metadata.generation.as_mut().unwrap() += 1;
    let plan = world.reconcile();
    let job = plan.create.clone().expect("a new image job");
    assert_eq!(job.spec.stage, Stage::Image);
    assert_eq!(job.spec.attempt, 2);
    assert_eq!(job.spec.imaging.profile, ImagingProfile::Thorough);
    assert_eq!(job.spec.imaging.retries, Some(7));
    assert_eq!(
        world.condition(condition::IMAGED),
        ("False".to_owned(), "ProfileRaised".to_owned())
    );
    assert_eq!(
        world.condition(condition::UNDOCKABLE).0,
        "False",
        "the drive is needed again"
    );
    assert_eq!(world.condition(condition::READY).0, "False");
    assert_eq!(
        world.condition(condition::RECONCILING),
        ("True".to_owned(), "ProfileRaised".to_owned())
    );
    world.run_active();
    let plan = world.reconcile();
    assert_eq!(
        world.status().imaged_profile,
        Some(ImagingProfile::Thorough)
    );
    let job = plan.create.clone().expect("enumeration again");
    assert_eq!(job.spec.stage, Stage::Enumerate);
    assert_eq!(job.spec.image_profile, Some(ImagingProfile::Thorough));
    assert_eq!(world.condition(condition::COPIED).0, "False");
    world.run_active();
    let plan = world.reconcile();
    let job = plan.create.clone().expect("copy again");
    assert_eq!(job.spec.stage, Stage::Copy);
    world.run_active();
    world.settle();
    assert_eq!(world.status().phase, Phase::Completed);
    assert_eq!(kstatus(&world), kstatus_of("True", "False", "False"));
    assert!(
        !world.names().contains(&first),
        "the first image job is superseded: {:?}",
        world.names()
    );

    // A lower profile later images nothing again.
    world.medium.spec.imaging.profile = ImagingProfile::Quick;
    *world.medium.metadata.generation.as_mut().unwrap() += 1;
    world.reconcile();
    world.settle();
    assert!(world.active().is_empty());
    assert_eq!(world.status().phase, Phase::Completed);
}

#[test]
fn force_holds_only_for_the_recorded_medium_and_a_new_spec_retries_a_failed_stage() {
    let mut world = World::new(Target::Enumerated);
    world.reconcile();
    world.reconcile();
    world.run_active();
    world.reconcile();
    let name = world.the_job();
    assert!(!world.job_mut(&name).spec.force);
    world.claim(&name);
    world.finish(
        &name,
        Err(error(
            ErrorClass::Permanent,
            "the medium's health is failed: pass --force",
        )),
    );
    world.reconcile();
    assert_eq!(world.status().phase, Phase::Failed);
    world.settle();

    // A force naming another medium forces nothing, and is said once.
    world.medium.spec.force = Some("ffffffffffffffffffffffffffffffff".to_owned());
    *world.medium.metadata.generation.as_mut().unwrap() += 1;
    let plan = world.reconcile();
    assert!(plan.create.is_none(), "{:?}", plan.create);
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "ForceNotConfirmed" && e.warning)
    );
    world.settle();
    assert_eq!(world.status().phase, Phase::Failed);

    // The recorded hash confirms it: the failed stage runs again at once, forced.
    world.medium.spec.force = world.status().medium_hash.clone();
    *world.medium.metadata.generation.as_mut().unwrap() += 1;
    let plan = world.reconcile();
    let job = plan.create.clone().expect("a forced attempt");
    assert!(job.spec.force);
    assert_eq!(job.spec.stage, Stage::Enumerate);
    assert_eq!(world.status().attempts, 1);
    world.run_active();
    world.settle();
    assert_eq!(world.status().phase, Phase::Completed);
}

#[test]
fn job_names_fit_the_api_limits_and_stay_apart() {
    let mut world = World::new(Target::Copied);
    assert_eq!(
        job_name(&world.medium, Stage::Enumerate, 12),
        "box-7-disk-2-enumerate-12"
    );
    world.medium.metadata.name = Some(format!("{}.x", "a".repeat(250)));
    let long = job_name(&world.medium, Stage::Enumerate, 12);
    assert!(long.len() <= 253, "{}", long.len());
    assert!(long.ends_with("-2f1c9a4e-enumerate-12"), "{long}");
}

#[test]
fn backoff_doubles_up_to_its_ceiling() {
    let s = settings();
    let waits: Vec<u64> = (1..=6).map(|a| backoff(&s, a).as_secs()).collect();
    assert_eq!(waits, [10, 20, 40, 80, 100, 100]);
}

/// What a verify job reports: covered or not, `bad` wrong blobs held by this Medium, another
/// Medium and a medium ingested standalone.
fn verify_result(complete: bool, bad: u8, at: Timestamp) -> ntt_crds::VerifyResult {
    let blobs: Vec<ntt_crds::BadBlob> = (0..bad)
        .map(|i| ntt_crds::BadBlob {
            blake3: format!("{i:064x}"),
            outcome: "mismatch".to_owned(),
            media: vec![
                "lab/box-7-disk-2".to_owned(),
                "lab/box-9".to_owned(),
                "old-standalone-disk".to_owned(),
            ],
        })
        .collect();
    ntt_crds::VerifyResult {
        checked: 12,
        bytes: 4096,
        complete,
        verified_at: (complete && bad == 0).then_some(Time(at)),
        bad_total: i64::from(bad),
        bad: blobs,
    }
}

/// [`verify_result`] in a job's result; `at`: when the medium's oldest check was.
fn verify_job_result(complete: bool, bad: u8, at: Timestamp) -> JobResult {
    JobResult {
        medium_hash: Some("726cdff6dc73e3dd1abe0e4c9762dff5".to_owned()),
        verification: Some(verify_result(complete, bad, at)),
        ..JobResult::default()
    }
}

/// Runs the pipeline of a new Medium to Copied.
fn copied_world(verification: Option<VerifySettings>) -> World {
    let mut world = World::new(Target::Copied);
    world.settings.verification = verification;
    for _ in 0..20 {
        world.reconcile();
        if world.status().phase == Phase::Completed {
            return world;
        }
        if world.active().len() == 1 {
            world.run_active();
        }
    }
    panic!("not copied: {:?}", world.status());
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one medium's verifications, step by step"
)]
fn a_copied_medium_is_verified_each_interval_within_its_budget_and_wrong_blobs_degrade_it() {
    let interval = Duration::from_secs(1000);
    let mut world = copied_world(Some(VerifySettings {
        interval,
        budget: Duration::from_secs(100),
    }));
    world.settle();
    let copied_at = world.status().completed_at.clone().unwrap();
    assert_eq!(
        world.condition(condition::VERIFIED),
        ("False".to_owned(), "NotVerifiedYet".to_owned())
    );
    let state = world.status().verification.clone().unwrap();
    assert_eq!(
        state.next_at.unwrap().0,
        copied_at.0 + SignedDuration::from_secs(1001),
        "the first verification one interval (and a second) after the copy"
    );
    assert!(world.plan().requeue.unwrap() <= interval + Duration::from_secs(1));
    // Due: one job, budgeted, re-hashing what was not found right within the interval.
    world.advance(1001);
    let plan = world.reconcile();
    let job = plan.create.expect("a verify job");
    assert_eq!(job.spec.stage, Stage::Verify);
    assert_eq!(job.metadata.name.as_deref(), Some("box-7-disk-2-verify-1"));
    assert_eq!(job.spec.medium_hash, world.status().medium_hash);
    let options = job.spec.verify.clone().unwrap();
    assert_eq!(options.budget_seconds, 100);
    assert_eq!(
        options.stale_before.0,
        world.now - SignedDuration::from_secs(1000)
    );
    assert_eq!(
        world.status().phase,
        Phase::Completed,
        "still completed while verifying"
    );
    assert_eq!(world.condition(condition::READY).0, "True");
    world.settle();
    // The budget ran out: the next job at once, the first one removed.
    world.claim("box-7-disk-2-verify-1");
    world.advance(100);
    world.finish(
        "box-7-disk-2-verify-1",
        Ok(verify_job_result(false, 0, world.now)),
    );
    let plan = world.reconcile();
    assert_eq!(
        plan.create.and_then(|j| j.metadata.name).as_deref(),
        Some("box-7-disk-2-verify-2")
    );
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    let plan = world.reconcile();
    assert_eq!(plan.delete, ["box-7-disk-2-verify-1"]);
    // Covered, all right: Verified, the next one an interval after the oldest check.
    world.claim("box-7-disk-2-verify-2");
    world.advance(50);
    let oldest = world.now - SignedDuration::from_secs(30);
    world.finish(
        "box-7-disk-2-verify-2",
        Ok(verify_job_result(true, 0, oldest)),
    );
    let plan = world.reconcile();
    assert_eq!(plan.events.len(), 1, "{:?}", plan.events);
    assert_eq!(plan.events[0].reason, "Verified");
    assert_eq!(
        world.condition(condition::VERIFIED),
        ("True".to_owned(), "AllBlobsMatch".to_owned())
    );
    let state = world.status().verification.clone().unwrap();
    // The oldest check of its blobs (another medium's verification may have made it).
    let verified_at = oldest;
    assert_eq!(state.last_verified_at.unwrap().0, verified_at);
    assert_eq!(
        state.next_at.unwrap().0,
        verified_at + SignedDuration::from_secs(1001)
    );
    assert_eq!(state.bad_blobs, 0);
    world.settle();
    // Asked for (the annotation): at once, and the same value does nothing twice.
    world.annotate(VERIFY_ANNOTATION, "now");
    let plan = world.reconcile();
    assert_eq!(plan.create.unwrap().spec.stage, Stage::Verify);
    assert_eq!(
        world
            .status()
            .verification
            .as_ref()
            .unwrap()
            .request_seen
            .as_deref(),
        Some("now")
    );
    // Wrong blobs: Verified False, Degraded naming them and their media, a Warning once, and
    // the other Medium holding them asked to verify (not this one, not a standalone medium).
    world.claim("box-7-disk-2-verify-3");
    world.advance(10);
    world.finish(
        "box-7-disk-2-verify-3",
        Ok(verify_job_result(true, 2, world.now)),
    );
    let plan = world.reconcile();
    assert_eq!(
        world.condition(condition::VERIFIED),
        ("False".to_owned(), "FixityFailed".to_owned())
    );
    assert_eq!(
        world.condition(condition::DEGRADED),
        ("True".to_owned(), "FixityFailed".to_owned())
    );
    let degraded = world
        .status()
        .condition(condition::DEGRADED)
        .unwrap()
        .message
        .clone();
    assert!(
        degraded.starts_with("2 blob(s) of this medium failed verification")
            && degraded.contains(&format!(
                "{:064x} mismatch (held by lab/box-7-disk-2, lab/box-9",
                1
            )),
        "{degraded}"
    );
    let warnings: Vec<_> = plan.events.iter().filter(|e| e.warning).collect();
    assert_eq!(warnings.len(), 1, "{:?}", plan.events);
    assert_eq!(warnings[0].reason, "FixityFailed");
    assert!(
        warnings[0].note.contains("lab/box-9"),
        "{}",
        warnings[0].note
    );
    assert_eq!(plan.verify_requests.len(), 1, "{:?}", plan.verify_requests);
    let request = &plan.verify_requests[0];
    assert_eq!(
        (request.namespace.as_str(), request.name.as_str()),
        ("lab", "box-9")
    );
    assert_eq!(world.status().verification.as_ref().unwrap().bad_blobs, 2);
    assert!(
        world
            .status()
            .verification
            .as_ref()
            .unwrap()
            .last_verified_at
            .is_none()
    );
    world.settle();
    // Stays degraded (its message too) while the next verification runs.
    world.advance(1001);
    world.reconcile();
    world.claim("box-7-disk-2-verify-4");
    let plan = world.reconcile();
    assert!(
        plan.verify_requests.is_empty() && plan.events.is_empty(),
        "{plan:?}"
    );
    assert_eq!(
        world
            .status()
            .condition(condition::DEGRADED)
            .unwrap()
            .message,
        degraded
    );
    // A failed verify job: a warning, then another after the backoff.
    world.advance(5);
    world.finish(
        "box-7-disk-2-verify-4",
        Err(error(ErrorClass::Transient, "database down")),
    );
    let plan = world.reconcile();
    assert_eq!(plan.events.len(), 1, "{:?}", plan.events);
    assert_eq!(plan.events[0].reason, "VerifyFailed");
    assert!(plan.create.is_none());
    assert_eq!(world.status().verification.as_ref().unwrap().failures, 1);
    world.advance(10);
    let plan = world.reconcile();
    assert_eq!(plan.create.unwrap().spec.stage, Stage::Verify);
    // It finds them right again: the degradation ends.
    world.claim("box-7-disk-2-verify-5");
    world.finish(
        "box-7-disk-2-verify-5",
        Ok(verify_job_result(true, 0, world.now)),
    );
    world.reconcile();
    assert_eq!(
        world.condition(condition::DEGRADED),
        ("False".to_owned(), "Healthy".to_owned())
    );
    assert_eq!(world.status().verification.as_ref().unwrap().failures, 0);
    world.settle();
}

#[test]
fn pipeline_work_and_pause_come_before_verification() {
    let mut world = copied_world(Some(VerifySettings {
        interval: Duration::from_secs(100),
        budget: Duration::from_secs(10),
    }));
    world.advance(101);
    world.reconcile();
    world.claim("box-7-disk-2-verify-1");
    // A stronger profile images the drive again: the verification is cancelled for it.
    world.medium.spec.imaging.profile = ImagingProfile::Thorough;
    *world.medium.metadata.generation.as_mut().unwrap() += 1;
    let plan = world.reconcile();
    assert_eq!(plan.delete, ["box-7-disk-2-verify-1"]);
    assert_eq!(plan.create.unwrap().spec.stage, Stage::Image);
    // Paused once copied again: no verification starts, even when asked.
    world.annotate(PAUSED_ANNOTATION, "true");
    world.annotate(VERIFY_ANNOTATION, "now");
    world.finish(
        "box-7-disk-2-verify-1",
        Err(error(ErrorClass::Cancelled, "cancelled")),
    );
    world.settle();
    let plan = world.plan();
    assert!(plan.create.is_none());
    // Without verification scheduled, the condition says so and no job comes.
    let mut quiet = copied_world(None);
    quiet.advance(1_000_000);
    quiet.settle();
    assert_eq!(
        quiet.condition(condition::VERIFIED),
        ("False".to_owned(), "NotScheduled".to_owned())
    );
    assert!(quiet.jobs.iter().all(|j| j.spec.stage != Stage::Verify));
}

#[test]
fn a_silent_verify_job_is_failed_as_lost_and_holders_are_asked_once_per_finding() {
    let mut world = copied_world(Some(VerifySettings {
        interval: Duration::from_secs(100),
        budget: Duration::from_secs(10),
    }));
    world.advance(101);
    world.reconcile();
    world.claim("box-7-disk-2-verify-1");
    // Within the heartbeat timeout: nothing; past it: failed as lost, then tried again.
    world.advance(30);
    assert!(world.reconcile().fail.is_none());
    world.advance(31);
    let plan = world.reconcile();
    let lost = plan.fail.expect("failed as lost");
    assert_eq!(lost.name, "box-7-disk-2-verify-1");
    assert_eq!(lost.error.class, ErrorClass::Lost);
    world.reconcile();
    world.advance(20);
    let plan = world.reconcile();
    assert_eq!(
        plan.create.and_then(|j| j.metadata.name).as_deref(),
        Some("box-7-disk-2-verify-2")
    );
    // Two jobs finding the same wrong blobs ask the other holder with the same value: the
    // holder, asking back, changes nothing either.
    world.claim("box-7-disk-2-verify-2");
    world.finish(
        "box-7-disk-2-verify-2",
        Ok(verify_job_result(true, 2, world.now)),
    );
    let first = world.reconcile().verify_requests;
    world.annotate(VERIFY_ANNOTATION, &first[0].value);
    world.reconcile();
    world.claim("box-7-disk-2-verify-3");
    world.finish(
        "box-7-disk-2-verify-3",
        Ok(verify_job_result(true, 2, world.now)),
    );
    let second = world.reconcile().verify_requests;
    assert_eq!(first, second);
    // Its own annotation already holds that value: no further job.
    world.settle();
    assert!(world.active().is_empty(), "{:?}", world.names());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Event {
        Reconcile,
        ReconcileStatusLost,
        Advance(i64),
        Claim,
        Heartbeat,
        Succeed,
        Fail(ErrorClass),
        Target(Target),
        Pause(bool),
        Retry(u8),
        Verify(u8),
        Delete,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            6 => Just(Event::Reconcile),
            1 => Just(Event::ReconcileStatusLost),
            2 => (1_i64..200).prop_map(Event::Advance),
            2 => Just(Event::Claim),
            1 => Just(Event::Heartbeat),
            2 => Just(Event::Succeed),
            1 => prop_oneof![
                Just(ErrorClass::Transient),
                Just(ErrorClass::Permanent),
                Just(ErrorClass::Cancelled)
            ]
            .prop_map(Event::Fail),
            1 => prop_oneof![Just(Target::Imaged), Just(Target::Enumerated), Just(Target::Copied)]
                .prop_map(Event::Target),
            1 => any::<bool>().prop_map(Event::Pause),
            1 => (0_u8..3).prop_map(Event::Retry),
            1 => (0_u8..3).prop_map(Event::Verify),
            1 => Just(Event::Delete),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 400,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever agents, clocks and users do: at most one active job per Medium, never a
        /// job beyond the target, the finalizer leaves only when no job is active, planning is
        /// deterministic, and a settled Medium plans no writes.
        #[test]
        fn invariants_hold_under_random_histories(events in prop::collection::vec(event(), 1..80)) {
            let mut world = World::new(Target::Copied);
            world.settings.verification = Some(VerifySettings {
                interval: Duration::from_mins(5),
                budget: Duration::from_mins(1),
            });
            for event in events {
                if world.gone {
                    break;
                }
                let active = world.active().first().and_then(|j| j.metadata.name.clone());
                let claimed = active.as_ref().is_some_and(|n| {
                    world.jobs.iter().any(|j| j.metadata.name.as_ref() == Some(n)
                        && j.status.as_ref().is_some_and(|s| s.state == JobState::Running))
                });
                match event {
                    Event::Reconcile => {
                        let first = world.plan();
                        prop_assert_eq!(&first, &world.plan(), "deterministic");
                        let plan = world.reconcile();
                        if let Some(job) = &plan.create {
                            match job.spec.stage {
                                Stage::Purge => {}
                                Stage::Verify => {
                                    prop_assert_eq!(world.medium.spec.target, Target::Copied);
                                    prop_assert!(world.status().condition(condition::READY)
                                        .is_some_and(|c| c.status == "True"), "verified once copied");
                                }
                                stage => prop_assert!(stage.completes().unwrap() <= world.medium.spec.target),
                            }
                        }
                        let paused = world.medium.metadata.annotations.as_ref()
                            .is_some_and(|a| a.get(PAUSED_ANNOTATION).is_some_and(|v| v == "true"));
                        if paused && world.medium.metadata.deletion_timestamp.is_none() {
                            prop_assert!(plan.create.is_none(), "no new job while paused");
                        }
                        if plan.finalizer == FinalizerAction::Remove {
                            prop_assert!(world.active().is_empty());
                        }
                        if !world.active().is_empty() {
                            prop_assert!(world.status().attempts >= 1, "an active job is an attempt");
                        }
                    }
                    Event::ReconcileStatusLost => {
                        world.reconcile_status_lost();
                    }
                    Event::Advance(s) => world.advance(s),
                    Event::Claim => if let Some(name) = active.filter(|_| !claimed) { world.claim(&name) },
                    Event::Heartbeat => if let Some(name) = active.filter(|_| claimed) { world.heartbeat(&name, None) },
                    Event::Succeed => if let Some(name) = active.filter(|_| claimed) {
                        let verify = name.contains("-verify-");
                        let complete = world.now.as_second() % 2 == 0;
                        world.finish(&name, Ok(JobResult {
                            verification: verify.then(|| verify_result(complete, u8::from(!complete), world.now)),
                            ..JobResult::default()
                        }));
                    },
                    Event::Fail(class) => if let Some(name) = active.filter(|_| claimed) {
                        world.finish(&name, Err(error(class, "boom")));
                    },
                    Event::Target(t) => world.set_target(t),
                    Event::Pause(p) => world.annotate(PAUSED_ANNOTATION, if p { "true" } else { "false" }),
                    Event::Retry(v) => world.annotate(RETRY_ANNOTATION, &v.to_string()),
                    Event::Verify(v) => world.annotate(VERIFY_ANNOTATION, &v.to_string()),
                    Event::Delete => world.delete(),
                }
                prop_assert!(world.active().len() <= 1, "one active job: {:?}", world.names());
            }
            if !world.gone {
                world.settle();
            }
        }
    }
}

/// A JSON value as a Lua 5.1 table constructor (nulls left out, as Argo CD's conversion does).
fn lua(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua(&Value::String(k.clone())), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The chart's Argo CD health check run by Lua 5.1 (Argo CD's dialect) on `medium`:
/// `(status, message)`.
fn argocd_health(medium: &Medium) -> (String, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/ntt/files/argocd-health.lua"
    );
    let object = serde_json::to_value(medium).unwrap();
    let program = format!(
        "obj = {}\nlocal hs = assert(loadfile({}))()\nio.write(hs.status, \"\\n\", hs.message or \"\")",
        lua(&object),
        lua(&serde_json::Value::String(script.to_owned()))
    );
    let output = std::process::Command::new("lua5.1")
        .arg("-e")
        .arg(&program)
        .output()
        .expect("lua5.1 runs (scripts/setup installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap();
    (status.to_owned(), message.to_owned())
}

#[test]
fn the_argocd_health_check_maps_each_phase_of_the_controllers_statuses() {
    let health = |world: &World| argocd_health(&world.medium);
    // Before the controller wrote anything.
    let mut world = World::new(Target::Copied);
    assert_eq!(health(&world).0, "Progressing");
    world.reconcile();
    world.reconcile();
    let (status, message) = health(&world);
    assert_eq!(status, "Progressing");
    assert!(message.starts_with("Imaging"), "{message}");
    // A running job with progress.
    let name = world.the_job();
    world.claim(&name);
    world.heartbeat(
        &name,
        Some(Progress {
            summary: "imaging: 41.00% rescued".to_owned(),
            ..Progress::default()
        }),
    );
    world.reconcile();
    assert_eq!(
        health(&world),
        (
            "Progressing".to_owned(),
            "Imaging: imaging: 41.00% rescued".to_owned()
        )
    );
    // A spec the controller has not seen yet.
    world.set_target(Target::Enumerated);
    assert_eq!(health(&world).0, "Progressing");
    assert!(health(&world).1.contains("observe generation 2"));
    world.reconcile();
    // Backing off after a transient failure is still progress.
    world.finish(&name, Err(error(ErrorClass::Transient, "database down")));
    world.reconcile();
    assert_eq!(world.status().phase, Phase::Imaging);
    assert_eq!(health(&world).0, "Progressing");
    world.advance(60);
    world.reconcile();
    world.run_active();
    world.reconcile();
    world.run_active();
    world.settle();
    assert_eq!(
        health(&world),
        ("Healthy".to_owned(), "Completed".to_owned())
    );
    // Completed with unreadable areas: done, the damage is in the catalog.
    world.medium.status.as_mut().unwrap().health = Some("incomplete".to_owned());
    assert_eq!(
        health(&world),
        (
            "Healthy".to_owned(),
            "Completed; medium health incomplete".to_owned()
        )
    );

    // Paused.
    let mut world = World::new(Target::Imaged);
    world.annotate(PAUSED_ANNOTATION, "true");
    world.reconcile();
    world.reconcile();
    assert_eq!(health(&world).0, "Suspended");

    // Failed for good: degraded, with the reason and the error.
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    let name = world.the_job();
    world.claim(&name);
    world.finish(
        &name,
        Err(error(
            ErrorClass::Permanent,
            "refused by the agent's allowlist (device-not-allowed): \"/dev/nvme0n1\"",
        )),
    );
    world.reconcile();
    let (status, message) = health(&world);
    assert_eq!(status, "Degraded");
    assert!(
        message.starts_with("Failed: refused") && message.contains("\"/dev/nvme0n1\""),
        "{message}"
    );

    // No agent on the node for too long: degraded, naming why.
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    world.advance(301);
    world.reconcile();
    let (status, message) = health(&world);
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("NoAgent: "), "{message}");

    // Being deleted: progressing until the finalizer goes.
    let mut world = World::new(Target::Imaged);
    world.reconcile();
    world.reconcile();
    let name = world.the_job();
    world.claim(&name);
    world.delete();
    world.reconcile();
    let (status, message) = health(&world);
    assert_eq!(status, "Progressing");
    assert!(message.starts_with("Deleting"), "{message}");
}

#[test]
fn the_argocd_health_check_says_degraded_when_stored_content_is_wrong() {
    // Stored content found wrong by a verification: degraded, naming it.
    let mut world = copied_world(Some(VerifySettings {
        interval: Duration::from_secs(10),
        budget: Duration::from_secs(10),
    }));
    world.advance(11);
    world.reconcile();
    world.claim("box-7-disk-2-verify-1");
    world.finish(
        "box-7-disk-2-verify-1",
        Ok(verify_job_result(true, 1, world.now)),
    );
    world.reconcile();
    let (status, message) = argocd_health(&world.medium);
    assert_eq!(status, "Degraded");
    assert!(
        message.starts_with("FixityFailed: 1 blob(s) of this medium failed verification"),
        "{message}"
    );
}
