//! The one registry of environment variables NTT reads. The README's configuration table lists
//! the same names; a test keeps the two in step.

/// PostgreSQL URL of the catalog.
pub const DATABASE_URL: &str = "NTT_DATABASE_URL";
/// Log format on stderr: `plain` (default) or `json`.
pub const LOG_FORMAT: &str = "NTT_LOG_FORMAT";
/// Seconds to wait for a catalog connection before giving up.
pub const CONNECT_TIMEOUT: &str = "NTT_CONNECT_TIMEOUT";
/// Print machine-readable JSON instead of tables.
pub const JSON: &str = "NTT_JSON";
/// Log filter (tracing `EnvFilter` syntax), the usual Rust name.
pub const RUST_LOG: &str = "RUST_LOG";

/// Every variable above, for documentation checks.
pub const ALL: &[&str] = &[DATABASE_URL, LOG_FORMAT, CONNECT_TIMEOUT, JSON, RUST_LOG];

/// The catalog the setup command provisions on the local host.
pub const DEFAULT_DATABASE_URL: &str = "postgres://ntt:ntt@localhost:5432/ntt";

#[cfg(test)]
mod tests {
    #[test]
    fn readme_configuration_table_lists_every_variable() {
        let readme = include_str!("../../README.md");
        for name in super::ALL {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "README lacks a row for {name}"
            );
        }
        assert!(readme.contains(super::DEFAULT_DATABASE_URL));
    }
}
