//! The health of a medium, computed from how much of its image was rescued.
//!
//! Rules: health is a pure function of (rescued bytes, size, thresholds); it is recomputed every
//! time the mapfile changes, never carried over from an earlier pass. A size of zero has no
//! health (there is nothing to rescue, and an empty read is an error elsewhere).

use serde::{Deserialize, Serialize};

/// How much of a medium could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every byte was rescued.
    Ok,
    /// At least the `incomplete` threshold (95 % by default) but not everything was rescued.
    Incomplete,
    /// At least the `corrupt` threshold (50 % by default) was rescued.
    Corrupt,
    /// Less than the `corrupt` threshold was rescued.
    Failed,
}

impl Health {
    /// The lowercase name, as stored in the catalog.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Incomplete => "incomplete",
            Self::Corrupt => "corrupt",
            Self::Failed => "failed",
        }
    }
}

/// A health name that is not one of `ok`, `incomplete`, `corrupt`, `failed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown health {0:?} (expected ok, incomplete, corrupt or failed)")]
pub struct UnknownHealth(pub String);

impl std::str::FromStr for Health {
    type Err = UnknownHealth;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ok" => Ok(Self::Ok),
            "incomplete" => Ok(Self::Incomplete),
            "corrupt" => Ok(Self::Corrupt),
            "failed" => Ok(Self::Failed),
            other => Err(UnknownHealth(other.to_owned())),
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rescued shares (in percent) at which a medium is still `incomplete` or `corrupt`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthThresholds {
    /// Lowest rescued percentage that counts as `incomplete` rather than `corrupt`.
    pub incomplete_percent: f64,
    /// Lowest rescued percentage that counts as `corrupt` rather than `failed`.
    pub corrupt_percent: f64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            incomplete_percent: 95.0,
            corrupt_percent: 50.0,
        }
    }
}

impl HealthThresholds {
    /// The health of a medium of `size` bytes of which `rescued` were read; `None` for size 0.
    pub fn classify(&self, rescued: u64, size: u64) -> Option<Health> {
        if size == 0 {
            return None;
        }
        if rescued >= size {
            return Some(Health::Ok);
        }
        // Compare rescued * 100 >= threshold * size in floating point only after the exact
        // "everything rescued" test, so 99.9999 % of a huge disk is never rounded up to ok.
        #[expect(
            clippy::cast_precision_loss,
            reason = "a percentage needs no 53-bit precision"
        )]
        let percent = rescued as f64 * 100.0 / size as f64;
        Some(if percent >= self.incomplete_percent {
            Health::Incomplete
        } else if percent >= self.corrupt_percent {
            Health::Corrupt
        } else {
            Health::Failed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names_parse_back() {
        for health in [
            Health::Ok,
            Health::Incomplete,
            Health::Corrupt,
            Health::Failed,
        ] {
            assert_eq!(health.as_str().parse::<Health>(), Ok(health));
        }
        assert_eq!("OK".parse::<Health>(), Err(UnknownHealth("OK".to_owned())));
    }

    #[test]
    fn classify_uses_default_thresholds() {
        let t = HealthThresholds::default();
        assert_eq!(t.classify(100, 100), Some(Health::Ok));
        assert_eq!(t.classify(95, 100), Some(Health::Incomplete));
        assert_eq!(t.classify(94, 100), Some(Health::Corrupt));
        assert_eq!(t.classify(50, 100), Some(Health::Corrupt));
        assert_eq!(t.classify(49, 100), Some(Health::Failed));
        assert_eq!(t.classify(0, 100), Some(Health::Failed));
        assert_eq!(t.classify(0, 0), None);
    }

    #[test]
    fn one_missing_sector_of_a_large_disk_is_not_ok() {
        let size = 4_000_000_000_000_u64;
        let t = HealthThresholds::default();
        assert_eq!(t.classify(size - 512, size), Some(Health::Incomplete));
    }

    #[test]
    fn thresholds_are_configurable() {
        let t = HealthThresholds {
            incomplete_percent: 99.0,
            corrupt_percent: 90.0,
        };
        assert_eq!(t.classify(98, 100), Some(Health::Corrupt));
        assert_eq!(t.classify(89, 100), Some(Health::Failed));
    }
}
