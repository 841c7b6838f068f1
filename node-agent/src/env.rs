//! The one registry of environment variables NTT reads. The configuration table of
//! docs/operations.md lists the same names; a test keeps the two in step.

/// PostgreSQL URL of the catalog.
pub const DATABASE_URL: &str = "NTT_DATABASE_URL";
/// Log format on stderr: `plain` (default) or `json`.
pub const LOG_FORMAT: &str = "NTT_LOG_FORMAT";
/// Seconds to wait for a catalog connection before giving up.
pub const CONNECT_TIMEOUT: &str = "NTT_CONNECT_TIMEOUT";
/// Directory for images and mapfiles.
pub const DATA_DIR: &str = "NTT_DATA_DIR";
/// Directory for host locks.
pub const LOCK_DIR: &str = "NTT_LOCK_DIR";
/// Directory of mount points.
pub const MOUNT_DIR: &str = "NTT_MOUNT_DIR";
/// Seconds one mount may take.
pub const MOUNT_TIMEOUT: &str = "NTT_MOUNT_TIMEOUT";
/// Seconds one read of a volume may take before it is aborted and the volume given up.
pub const READ_TIMEOUT: &str = "NTT_READ_TIMEOUT";
/// `ntt agent`: device globs Media may name (comma-separated).
pub const ALLOW_DEVICES: &str = "NTT_ALLOW_DEVICES";
/// `ntt agent`: directories below which Media may name images and directories (comma-separated).
pub const ALLOW_ROOTS: &str = "NTT_ALLOW_ROOTS";
/// Mount media whose health is `failed`.
pub const FORCE: &str = "NTT_FORCE";
/// Extra ignore patterns for `ntt enumerate` (one per line).
pub const IGNORE: &str = "NTT_IGNORE";
/// A named preset of ignore patterns for `ntt enumerate`.
pub const IGNORE_PRESET: &str = "NTT_IGNORE_PRESET";
/// Directory readers per volume during enumeration.
pub const WALK_THREADS: &str = "NTT_WALK_THREADS";
/// MiB of rows a load holds to send them in key order.
pub const SORT_MEMORY: &str = "NTT_SORT_MEMORY";
/// How far `ntt ingest` takes a medium: imaged, enumerated, copied.
pub const TARGET: &str = "NTT_TARGET";
/// Root of the content-addressed store.
pub const STORE: &str = "NTT_STORE";
/// Concurrent copy workers.
pub const WORKERS: &str = "NTT_WORKERS";
/// Attempts after which a transient copy failure is final.
pub const MAX_ATTEMPTS: &str = "NTT_MAX_ATTEMPTS";
/// Seconds before the first retry of a failed file.
pub const RETRY_DELAY: &str = "NTT_RETRY_DELAY";
/// Health threshold: lowest rescued percentage that is "incomplete".
pub const HEALTH_INCOMPLETE: &str = "NTT_HEALTH_INCOMPLETE";
/// Health threshold: lowest rescued percentage that is "corrupt".
pub const HEALTH_CORRUPT: &str = "NTT_HEALTH_CORRUPT";
/// Catalog name of the medium being imaged.
pub const NAME: &str = "NTT_NAME";
/// Description of the medium being imaged.
pub const DESCRIPTION: &str = "NTT_DESCRIPTION";
/// Imaging profile: quick, default, thorough.
pub const PROFILE: &str = "NTT_PROFILE";
/// Retry count of the retrying ddrescue passes.
pub const RETRIES: &str = "NTT_RETRIES";
/// Seconds without a successful read that end a ddrescue pass.
pub const STALL_TIMEOUT: &str = "NTT_STALL_TIMEOUT";
/// Seconds after which each ddrescue pass is stopped.
pub const MAX_PASS_TIME: &str = "NTT_MAX_PASS_TIME";
/// Sector size override for imaging.
pub const SECTOR_SIZE: &str = "NTT_SECTOR_SIZE";
/// Read devices through the page cache instead of direct I/O.
pub const BUFFERED_READS: &str = "NTT_BUFFERED_READS";
/// Mapfile of a raw image registered from elsewhere.
pub const MAPFILE: &str = "NTT_MAPFILE";
/// Print machine-readable JSON instead of tables.
pub const JSON: &str = "NTT_JSON";
/// Log filter (tracing `EnvFilter` syntax), the usual Rust name.
pub const RUST_LOG: &str = "RUST_LOG";

/// Every variable above, for documentation checks.
pub const ALL: &[&str] = &[
    DATABASE_URL,
    CONNECT_TIMEOUT,
    LOG_FORMAT,
    DATA_DIR,
    LOCK_DIR,
    MOUNT_DIR,
    MOUNT_TIMEOUT,
    READ_TIMEOUT,
    ALLOW_DEVICES,
    ALLOW_ROOTS,
    FORCE,
    IGNORE,
    IGNORE_PRESET,
    WALK_THREADS,
    SORT_MEMORY,
    TARGET,
    STORE,
    WORKERS,
    MAX_ATTEMPTS,
    RETRY_DELAY,
    HEALTH_INCOMPLETE,
    HEALTH_CORRUPT,
    NAME,
    DESCRIPTION,
    PROFILE,
    RETRIES,
    STALL_TIMEOUT,
    MAX_PASS_TIME,
    SECTOR_SIZE,
    BUFFERED_READS,
    MAPFILE,
    JSON,
    RUST_LOG,
];

/// Where images and mapfiles go by default.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/ntt/images";
/// Where host locks live by default (a tmpfs: locks never outlive a boot).
pub const DEFAULT_LOCK_DIR: &str = "/run/ntt/lock";

/// Where the store is by default.
pub const DEFAULT_STORE: &str = "/var/lib/ntt/store";
/// Where mount points go by default (`<dir>/<medium hash>/<volume number>`).
pub const DEFAULT_MOUNT_DIR: &str = "/run/ntt/mnt";

/// The catalog the setup command provisions on the local host.
/// (No TLS to localhost: a rustls handshake with the native root store costs ~0.3 s per
/// connection on these machines, for nothing.)
pub const DEFAULT_DATABASE_URL: &str = "postgres://ntt:ntt@localhost:5432/ntt?sslmode=disable";

#[cfg(test)]
mod tests {
    #[test]
    fn the_configuration_table_lists_every_variable() {
        let table = include_str!("../../docs/operations.md");
        for name in super::ALL {
            assert!(
                table.contains(&format!("| `{name}` |")),
                "docs/operations.md lacks a row for {name}"
            );
        }
        assert!(table.contains(super::DEFAULT_DATABASE_URL));
        // The README's short table names only variables that exist.
        let readme = include_str!("../../README.md");
        for line in readme.lines().filter(|l| l.starts_with("| `NTT_")) {
            let name = line.split('`').nth(1).unwrap_or_default();
            assert!(
                super::ALL.contains(&name),
                "README names {name}, which NTT does not read"
            );
        }
    }
}
