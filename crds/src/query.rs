//! The catalog's query API: `ntt serve` answers, `kubectl ntt find|where|overlap|report`
//! asks through the API server's service proxy (so Kubernetes authenticates and authorizes
//! each person, and nobody execs into the privileged agent).
//!
//! A query is `GET /v1/{command}?arg=A&arg=B...`: the command (`find`, `where`, `overlap`,
//! `report`, `status`) and its arguments as `ntt` takes them, each in unpadded base64url so that
//! a pattern that is not UTF-8 arrives byte for byte. The answer is always `200` with a
//! [`QueryAnswer`]: what `ntt COMMAND ARGS` would print and its exit code.

use serde::{Deserialize, Serialize};

/// Where queries go: `{QUERY_PREFIX}{command}`.
pub const QUERY_PREFIX: &str = "/v1/";

/// The query parameter that carries one argument (base64url, no padding).
pub const ARG_PARAM: &str = "arg";

/// The commands the query API answers (each reads the catalog only).
pub const QUERY_COMMANDS: [&str; 5] = ["find", "where", "overlap", "report", "status"];

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryAnswer {
    /// The command's exit code: 0 answered, 1 nothing found (or the query failed, see
    /// `stderr`), 2 the arguments were refused.
    pub exit_code: u8,
    /// What the command printed, byte for byte (standard base64: paths need not be UTF-8).
    pub stdout_b64: String,
    /// Notes and errors for the person who asked.
    pub stderr: String,
}
