//! GNU ddrescue mapfiles: parsing and the rescue summary derived from them.
//!
//! Rules: this module is pure (text in, data out). A mapfile that is not exactly what ddrescue
//! writes (overlapping or out-of-order blocks, unknown status characters, a missing status line)
//! is an error naming the line, never a best guess: health and damage maps are built on it.
//!
//! Format (GNU ddrescue manual, "Mapfile structure"): `#` comment lines; one status line
//! `current_pos current_status [current_pass]`; then one line per block `pos size status`, with
//! numbers in hexadecimal (`0x...`) as ddrescue writes them (decimal is accepted too).

use std::fmt;

/// The state of one block of the input, as ddrescue records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockStatus {
    /// `?`: not read yet.
    NonTried,
    /// `*`: failed in the copying pass, edges not yet trimmed.
    NonTrimmed,
    /// `/`: trimmed, the inside not yet scraped sector by sector.
    NonScraped,
    /// `-`: failed sectors (bad, after trying).
    Bad,
    /// `+`: read successfully.
    Finished,
}

impl BlockStatus {
    fn from_char(c: char) -> Option<Self> {
        Some(match c {
            '?' => Self::NonTried,
            '*' => Self::NonTrimmed,
            '/' => Self::NonScraped,
            '-' => Self::Bad,
            '+' => Self::Finished,
            _ => return None,
        })
    }

    /// The character ddrescue writes for this status.
    pub const fn as_char(self) -> char {
        match self {
            Self::NonTried => '?',
            Self::NonTrimmed => '*',
            Self::NonScraped => '/',
            Self::Bad => '-',
            Self::Finished => '+',
        }
    }
}

/// One contiguous range of the input with one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Offset of the first byte.
    pub pos: u64,
    /// Length in bytes.
    pub size: u64,
    /// What ddrescue knows about it.
    pub status: BlockStatus,
}

impl Block {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.pos + self.size
    }
}

/// A parsed mapfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapfile {
    /// Where ddrescue was when it saved the mapfile.
    pub current_pos: u64,
    /// What it was doing: `?` copying, `*` trimming, `/` scraping, `-` retrying, `F` filling,
    /// `G` generating, `+` finished.
    pub current_status: char,
    /// The pass number within the current phase (absent before ddrescue 1.21).
    pub current_pass: Option<u32>,
    /// The blocks, in order, contiguous.
    pub blocks: Vec<Block>,
}

/// Why a mapfile could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapfileError {
    /// The file has no status line (empty or only comments).
    #[error("mapfile has no status line")]
    MissingStatusLine,
    /// A line does not have the expected fields.
    #[error("mapfile line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

fn parse_number(field: &str) -> Option<u64> {
    match field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => field.parse().ok(),
    }
}

impl Mapfile {
    /// Parses the text of a mapfile.
    pub fn parse(text: &str) -> Result<Self, MapfileError> {
        let mut status_line: Option<(u64, char, Option<u32>)> = None;
        let mut blocks: Vec<Block> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let malformed = |reason: &str| MapfileError::Malformed {
                line,
                reason: reason.to_owned(),
            };
            let fields: Vec<&str> = content.split_whitespace().collect();
            if status_line.is_none() {
                if !(2..=3).contains(&fields.len()) {
                    return Err(malformed(
                        "status line needs current_pos current_status [current_pass]",
                    ));
                }
                let pos = parse_number(fields[0]).ok_or_else(|| malformed("bad current_pos"))?;
                let mut chars = fields[1].chars();
                let (Some(status @ ('?' | '*' | '/' | '-' | 'F' | 'G' | '+')), None) =
                    (chars.next(), chars.next())
                else {
                    return Err(malformed("bad current_status"));
                };
                let pass = match fields.get(2) {
                    Some(f) => Some(f.parse().map_err(|_| malformed("bad current_pass"))?),
                    None => None,
                };
                status_line = Some((pos, status, pass));
                continue;
            }
            if fields.len() != 3 {
                return Err(malformed("block line needs pos size status"));
            }
            let pos = parse_number(fields[0]).ok_or_else(|| malformed("bad block position"))?;
            let size = parse_number(fields[1]).ok_or_else(|| malformed("bad block size"))?;
            let mut chars = fields[2].chars();
            let (Some(status), None) =
                (chars.next().and_then(BlockStatus::from_char), chars.next())
            else {
                return Err(malformed("bad block status"));
            };
            if size == 0 {
                return Err(malformed("block of size zero"));
            }
            let expected = blocks.last().map_or(0, Block::end);
            if pos != expected {
                return Err(malformed(&format!(
                    "block starts at {pos:#x}, expected {expected:#x} (blocks must be contiguous)"
                )));
            }
            if pos.checked_add(size).is_none() {
                return Err(malformed("block extends past 2^64"));
            }
            blocks.push(Block { pos, size, status });
        }
        let (current_pos, current_status, current_pass) =
            status_line.ok_or(MapfileError::MissingStatusLine)?;
        Ok(Self {
            current_pos,
            current_status,
            current_pass,
            blocks,
        })
    }

    /// Byte counts by status, the bad areas, and the total.
    pub fn summary(&self) -> RescueSummary {
        let mut summary = RescueSummary::default();
        for block in &self.blocks {
            let bucket = match block.status {
                BlockStatus::NonTried => &mut summary.non_tried,
                BlockStatus::NonTrimmed => &mut summary.non_trimmed,
                BlockStatus::NonScraped => &mut summary.non_scraped,
                BlockStatus::Bad => &mut summary.bad,
                BlockStatus::Finished => &mut summary.rescued,
            };
            *bucket += block.size;
            if block.status == BlockStatus::Bad {
                match summary.bad_areas.last_mut() {
                    Some(last) if last.end() == block.pos => last.size += block.size,
                    _ => summary.bad_areas.push(Area {
                        pos: block.pos,
                        size: block.size,
                    }),
                }
            }
        }
        summary.total = self.blocks.last().map_or(0, Block::end);
        summary.finished_prefix = self
            .blocks
            .iter()
            .find(|b| b.status != BlockStatus::Finished)
            .map_or(summary.total, |b| b.pos);
        summary
    }

    /// Every range that is not rescued (non-tried, non-trimmed, non-scraped or bad), merged.
    pub fn unreadable_areas(&self) -> Vec<Area> {
        let mut areas: Vec<Area> = Vec::new();
        for block in self
            .blocks
            .iter()
            .filter(|b| b.status != BlockStatus::Finished)
        {
            match areas.last_mut() {
                Some(last) if last.end() == block.pos => last.size += block.size,
                _ => areas.push(Area {
                    pos: block.pos,
                    size: block.size,
                }),
            }
        }
        areas
    }
}

impl fmt::Display for Mapfile {
    /// Writes the mapfile in ddrescue's own layout.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# Mapfile. Created by ntt")?;
        writeln!(f, "# current_pos  current_status  current_pass")?;
        match self.current_pass {
            Some(pass) => writeln!(
                f,
                "{:#x}     {}               {pass}",
                self.current_pos, self.current_status
            )?,
            None => writeln!(f, "{:#x}     {}", self.current_pos, self.current_status)?,
        }
        writeln!(f, "#      pos        size  status")?;
        for block in &self.blocks {
            writeln!(
                f,
                "{:#010x}  {:#010x}  {}",
                block.pos,
                block.size,
                block.status.as_char()
            )?;
        }
        Ok(())
    }
}

/// A byte range of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Area {
    /// Offset of the first byte.
    pub pos: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Area {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.pos + self.size
    }
}

/// How much of the input is rescued, and what is left.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RescueSummary {
    /// Size of the input covered by the mapfile.
    pub total: u64,
    /// Bytes read successfully.
    pub rescued: u64,
    /// Bytes not tried yet.
    pub non_tried: u64,
    /// Bytes in failed clusters not yet trimmed.
    pub non_trimmed: u64,
    /// Bytes trimmed but not yet scraped.
    pub non_scraped: u64,
    /// Bytes in bad sectors.
    pub bad: u64,
    /// The bad areas, adjacent bad blocks merged.
    pub bad_areas: Vec<Area>,
    /// Bytes from offset 0 up to the first block not finished: ddrescue never writes them again.
    pub finished_prefix: u64,
}

impl RescueSummary {
    /// Whether every byte is rescued.
    pub const fn is_complete(&self) -> bool {
        self.total > 0 && self.rescued == self.total
    }

    /// Bytes not rescued for any reason.
    pub const fn unrescued(&self) -> u64 {
        self.total - self.rescued
    }

    /// Rescued share in percent, truncated to two decimals (never rounded up to 100).
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let hundredths = u128::from(self.rescued) * 10_000 / u128::from(self.total);
        #[expect(clippy::cast_precision_loss, reason = "at most 10000")]
        let percent = hundredths as f64 / 100.0;
        percent
    }
}

impl From<&RescueSummary> for crate::catalog::media::RescueCounts {
    fn from(summary: &RescueSummary) -> Self {
        Self {
            total: summary.total,
            rescued: summary.rescued,
            bad: summary.bad,
            bad_areas: summary.bad_areas.len(),
            non_tried: summary.non_tried,
            unfinished: summary.non_tried + summary.non_trimmed + summary.non_scraped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
# Mapfile. Created by GNU ddrescue version 1.27
# Command line: ddrescue -d -r3 /dev/sdb b.img b.mapfile
# Start time:   2015-07-21 09:37:44
# Current time: 2015-07-21 09:38:19
# Copying non-tried blocks... Pass 1 (forwards)
# current_pos  current_status  current_pass
0x00120000     ?               1
#      pos        size  status
0x00000000  0x00117000  +
0x00117000  0x00000200  -
0x00117200  0x00000200  -
0x00117400  0x00001000  /
0x00118400  0x00007C00  *
0x00120000  0x00000E00  ?
0x00120E00  0x00000200  -
0x00121000  0x00010000  +
";

    #[test]
    fn parses_ddrescue_sample() {
        let map = Mapfile::parse(SAMPLE).unwrap();
        assert_eq!(map.current_pos, 0x0012_0000);
        assert_eq!(map.current_status, '?');
        assert_eq!(map.current_pass, Some(1));
        assert_eq!(map.blocks.len(), 8);
        let s = map.summary();
        assert_eq!(s.total, 0x0013_1000);
        assert_eq!(s.rescued, 0x0011_7000 + 0x0001_0000);
        assert_eq!(s.bad, 0x600);
        assert_eq!(s.non_scraped, 0x1000);
        assert_eq!(s.non_trimmed, 0x7C00);
        assert_eq!(s.non_tried, 0xE00);
        assert_eq!(
            s.bad_areas,
            [
                Area {
                    pos: 0x0011_7000,
                    size: 0x400
                },
                Area {
                    pos: 0x0012_0E00,
                    size: 0x200
                }
            ]
        );
        assert_eq!(
            map.unreadable_areas(),
            [Area {
                pos: 0x0011_7000,
                size: 0x0000_A000
            }]
        );
        assert!(!s.is_complete());
        assert_eq!(s.finished_prefix, 0x0011_7000);
    }

    #[test]
    fn status_line_without_pass_from_old_versions() {
        let map = Mapfile::parse("0x0 +\n0x0 0x200 +\n").unwrap();
        assert_eq!(map.current_pass, None);
        assert!(map.summary().is_complete());
        assert!((map.summary().percent() - 100.0).abs() < f64::EPSILON);
    }

    #[test]
    fn rejects_gaps_overlaps_and_unknown_statuses() {
        assert!(matches!(
            Mapfile::parse("0 +\n0x0 0x200 +\n0x400 0x200 +\n"),
            Err(MapfileError::Malformed { line: 3, .. })
        ));
        assert!(matches!(
            Mapfile::parse("0 +\n0x0 0x200 +\n0x100 0x200 +\n"),
            Err(MapfileError::Malformed { line: 3, .. })
        ));
        assert!(matches!(
            Mapfile::parse("0 +\n0x0 0x200 x\n"),
            Err(MapfileError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            Mapfile::parse("0 Q\n"),
            Err(MapfileError::Malformed { line: 1, .. })
        ));
        assert_eq!(
            Mapfile::parse("# only comments\n"),
            Err(MapfileError::MissingStatusLine)
        );
        assert_eq!(Mapfile::parse(""), Err(MapfileError::MissingStatusLine));
    }

    #[test]
    fn percent_is_truncated_never_rounded_up() {
        let map = Mapfile::parse("0 +\n0 9999 +\n9999 1 -\n").unwrap();
        assert!((map.summary().percent() - 99.99).abs() < 1e-9);
    }

    fn status() -> impl Strategy<Value = BlockStatus> {
        prop_oneof![
            Just(BlockStatus::NonTried),
            Just(BlockStatus::NonTrimmed),
            Just(BlockStatus::NonScraped),
            Just(BlockStatus::Bad),
            Just(BlockStatus::Finished),
        ]
    }

    fn mapfile() -> impl Strategy<Value = Mapfile> {
        (
            prop::collection::vec((1_u64..1 << 40, status()), 0..60),
            any::<u64>(),
            prop::sample::select(vec!['?', '*', '/', '-', 'F', 'G', '+']),
            prop::option::of(1_u32..100),
        )
            .prop_map(|(sizes, current_pos, current_status, current_pass)| {
                let mut pos = 0;
                let blocks = sizes
                    .into_iter()
                    .map(|(size, status)| {
                        let block = Block { pos, size, status };
                        pos += size;
                        block
                    })
                    .collect();
                Mapfile {
                    current_pos,
                    current_status,
                    current_pass,
                    blocks,
                }
            })
    }

    proptest! {
        #[test]
        fn render_then_parse_is_identity(map in mapfile()) {
            prop_assert_eq!(Mapfile::parse(&map.to_string()).unwrap(), map);
        }

        #[test]
        fn byte_counts_add_up_to_the_total(map in mapfile()) {
            let s = map.summary();
            prop_assert_eq!(s.rescued + s.non_tried + s.non_trimmed + s.non_scraped + s.bad, s.total);
            prop_assert_eq!(s.bad_areas.iter().map(|a| a.size).sum::<u64>(), s.bad);
            prop_assert_eq!(map.unreadable_areas().iter().map(|a| a.size).sum::<u64>(), s.unrescued());
            // Bad areas are separated by at least one byte that is not bad.
            for pair in s.bad_areas.windows(2) {
                prop_assert!(pair[0].end() < pair[1].pos);
            }
            prop_assert!(s.percent() <= 100.0);
            prop_assert!(s.finished_prefix <= s.rescued);
            prop_assert_eq!(s.finished_prefix == s.total, s.unrescued() == 0);
            prop_assert_eq!(s.is_complete(), s.total > 0 && s.unrescued() == 0);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = Mapfile::parse(&text);
        }
    }
}
