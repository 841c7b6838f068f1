//! Which jobs to claim and which running ones to cancel: a pure decision from what the job
//! watch shows and what this agent runs.
//!
//! Rules:
//! - A running job is cancelled when its job is gone, being deleted, marked failed by someone
//!   else (the controller found its heartbeat stale), or taken by another agent.
//! - A job is claimed when it waits (`Pending`, no agent finalizer, not being deleted), its
//!   medium is not busy (this agent runs a job of it, or any agent's job of it is `Running`, or
//!   another job of it is claimed in the same decision), and the node's limit leaves room.
//!   Jobs are taken by name, background jobs (periodic verifications) after every other
//!   waiting one, so a decision is the same for the same facts and a drive docked for
//!   ingest never waits behind verifications that have not started.

use ntt_crds::JobState;

/// One job as the watch shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    /// Its uid.
    pub uid: String,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The Medium it works on (a name in the namespace).
    pub medium: String,
    /// Its state.
    pub state: JobState,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// Whether an agent's finalizer is on it (an agent claimed it).
    pub claimed: bool,
    /// The agent its status names.
    pub agent: Option<String>,
    /// A background job (a periodic verification): taken after the others.
    pub background: bool,
}

/// One job this agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningFacts {
    /// The job's uid.
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its Medium.
    pub medium: String,
    /// Whether it was cancelled already (it still holds its medium until it ends).
    pub cancelled: bool,
}

/// What to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Uids of the jobs to claim, in order.
    pub claim: Vec<String>,
    /// Uids of the running jobs to cancel.
    pub cancel: Vec<String>,
}

/// Decides (pure).
pub fn decide(
    jobs: &[JobFacts],
    running: &[RunningFacts],
    identity: &str,
    max_jobs: usize,
) -> Decision {
    let mut decision = Decision::default();
    for run in running.iter().filter(|r| !r.cancelled) {
        let taken = jobs.iter().find(|j| j.uid == run.uid).is_none_or(|j| {
            j.deleting
                || j.state == JobState::Failed
                || j.agent.as_deref().is_some_and(|a| a != identity)
        });
        if taken {
            decision.cancel.push(run.uid.clone());
        }
    }
    let mut busy: Vec<(&str, &str)> = running
        .iter()
        .map(|r| (r.namespace.as_str(), r.medium.as_str()))
        .chain(
            jobs.iter()
                .filter(|j| j.state == JobState::Running)
                .map(|j| (j.namespace.as_str(), j.medium.as_str())),
        )
        .collect();
    let mut waiting: Vec<&JobFacts> = jobs
        .iter()
        .filter(|j| j.state == JobState::Pending && !j.deleting && !j.claimed)
        .collect();
    waiting.sort_by(|a, b| {
        (a.background, &a.namespace, &a.name).cmp(&(b.background, &b.namespace, &b.name))
    });
    let room = max_jobs.max(1).saturating_sub(running.len());
    for job in waiting {
        if decision.claim.len() >= room {
            break;
        }
        let medium = (job.namespace.as_str(), job.medium.as_str());
        if busy.contains(&medium) {
            continue;
        }
        busy.push(medium);
        decision.claim.push(job.uid.clone());
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(uid: &str, medium: &str, state: JobState) -> JobFacts {
        JobFacts {
            uid: uid.into(),
            name: format!("{medium}-{uid}"),
            namespace: "lab".into(),
            medium: medium.into(),
            state,
            deleting: false,
            claimed: false,
            agent: None,
            background: false,
        }
    }

    fn running(uid: &str, medium: &str) -> RunningFacts {
        RunningFacts {
            uid: uid.into(),
            namespace: "lab".into(),
            medium: medium.into(),
            cancelled: false,
        }
    }

    /// What the watch shows, what runs here, the node's limit, and the jobs to claim.
    type Case = (Vec<JobFacts>, Vec<RunningFacts>, usize, Vec<&'static str>);

    fn claims(jobs: &[JobFacts], run: &[RunningFacts], max: usize) -> Vec<String> {
        decide(jobs, run, "me", max).claim
    }

    #[test]
    fn waiting_jobs_are_claimed_within_the_node_limit_one_per_medium() {
        use JobState::{Pending, Running, Succeeded};
        // (what the watch shows, what runs here, the limit) -> what is claimed
        let cases: Vec<Case> = vec![
            (vec![job("a", "m1", Pending)], vec![], 1, vec!["a"]),
            (
                vec![job("a", "m1", Pending), job("b", "m2", Pending)],
                vec![],
                1,
                vec!["a"],
            ),
            (
                vec![job("a", "m1", Pending), job("b", "m2", Pending)],
                vec![],
                2,
                vec!["a", "b"],
            ),
            // Two jobs of one medium: one at a time.
            (
                vec![job("a", "m1", Pending), job("b", "m1", Pending)],
                vec![],
                4,
                vec!["a"],
            ),
            // The medium is busy here, or with another agent.
            (
                vec![job("a", "m1", Pending)],
                vec![running("r", "m1")],
                4,
                vec![],
            ),
            (
                vec![job("a", "m1", Pending), job("r", "m1", Running)],
                vec![],
                4,
                vec![],
            ),
            // The limit counts what runs here.
            (
                vec![job("a", "m1", Pending)],
                vec![running("r", "m2")],
                1,
                vec![],
            ),
            (
                vec![job("a", "m1", Pending)],
                vec![running("r", "m2")],
                2,
                vec!["a"],
            ),
            // Finished, claimed or deleted jobs are not waiting.
            (vec![job("a", "m1", Succeeded)], vec![], 1, vec![]),
            (
                vec![JobFacts {
                    claimed: true,
                    ..job("a", "m1", Pending)
                }],
                vec![],
                1,
                vec![],
            ),
            (
                vec![JobFacts {
                    deleting: true,
                    ..job("a", "m1", Pending)
                }],
                vec![],
                1,
                vec![],
            ),
            // A medium of the same name in another namespace is another medium.
            (
                vec![
                    job("a", "m1", Pending),
                    JobFacts {
                        namespace: "other".into(),
                        ..job("b", "m1", Pending)
                    },
                ],
                vec![],
                2,
                vec!["a", "b"],
            ),
            // A limit of 0 still runs one job.
            (vec![job("a", "m1", Pending)], vec![], 0, vec!["a"]),
        ];
        for (index, (jobs, run, max, expected)) in cases.iter().enumerate() {
            // In namespace, then name order.
            assert_eq!(claims(jobs, run, *max), *expected, "case {index}");
        }
    }

    #[test]
    fn a_verification_waits_behind_pipeline_jobs_whatever_the_names() {
        let verify = |uid: &str, medium: &str| JobFacts {
            background: true,
            ..job(uid, medium, JobState::Pending)
        };
        let jobs = vec![verify("a", "m1"), job("b", "m2", JobState::Pending)];
        assert_eq!(claims(&jobs, &[], 1), ["b"]);
        assert_eq!(claims(&jobs, &[], 2), ["b", "a"]);
        // Alone, it is taken.
        assert_eq!(claims(&jobs[..1], &[], 1), ["a"]);
    }

    #[test]
    fn running_jobs_are_cancelled_when_deleted_gone_failed_or_taken() {
        use JobState::Running;
        let mine = JobFacts {
            agent: Some("me".into()),
            claimed: true,
            ..job("a", "m1", Running)
        };
        let cases: Vec<(Option<JobFacts>, bool, bool)> = vec![
            // (the job as the watch shows it, already cancelled) -> cancelled now
            (Some(mine.clone()), false, false),
            (None, false, true),
            (
                Some(JobFacts {
                    deleting: true,
                    ..mine.clone()
                }),
                false,
                true,
            ),
            (
                Some(JobFacts {
                    state: JobState::Failed,
                    ..mine.clone()
                }),
                false,
                true,
            ),
            (
                Some(JobFacts {
                    agent: Some("other".into()),
                    ..mine.clone()
                }),
                false,
                true,
            ),
            (None, true, false),
        ];
        for (index, (job, cancelled, expected)) in cases.into_iter().enumerate() {
            let jobs: Vec<JobFacts> = job.into_iter().collect();
            let run = RunningFacts {
                cancelled,
                ..running("a", "m1")
            };
            let decision = decide(&jobs, &[run], "me", 1);
            assert_eq!(
                decision.cancel == ["a"],
                expected,
                "case {index}: {decision:?}"
            );
            assert!(decision.claim.is_empty(), "case {index}");
        }
    }

    #[test]
    fn the_same_facts_give_the_same_decision() {
        let jobs = vec![
            job("c", "m3", JobState::Pending),
            job("a", "m1", JobState::Pending),
            job("b", "m2", JobState::Pending),
        ];
        let mut reversed = jobs.clone();
        reversed.reverse();
        assert_eq!(decide(&jobs, &[], "me", 2), decide(&reversed, &[], "me", 2));
        assert_eq!(decide(&jobs, &[], "me", 2).claim, ["a", "b"]);
    }
}
