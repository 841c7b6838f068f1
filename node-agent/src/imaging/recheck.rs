//! A known identity is a lookup key, not proof: a source that matches a medium's size and edges
//! is checked against that medium's content before it continues it, so two drives with blank
//! edges are never spliced into one image.
//!
//! Image files are checked against the content sample recorded when the medium was registered
//! ([`identity::sample_digest`]); devices against the bytes ddrescue already rescued into the
//! medium's image at the sample's offsets (a failing drive's unreadable sample block is
//! skipped, so a flaky sector never makes a drive a stranger to itself).

use fs_err::os::unix::fs::FileExt;
use std::path::Path;

use super::identity::{self, SAMPLE_BYTES, SampleBlock};
use super::mapfile::{BlockStatus, Mapfile};

/// What the content says of a source that matched a known identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The content checked is the medium's.
    Same,
    /// The content differs (at this offset, when known).
    Differs(Option<u64>),
    /// Nothing to compare with yet (no sample recorded, nothing of the sample rescued).
    Unknown,
}

/// An image file's sample against the one recorded for the medium (pure).
pub fn image_file(sample: &[SampleBlock], recorded: Option<[u8; 32]>) -> Verdict {
    match recorded {
        None => Verdict::Unknown,
        Some(recorded) if recorded == identity::sample_digest(sample) => Verdict::Same,
        Some(_) => Verdict::Differs(None),
    }
}

/// The sample offsets whose whole block ddrescue finished, per `mapfile` (pure).
pub fn finished(mapfile: &Mapfile, offsets: impl IntoIterator<Item = u64>) -> Vec<u64> {
    offsets
        .into_iter()
        .filter(|&at| {
            mapfile.blocks.iter().any(|b| {
                b.status == BlockStatus::Finished && b.pos <= at && at + SAMPLE_BYTES <= b.end()
            })
        })
        .collect()
}

/// A device's sample against the medium's image, at the offsets ddrescue finished.
///
/// # Errors
///
/// When the mapfile or the image cannot be read (then nothing could be checked, and the caller
/// refuses rather than guesses).
pub fn device(
    sample: &[SampleBlock],
    image: &Path,
    mapfile: &Path,
) -> Result<Verdict, std::io::Error> {
    let text = match fs_err::read_to_string(mapfile) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::Unknown),
        Err(e) => return Err(e),
    };
    let map = Mapfile::parse(&text)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let readable: Vec<(u64, &[u8])> = sample
        .iter()
        .filter_map(|(at, bytes)| bytes.as_deref().map(|b| (*at, b)))
        .collect();
    let checked = finished(&map, readable.iter().map(|(at, _)| *at));
    if checked.is_empty() {
        return Ok(Verdict::Unknown);
    }
    let image = fs_err::File::open(image)?;
    let mut buffer = vec![0_u8; usize::try_from(SAMPLE_BYTES).unwrap_or(4096)];
    for (at, bytes) in readable {
        if !checked.contains(&at) {
            continue;
        }
        image.read_exact_at(&mut buffer, at)?;
        if buffer != bytes {
            return Ok(Verdict::Differs(Some(at)));
        }
    }
    Ok(Verdict::Same)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::mapfile::Block;

    fn map(blocks: &[(u64, u64, BlockStatus)]) -> Mapfile {
        Mapfile {
            current_pos: 0,
            current_status: '?',
            current_pass: Some(1),
            blocks: blocks
                .iter()
                .map(|&(pos, size, status)| Block { pos, size, status })
                .collect(),
        }
    }

    #[test]
    fn only_blocks_wholly_finished_are_compared() {
        let m = map(&[
            (0, 8192, BlockStatus::Finished),
            (8192, 4096, BlockStatus::Bad),
            (12288, 8192, BlockStatus::NonTried),
        ]);
        assert_eq!(finished(&m, [0, 4096, 6144, 8192, 12288]), [0, 4096]);
    }

    #[test]
    fn an_image_files_sample_is_checked_against_the_recorded_one() {
        let a = vec![(1_u64 << 20, Some(vec![1_u8; 4096]))];
        let b = vec![(1_u64 << 20, Some(vec![2_u8; 4096]))];
        let recorded = identity::sample_digest(&a);
        assert_eq!(image_file(&a, Some(recorded)), Verdict::Same);
        assert_eq!(image_file(&b, Some(recorded)), Verdict::Differs(None));
        assert_eq!(image_file(&b, None), Verdict::Unknown);
    }

    #[test]
    fn sample_offsets_lie_between_the_edges_aligned_and_distinct() {
        assert!(identity::sample_offsets(2 << 20).is_empty());
        let size = 8 << 20;
        let offsets = identity::sample_offsets(size);
        assert_eq!(offsets.len(), 64);
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert!(offsets.iter().all(|o| o % SAMPLE_BYTES == 0));
        assert_eq!(offsets[0], identity::EDGE_BYTES);
        assert!(offsets[63] + SAMPLE_BYTES <= size - identity::EDGE_BYTES);
    }
}
