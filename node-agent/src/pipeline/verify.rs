//! Verification: re-hash stored blobs and check the catalog's loads.

use ntt_crds::BlobId;
use serde::Serialize;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::media::MediumRecord;
use crate::catalog::report;

/// Which blobs to re-hash.
#[derive(Debug, Clone, Copy)]
pub struct VerifyScope<'a> {
    /// Only the blobs of this medium (all media when `None`).
    pub medium: Option<&'a MediumRecord>,
    /// Only a random sample of this many.
    pub sample: Option<i64>,
}

/// What a verification found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Verification {
    /// Blobs re-hashed.
    pub checked: u64,
    /// Blobs whose content matches their name.
    pub ok: u64,
    /// Blobs whose content does not match (hex ids).
    pub mismatched: Vec<String>,
    /// Blobs the catalog has and the store does not (hex ids).
    pub missing: Vec<String>,
    /// Loads whose every path was checked to have its inode (whole verifications only).
    pub loads_validated: u64,
}

impl Verification {
    /// Whether every blob checked is right.
    pub fn is_good(&self) -> bool {
        self.mismatched.is_empty() && self.missing.is_empty()
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} blob(s) checked: {} ok, {} mismatched, {} missing",
            self.checked,
            self.ok,
            self.mismatched.len(),
            self.missing.len()
        )?;
        for id in &self.mismatched {
            write!(f, "\nmismatch {id}")?;
        }
        for id in &self.missing {
            write!(f, "\nmissing  {id}")?;
        }
        Ok(())
    }
}

/// Re-hashes the blobs in `scope` and records each outcome on its blob; a whole verification
/// (no sample) also checks that every path of the loads has its inode. Wrong or missing blobs
/// are in the result, not an error (see [`Verification::is_good`]).
pub async fn verify(
    catalog: &Catalog,
    host: &Host,
    scope: VerifyScope<'_>,
) -> Result<Verification> {
    let pool = catalog.pool();
    let medium = scope.medium.map(|m| m.id);
    let store = super::copy::open_store(host)?;
    let blobs = report::blobs_to_verify(pool, medium, scope.sample).await?;
    let mut found = Verification::default();
    for blob in blobs {
        let id =
            BlobId::try_from(blob.id.as_slice()).map_err(|_| PipelineError::MalformedBlob {
                id: hex::encode(&blob.id),
            })?;
        let path = store.blob_path(&id);
        let outcome = tokio::task::spawn_blocking(move || -> Result<&'static str> {
            let opened = fs_err::File::open(&path);
            match opened {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok("missing"),
                Err(source) => Err(PipelineError::ReadBlob { path, source }),
                Ok(mut file) => {
                    let mut hasher = blake3::Hasher::new();
                    std::io::copy(&mut file, &mut hasher)
                        .map_err(|source| PipelineError::ReadBlob { path, source })?;
                    Ok(if hasher.finalize().as_bytes() == id.as_bytes() {
                        "ok"
                    } else {
                        "mismatch"
                    })
                }
            }
        })
        .await??;
        report::record_verification(pool, &blob.id, outcome).await?;
        found.checked += 1;
        match outcome {
            "ok" => found.ok += 1,
            "missing" => found.missing.push(id.to_hex()),
            _ => found.mismatched.push(id.to_hex()),
        }
    }
    if scope.sample.is_none() {
        found.loads_validated = report::validate_loads(pool, medium).await?;
    }
    Ok(found)
}
