//! The progressive ddrescue passes and the command line of each (pure).
//!
//! Rules: every pass resumes from the same mapfile, so a pass only ever works on what the passes
//! before it left; a pass whose work is already done is skipped ([`Pass::has_work`]); the run
//! stops as soon as every byte is rescued. Input is read with direct I/O on block devices
//! (`--idirect`), in every pass, not only the last: buffered reads go through the page cache and
//! its read-ahead, which blurs bad areas to page or read-ahead size and can mask or spread
//! errors; direct reads make the mapfile's bad areas exact to the sector.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::mapfile::RescueSummary;

/// What a pass does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PassKind {
    /// Copy everything readable in large clusters, skipping bad areas; no trimming or scraping.
    Fast,
    /// Trim the edges of the failed clusters, sector by sector.
    Trim,
    /// Read the inside of trimmed areas sector by sector.
    Scrape,
    /// Retry bad sectors backwards (some drives read differently in reverse).
    Reverse,
    /// Retry bad sectors one sector at a time, several times.
    Retry,
}

impl PassKind {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Trim => "trim",
            Self::Scrape => "scrape",
            Self::Reverse => "reverse",
            Self::Retry => "retry",
        }
    }
}

/// One ddrescue invocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pass {
    /// What it does.
    pub kind: PassKind,
    /// Sectors read at a time in the copying phase (`--cluster-size`).
    pub cluster_sectors: u32,
    /// Retry passes over bad sectors (`--retry-passes`).
    pub retries: u32,
    /// Give up the pass after this long without a successful read (`--timeout`).
    pub stall_timeout: Option<Duration>,
    /// Stop the pass (SIGINT, mapfile saved) after this long, and go on with the next.
    pub max_duration: Option<Duration>,
}

impl Pass {
    const fn new(kind: PassKind, cluster_sectors: u32, retries: u32) -> Self {
        Self {
            kind,
            cluster_sectors,
            retries,
            stall_timeout: None,
            max_duration: None,
        }
    }

    /// Whether the mapfile leaves work for this pass (`None`: no mapfile yet).
    pub fn has_work(&self, summary: Option<&RescueSummary>) -> bool {
        let Some(s) = summary else {
            return true;
        };
        match self.kind {
            PassKind::Fast => s.non_tried > 0 || s.total == 0,
            PassKind::Trim => s.non_tried + s.non_trimmed > 0,
            PassKind::Scrape => s.non_tried + s.non_trimmed + s.non_scraped > 0,
            PassKind::Reverse | PassKind::Retry => !s.is_complete(),
        }
    }

    /// The ddrescue arguments for this pass.
    pub fn arguments(&self, source: &Input<'_>, image: &Path, mapfile: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            format!("--sector-size={}", source.sector_size).into(),
            format!("--cluster-size={}", self.cluster_sectors).into(),
            // Progress and health are read from the mapfile while ddrescue runs, so save it more
            // often than ddrescue's default (30 s). Not every 2 s: on a 2 GiB benchmark that
            // cost ~15 % of throughput, 5 s costs nothing measurable (bench/imaging.sh).
            "--mapfile-interval=5".into(),
        ];
        if source.direct {
            args.push("--idirect".into());
        }
        match self.kind {
            PassKind::Fast => {
                args.push("--no-trim".into());
                args.push("--no-scrape".into());
            }
            PassKind::Trim => args.push("--no-scrape".into()),
            PassKind::Scrape | PassKind::Retry => {}
            PassKind::Reverse => args.push("--reverse".into()),
        }
        if self.retries > 0 {
            args.push(format!("--retry-passes={}", self.retries).into());
        }
        if let Some(timeout) = self.stall_timeout {
            args.push(format!("--timeout={}s", timeout.as_secs().max(1)).into());
        }
        // The paths are never options, whatever they start with.
        args.push("--".into());
        args.push(source.path.as_os_str().to_owned());
        args.push(image.as_os_str().to_owned());
        args.push(mapfile.as_os_str().to_owned());
        args
    }
}

/// The input of a rescue as ddrescue must be told about it.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The device or file to read.
    pub path: &'a Path,
    /// Its logical sector size (2048 for optical media).
    pub sector_size: u32,
    /// Whether to read with direct I/O (block devices).
    pub direct: bool,
}

/// A named sequence of passes: the API's profile, one definition for the command line and
/// the `Medium` resource.
pub use ntt_crds::ImagingProfile as Profile;

/// Limits that apply to every pass of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassLimits {
    /// Override of the retry count of the retrying passes.
    pub retries: Option<u32>,
    /// Give up a pass after this long without a successful read.
    pub stall_timeout: Option<Duration>,
    /// Stop each pass after this long.
    pub max_pass_duration: Option<Duration>,
}

/// The passes of `profile` for a medium with `sector_size`-byte sectors (pure).
pub fn passes(profile: Profile, sector_size: u32, limits: PassLimits) -> Vec<Pass> {
    // Large clusters for the fast pass: 1 MiB per read whatever the sector size, the size at
    // which this kernel's reads are cheapest (design.md section 8).
    let fast_cluster = (1 << 20) / sector_size.max(1);
    let mut passes = vec![Pass::new(PassKind::Fast, fast_cluster, 0)];
    if matches!(profile, Profile::Default | Profile::Thorough) {
        passes.push(Pass::new(PassKind::Trim, 16, 0));
        passes.push(Pass::new(PassKind::Scrape, 16, 0));
    }
    if profile == Profile::Thorough {
        passes.push(Pass::new(
            PassKind::Reverse,
            16,
            limits.retries.unwrap_or(2),
        ));
        passes.push(Pass::new(PassKind::Retry, 1, limits.retries.unwrap_or(4)));
    }
    for pass in &mut passes {
        if let (Some(retries), PassKind::Reverse | PassKind::Retry) = (limits.retries, pass.kind) {
            pass.retries = retries;
        }
        pass.stall_timeout = limits.stall_timeout;
        pass.max_duration = limits.max_pass_duration;
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn profiles_grow_by_passes() {
        let kinds = |p: Profile| {
            passes(p, 512, PassLimits::default())
                .iter()
                .map(|p| p.kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(Profile::Quick), [PassKind::Fast]);
        assert_eq!(
            kinds(Profile::Default),
            [PassKind::Fast, PassKind::Trim, PassKind::Scrape]
        );
        assert_eq!(
            kinds(Profile::Thorough),
            [
                PassKind::Fast,
                PassKind::Trim,
                PassKind::Scrape,
                PassKind::Reverse,
                PassKind::Retry
            ]
        );
    }

    #[test]
    fn fast_pass_reads_one_mebibyte_clusters_for_any_sector_size() {
        assert_eq!(
            passes(Profile::Quick, 512, PassLimits::default())[0].cluster_sectors,
            2048
        );
        assert_eq!(
            passes(Profile::Quick, 2048, PassLimits::default())[0].cluster_sectors,
            512
        );
    }

    #[test]
    fn arguments_of_an_optical_fast_pass() {
        let pass = &passes(Profile::Quick, 2048, PassLimits::default())[0];
        let input = Input {
            path: Path::new("/dev/sr0"),
            sector_size: 2048,
            direct: true,
        };
        assert_eq!(
            strings(&pass.arguments(&input, Path::new("/d/h.img"), Path::new("/d/h.map"))),
            [
                "--sector-size=2048",
                "--cluster-size=512",
                "--mapfile-interval=5",
                "--idirect",
                "--no-trim",
                "--no-scrape",
                "--",
                "/dev/sr0",
                "/d/h.img",
                "/d/h.map"
            ]
        );
    }

    #[test]
    fn limits_reach_every_pass_and_retries_only_the_retrying_ones() {
        let limits = PassLimits {
            retries: Some(9),
            stall_timeout: Some(Duration::from_mins(10)),
            max_pass_duration: Some(Duration::from_hours(1)),
        };
        let passes = passes(Profile::Thorough, 512, limits);
        for pass in &passes {
            assert_eq!(pass.stall_timeout, limits.stall_timeout);
            assert_eq!(pass.max_duration, limits.max_pass_duration);
            let expected = if matches!(pass.kind, PassKind::Reverse | PassKind::Retry) {
                9
            } else {
                0
            };
            assert_eq!(pass.retries, expected, "{:?}", pass.kind);
        }
        let input = Input {
            path: Path::new("/dev/sdb"),
            sector_size: 512,
            direct: false,
        };
        let retry = strings(&passes[4].arguments(&input, Path::new("i"), Path::new("m")));
        assert!(retry.contains(&"--retry-passes=9".to_owned()));
        assert!(retry.contains(&"--timeout=600s".to_owned()));
        assert!(!retry.contains(&"--idirect".to_owned()));
    }

    #[test]
    fn passes_skip_when_their_work_is_done() {
        let summary = |non_tried, non_trimmed, non_scraped, bad| RescueSummary {
            total: 100,
            rescued: 100 - non_tried - non_trimmed - non_scraped - bad,
            non_tried,
            non_trimmed,
            non_scraped,
            bad,
            bad_areas: Vec::new(),
            finished_prefix: 0,
        };
        let passes = passes(Profile::Thorough, 512, PassLimits::default());
        let work = |s: &RescueSummary| {
            passes
                .iter()
                .map(|p| p.has_work(Some(s)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            work(&summary(0, 0, 0, 0)),
            [false, false, false, false, false]
        );
        assert_eq!(
            work(&summary(0, 0, 0, 5)),
            [false, false, false, true, true]
        );
        assert_eq!(work(&summary(0, 0, 5, 0)), [false, false, true, true, true]);
        assert_eq!(work(&summary(0, 5, 0, 0)), [false, true, true, true, true]);
        assert_eq!(work(&summary(5, 0, 0, 0)), [true, true, true, true, true]);
        assert!(passes.iter().all(|p| p.has_work(None)));
    }
}
