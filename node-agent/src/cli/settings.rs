//! The host's settings, as global flags: where images, locks, mounts and the store are.

use std::path::PathBuf;
use std::time::Duration;

use ntt_crds::HealthThresholds;

use crate::env;
use crate::pipeline::Host;
use crate::volume::access::Settings;

/// Host settings shared by the stages.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// Directory for images and mapfiles
    #[arg(long, global = true, env = env::DATA_DIR, default_value = env::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Directory for host locks (one ddrescue per device, one mount per medium)
    #[arg(long, global = true, env = env::LOCK_DIR, default_value = env::DEFAULT_LOCK_DIR)]
    pub lock_dir: PathBuf,

    /// Lowest rescued percentage that is still health "incomplete"
    #[arg(long, global = true, env = env::HEALTH_INCOMPLETE, default_value_t = 95.0)]
    pub health_incomplete: f64,

    /// Lowest rescued percentage that is still health "corrupt" (below: "failed")
    #[arg(long, global = true, env = env::HEALTH_CORRUPT, default_value_t = 50.0)]
    pub health_corrupt: f64,

    /// Directory of mount points: `<mount-dir>/<medium hash>/<volume number>`
    #[arg(long, global = true, env = env::MOUNT_DIR, default_value = env::DEFAULT_MOUNT_DIR)]
    pub mount_dir: PathBuf,

    /// Seconds one mount may take before the filesystem is given up as damaged
    #[arg(long, global = true, env = env::MOUNT_TIMEOUT, default_value_t = 60)]
    pub mount_timeout: u64,

    /// Seconds one open or read of a volume may take before the watchdog aborts it (the FUSE
    /// connection, or The Sleuth Kit's process) and the volume is given up
    #[arg(long, global = true, env = env::READ_TIMEOUT, default_value_t = 120)]
    pub read_timeout: u64,

    /// Root of the content-addressed store
    #[arg(long, global = true, env = env::STORE, default_value = env::DEFAULT_STORE)]
    pub store: PathBuf,
}

impl HostArgs {
    /// The thresholds, validated.
    pub fn thresholds(&self) -> anyhow::Result<HealthThresholds> {
        let valid = |p: f64| (0.0..=100.0).contains(&p);
        anyhow::ensure!(
            valid(self.health_incomplete)
                && valid(self.health_corrupt)
                && self.health_corrupt <= self.health_incomplete,
            "health thresholds must satisfy 0 <= corrupt ({}) <= incomplete ({}) <= 100",
            self.health_corrupt,
            self.health_incomplete
        );
        Ok(HealthThresholds {
            incomplete_percent: self.health_incomplete,
            corrupt_percent: self.health_corrupt,
        })
    }

    /// What the pipeline needs of this host.
    pub fn host(&self) -> anyhow::Result<Host> {
        let mut volumes = Settings::for_host(
            self.mount_dir.clone(),
            self.lock_dir.clone(),
            self.data_dir.clone(),
        )?;
        volumes.mount_timeout = Duration::from_secs(self.mount_timeout.max(1));
        Ok(Host {
            data_dir: self.data_dir.clone(),
            lock_dir: self.lock_dir.clone(),
            thresholds: self.thresholds()?,
            volumes,
            store: self.store.clone(),
            read_timeout: Duration::from_secs(self.read_timeout.max(1)),
        })
    }
}
