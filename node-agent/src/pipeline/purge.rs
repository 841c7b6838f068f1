//! Purge: remove one medium's catalog rows and the image NTT wrote for it.

use std::path::{Path, PathBuf};

use ntt_crds::MediumHash;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::media;

/// What a purge removed.
#[derive(Debug, Clone, Default)]
pub struct PurgeReport {
    /// Whether the medium was in the catalog.
    pub found: bool,
    /// Image and mapfile files removed (only those under the data directory).
    pub files: Vec<PathBuf>,
}

/// Removes the medium with exactly `hash`: its catalog rows, then the image and mapfile NTT
/// wrote for it under the data directory. Stored blobs stay (other media may share them), and
/// an image file the user registered is never touched. A medium not in the catalog is
/// nothing to purge. Safe to repeat.
pub async fn purge(catalog: &Catalog, host: &Host, hash: &MediumHash) -> Result<PurgeReport> {
    let pool = catalog.pool();
    let Some(record) = media::find_medium_by_hash(pool, hash).await? else {
        return Ok(PurgeReport::default());
    };
    let ours = |path: &Option<String>| {
        path.as_deref()
            .map(Path::new)
            .filter(|p| p.starts_with(&host.data_dir))
            .map(Path::to_path_buf)
    };
    let mut files: Vec<PathBuf> = [ours(&record.image_path), ours(&record.mapfile_path)]
        .into_iter()
        .flatten()
        .collect();
    // Its archive (`ntt archive`) is a copy of the image: it goes too, with its index and the
    // compressed mapfile beside it.
    if let (_, Some(archived)) = media::image_archive(pool, record.id).await? {
        let archive = PathBuf::from(&archived.path);
        files.push(crate::imaging::archive::index_path(&archive));
        if let Some(dir) = archive.parent() {
            files.push(dir.join(format!("{}.map.zst", record.hash)));
        }
        files.push(archive);
    }
    // Files first: a run stopped midway finds the medium again and finishes; rows first
    // would leave files no later run knows about.
    for file in &files {
        if let Err(source) = fs_err::remove_file(file)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(PipelineError::Remove {
                path: file.clone(),
                source,
            });
        }
    }
    crate::catalog::partitions::drop_medium_partitions(pool, record.id).await?;
    media::delete_medium(pool, record.id).await?;
    Ok(PurgeReport { found: true, files })
}
