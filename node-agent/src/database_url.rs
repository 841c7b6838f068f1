//! A database URL that never prints its password.
//!
//! Rule: the URL is only ever shown through `Display`/`Debug`, both of which replace the password
//! with `***`; the secret leaves this type only as connect options.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// Why a database URL was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid database URL {redacted}")]
pub struct DatabaseUrlError {
    redacted: String,
    #[source]
    source: sqlx::Error,
}

/// A PostgreSQL connection URL whose password is hidden when displayed.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    options: PgConnectOptions,
}

impl DatabaseUrl {
    /// The connect options (with the password).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// The URL with the password replaced, safe for logs and error messages.
    pub fn redacted(&self) -> String {
        redact(&self.raw)
    }

    /// The full URL including the password, for handing to child tools; never log it.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

/// The URL for people: parsed, its password (in the user info or a `password` parameter)
/// replaced by `***`; a URL that does not parse is not shown at all (its password could be
/// anywhere in it, a `/` in an unencoded password makes the parser see a path).
fn redact(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "<a URL that does not parse (not shown: it may hold a password)>".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

impl FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let options = PgConnectOptions::from_str(raw).map_err(|source| DatabaseUrlError {
            redacted: redact(raw),
            source,
        })?;
        Ok(Self {
            raw: raw.to_owned(),
            options,
        })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_hidden_in_display_and_debug() {
        let url: DatabaseUrl = "postgres://ntt:s3cret@db.example:5432/ntt?sslmode=require"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://ntt:***@db.example:5432/ntt?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(url.expose().contains("s3cret"));
    }

    #[test]
    fn url_without_password_is_shown_as_is() {
        assert_eq!(
            redact("postgres://ntt@localhost/ntt"),
            "postgres://ntt@localhost/ntt"
        );
        assert_eq!(
            redact("postgres:///ntt?host=/run/postgresql"),
            "postgres:///ntt?host=/run/postgresql"
        );
    }

    #[test]
    fn password_containing_at_sign_is_hidden() {
        assert_eq!(redact("postgres://u:p%40ss@h/db"), "postgres://u:***@h/db");
        assert!(!redact("postgres://u:p@ss@h/db").contains("ss"));
    }

    /// A password parameter, or a `/` in an unencoded password, leaked.
    #[test]
    fn a_password_parameter_or_a_slash_never_shows() {
        let shown = redact("postgres://ntt@db/ntt?sslmode=disable&password=hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("password=***") || shown.contains("password=%2A%2A%2A"),
            "{shown}"
        );
        assert!(shown.contains("sslmode=disable"), "{shown}");
        let shown = redact("postgres://ntt:hun/ter2@db/ntt");
        assert!(!shown.contains("hun") && !shown.contains("ter2"), "{shown}");
        let shown = redact("not a url hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn malformed_url_is_refused_without_echoing_the_password() {
        let err = "postgres://ntt:s3cret@localhost:notaport/ntt"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
