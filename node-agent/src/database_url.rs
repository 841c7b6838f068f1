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

/// `scheme://user:secret@host/db` becomes `scheme://user:***@host/db`; other forms are unchanged.
fn redact(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => raw.to_owned(),
        },
        None => raw.to_owned(),
    }
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
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn malformed_url_is_refused_without_echoing_the_password() {
        let err = "postgres://ntt:s3cret@localhost:notaport/ntt"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
