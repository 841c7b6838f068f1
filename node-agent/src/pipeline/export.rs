//! Export: a medium's tree as hard links into the store, beneath one directory and never
//! outside it (see [`crate::export`]).

use std::path::Path;

use ntt_crds::BlobId;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::media::MediumRecord;
use crate::catalog::report;
use crate::export::{ExportError, Refusal, TreeWriter};

/// An entry that was not exported, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Its volume.
    pub volume_no: i32,
    /// Its exact path bytes.
    pub path: Vec<u8>,
    /// Why.
    pub refusal: Refusal,
}

/// What an export did.
#[derive(Debug, Clone, Default)]
pub struct ExportReport {
    /// Files linked.
    pub linked: u64,
    /// Entries without stored content (not copied, excluded, devices, ...).
    pub skipped: u64,
    /// Entries refused: their names would leave the directory or clash.
    pub refused: Vec<Refused>,
}

/// Recreates the medium's tree under `dir/<volume>/`: files as hard links into the store,
/// directories, and symlinks (never followed). `dir` must be empty (it is created if
/// missing) and on the store's filesystem.
pub async fn export_tree(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    dir: &Path,
) -> Result<ExportReport> {
    let store = super::copy::open_store(host)?;
    let mut writer = TreeWriter::create(dir)?;
    let mut done = ExportReport::default();
    let mut failure = None;
    let listed = report::tree(catalog.pool(), medium.id, &mut |entry| {
        // `<volume>/<path>`: the path's bytes exactly as recorded; the writer refuses any
        // that would leave the directory.
        let mut path = entry.volume_no.to_string().into_bytes();
        path.push(b'/');
        path.extend_from_slice(&entry.path);
        let written = match (entry.kind.as_str(), &entry.blob_id, &entry.target) {
            ("dir", _, _) => writer.dir(&path),
            ("file", Some(blob), _) => {
                let id = BlobId::try_from(blob.as_slice()).map_err(std::io::Error::other)?;
                writer.link(&path, &store.blob_path(&id), store.root())
            }
            ("symlink", _, Some(link)) => writer.symlink(&path, link),
            _ => {
                done.skipped += 1;
                return Ok(());
            }
        };
        match written {
            Ok(Ok(())) => {
                if entry.kind == "file" {
                    done.linked += 1;
                }
                Ok(())
            }
            Ok(Err(refusal)) => {
                done.refused.push(Refused {
                    volume_no: entry.volume_no,
                    path: entry.path,
                    refusal,
                });
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                failure = Some(error);
                Err(std::io::Error::other(message))
            }
        }
    })
    .await;
    if let Err(error) = listed {
        return Err(match failure {
            Some(failure) => failure.into(),
            None => error.into(),
        });
    }
    Ok(done)
}

impl From<ExportError> for PipelineError {
    fn from(source: ExportError) -> Self {
        Self::Export(source)
    }
}
