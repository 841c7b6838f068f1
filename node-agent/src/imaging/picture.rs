//! The rescue map as a picture (`ntt map`), as ddrescueview draws it: the device as rows of
//! cells, each showing the worst state of the bytes it covers, with the volumes' boundaries and
//! the damaged files beside it; and the same as SVG, where every block of the mapfile is drawn
//! at its exact place (a block too small to see is widened to one unit, never dropped; a run of
//! such blocks within one unit is one shape in the worst state among them).

use std::fmt::Write;

use super::mapfile::{BlockStatus, Mapfile};

/// How bad a state is, for the cell that shows several: unreadable first, then what is not
/// tried to the end, then what was never read, then what was read.
const fn severity(status: BlockStatus) -> u8 {
    match status {
        BlockStatus::Finished => 0,
        BlockStatus::NonTried => 1,
        BlockStatus::NonScraped => 2,
        BlockStatus::NonTrimmed => 3,
        BlockStatus::Bad => 4,
    }
}

/// The character of a state in the terminal picture.
pub const fn glyph(status: BlockStatus) -> char {
    match status {
        BlockStatus::Finished => '#',
        BlockStatus::NonTried => '.',
        BlockStatus::NonTrimmed => '*',
        BlockStatus::NonScraped => '/',
        BlockStatus::Bad => 'X',
    }
}

/// The colour of a state (ddrescueview's).
pub const fn colour(status: BlockStatus) -> &'static str {
    match status {
        BlockStatus::Finished => "#2e9e44",
        BlockStatus::NonTried => "#9a9a9a",
        BlockStatus::NonTrimmed => "#e8c000",
        BlockStatus::NonScraped => "#3b6fd8",
        BlockStatus::Bad => "#d42020",
    }
}

/// What people call a state.
pub const fn label(status: BlockStatus) -> &'static str {
    match status {
        BlockStatus::Finished => "finished",
        BlockStatus::NonTried => "non-tried",
        BlockStatus::NonTrimmed => "non-trimmed",
        BlockStatus::NonScraped => "non-scraped",
        BlockStatus::Bad => "bad",
    }
}

/// Every state, in legend order.
pub const STATES: [BlockStatus; 5] = [
    BlockStatus::Finished,
    BlockStatus::NonTried,
    BlockStatus::NonTrimmed,
    BlockStatus::NonScraped,
    BlockStatus::Bad,
];

/// The mapfile's extent: one past its last block.
pub fn extent(map: &Mapfile) -> u64 {
    map.blocks.last().map_or(0, super::mapfile::Block::end)
}

/// The device cut into cells: cell `i` covers bytes `[i * size / n, (i + 1) * size / n)`, so
/// the cells are as equal as whole bytes allow and there are exactly `n` of them (fewer only
/// for a device of fewer bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cells {
    /// The worst state of each cell's bytes.
    pub states: Vec<BlockStatus>,
    size: u64,
}

impl Cells {
    fn n(&self) -> u128 {
        self.states.len() as u128
    }

    /// The first byte of cell `i`.
    pub fn start(&self, i: usize) -> u64 {
        if self.states.is_empty() {
            return 0;
        }
        u64::try_from(u128::from(self.size) * i as u128 / self.n()).unwrap_or(u64::MAX)
    }

    /// The cell holding byte `offset` (the last cell for an offset past the end).
    pub fn cell_of(&self, offset: u64) -> usize {
        if self.states.is_empty() {
            return 0;
        }
        let offset = offset.min(self.size - 1);
        let cell = (u128::from(offset) + 1) * self.n();
        let cell = cell.div_ceil(u128::from(self.size)) - 1;
        usize::try_from(cell).unwrap_or(usize::MAX)
    }
}

/// The device cut into `wanted` cells, each with the worst state of its bytes. Bytes the
/// mapfile does not cover count as non-tried.
pub fn cells(map: &Mapfile, wanted: usize) -> Cells {
    let size = extent(map);
    let n = usize::try_from(size).map_or(wanted, |size| wanted.min(size));
    let mut cells = Cells {
        states: vec![BlockStatus::Finished; n],
        size,
    };
    if n == 0 {
        return cells;
    }
    let mut covered = vec![false; n];
    for block in &map.blocks {
        if block.size == 0 {
            continue;
        }
        let (first, last) = (cells.cell_of(block.pos), cells.cell_of(block.end() - 1));
        let states = cells.states[first..=last].iter_mut();
        for (state, seen) in states.zip(&mut covered[first..=last]) {
            if !*seen || severity(block.status) > severity(*state) {
                *state = block.status;
            }
            *seen = true;
        }
    }
    for (cell, seen) in cells.states.iter_mut().zip(covered) {
        if !seen {
            *cell = BlockStatus::NonTried;
        }
    }
    cells
}

/// A boundary to mark: a volume's first byte and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Byte offset on the device.
    pub offset: u64,
    /// Its length.
    pub length: u64,
    /// What to call it.
    pub label: String,
}

/// Width of the SVG picture and of its bar, in user units.
const SVG_WIDTH: u64 = 1024;
/// Height of one row of the bar.
const ROW_HEIGHT: u64 = 12;

/// The map as SVG: `rows` rows of the device, left to right, top to bottom; each mapfile block
/// a `rect` (several when it wraps) carrying its exact `data-pos`, `data-size` and
/// `data-status` (consecutive blocks narrower than a unit within one unit: one `rect` over
/// their bytes in their worst state, with `data-blocks`); volume boundaries as lines; a legend
/// and `lines` of text below.
#[expect(
    clippy::cast_precision_loss,
    reason = "picture coordinates: a fraction of a unit does not show"
)]
pub fn svg(map: &Mapfile, rows: u64, marks: &[Mark], title: &str, lines: &[String]) -> String {
    let size = extent(map).max(1);
    let rows = rows.max(1);
    let per_row = size.div_ceil(rows).max(1);
    let width = SVG_WIDTH as f64;
    let x_of = |offset: u64| (offset % per_row) as f64 * width / per_row as f64;
    let bar_height = rows * ROW_HEIGHT;
    let text_top = bar_height + 40;
    let height = text_top + 20 * (lines.len() as u64 + 2);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{}" viewBox="0 -24 {SVG_WIDTH} {}" font-family="monospace" font-size="12">"#,
        height + 24,
        height + 24
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(out, r#"<text x="0" y="-8">{}</text>"#, escape(title));
    // The finished blocks first, so that a small bad area is drawn over its neighbours.
    let mut order = pieces(map, (per_row / SVG_WIDTH).max(1));
    order.sort_by_key(|p| severity(p.status));
    for piece in order {
        let end = piece.pos + piece.size;
        let mut start = piece.pos;
        while start < end {
            let row = start / per_row;
            let row_end = ((row + 1) * per_row).min(end);
            let x = x_of(start);
            let mut w = (row_end - start) as f64 * width / per_row as f64;
            if w < 1.0 {
                w = 1.0;
            }
            let merged = if piece.blocks > 1 {
                format!(r#" data-blocks="{}""#, piece.blocks)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                r#"<rect x="{x:.3}" y="{}" width="{w:.3}" height="{ROW_HEIGHT}" fill="{}" data-pos="{}" data-size="{}" data-status="{}"{merged}/>"#,
                row * ROW_HEIGHT,
                colour(piece.status),
                piece.pos,
                piece.size,
                piece.status.as_char(),
            );
            start = row_end;
        }
    }
    for mark in marks {
        let row = mark.offset / per_row;
        let x = x_of(mark.offset);
        let _ = writeln!(
            out,
            r#"<line class="volume" x1="{x:.3}" y1="{}" x2="{x:.3}" y2="{}" stroke="black" stroke-width="2" data-offset="{}" data-length="{}"><title>{}</title></line>"#,
            row * ROW_HEIGHT,
            (row + 1) * ROW_HEIGHT,
            mark.offset,
            mark.length,
            escape(&mark.label)
        );
    }
    let mut x = 0;
    for status in STATES {
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            bar_height + 10,
            colour(status),
            x + 16,
            bar_height + 20,
            label(status)
        );
        x += 140;
    }
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<text x="0" y="{}">{}</text>"#,
            text_top + 20 * (i as u64 + 1),
            escape(line)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// What the SVG draws as one rectangle: a block, or consecutive blocks narrower than a unit
/// of the picture that lie in one unit (drawn in the worst state among them, with their count),
/// so that a mapfile of a million small blocks does not make a picture of a million shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    pos: u64,
    size: u64,
    status: BlockStatus,
    blocks: usize,
}

fn pieces(map: &Mapfile, unit: u64) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for block in map.blocks.iter().filter(|b| b.size > 0) {
        if block.size < unit
            && let Some(last) = out.last_mut()
            && last.size < unit
            && last.pos + last.size == block.pos
            && last.pos / unit == block.pos / unit
        {
            last.size += block.size;
            if severity(block.status) > severity(last.status) {
                last.status = block.status;
            }
            last.blocks += 1;
            continue;
        }
        out.push(Piece {
            pos: block.pos,
            size: block.size,
            status: block.status,
            blocks: 1,
        });
    }
    out
}

/// Text for XML: the five special characters escaped, control characters shown as `\xNN`
/// (XML 1.0 cannot hold them).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}') => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::mapfile::Block;

    fn map(blocks: &[(u64, u64, BlockStatus)]) -> Mapfile {
        Mapfile {
            current_pos: 0,
            current_status: '+',
            current_pass: None,
            blocks: blocks
                .iter()
                .map(|&(pos, size, status)| Block { pos, size, status })
                .collect(),
        }
    }

    #[test]
    fn a_cell_shows_the_worst_state_of_its_bytes() {
        use BlockStatus::{Bad, Finished, NonTried, NonTrimmed};
        // 1000 bytes in 10 cells of 100: one bad byte at 250, non-trimmed 500..520, the
        // last 100 never tried.
        let m = map(&[
            (0, 250, Finished),
            (250, 1, Bad),
            (251, 249, Finished),
            (500, 20, NonTrimmed),
            (520, 380, Finished),
            (900, 100, NonTried),
        ]);
        assert_eq!(
            cells(&m, 10).states,
            [
                Finished, Finished, Bad, Finished, Finished, NonTrimmed, Finished, Finished,
                Finished, NonTried
            ]
        );
        assert!(cells(&map(&[]), 10).states.is_empty());
        // Cells of 333, 333 and 334 bytes: [0,333) [333,666) [666,1000).
        let three = cells(&m, 3);
        assert_eq!(three.states, [Bad, NonTrimmed, NonTried]);
        assert_eq!((three.start(1), three.start(2)), (333, 666));
        assert_eq!(
            (three.cell_of(332), three.cell_of(333), three.cell_of(999)),
            (0, 1, 2)
        );
        // A size that does not divide: still exactly the cells asked for, the last one full.
        let odd = map(&[(0, 1_024_000, Finished), (1_024_000, 1, Bad)]);
        let many = cells(&odd, 1024);
        assert_eq!(many.states.len(), 1024);
        assert_eq!(many.states[1023], Bad);
        assert_eq!(many.states.iter().filter(|s| **s == Bad).count(), 1);
        // A device smaller than the cells asked for: a cell per byte.
        assert_eq!(cells(&map(&[(0, 5, Finished)]), 64).states.len(), 5);
    }

    #[test]
    fn the_svg_draws_every_block_where_it_lies_and_escapes_text() {
        use BlockStatus::{Bad, Finished};
        let m = map(&[(0, 150, Finished), (150, 100, Bad), (250, 750, Finished)]);
        let picture = svg(
            &m,
            10,
            &[Mark {
                offset: 200,
                length: 800,
                label: "volume 0 <ext4>".into(),
            }],
            "disk & co",
            &["bad\nname".into()],
        );
        // The bad block wraps from row 1 into row 2: two rects, both with its exact bytes.
        let bad: Vec<&str> = picture
            .lines()
            .filter(|l| l.contains(r#"data-status="-""#))
            .collect();
        assert_eq!(bad.len(), 2, "{picture}");
        assert!(
            bad.iter()
                .all(|l| l.contains(r#"data-pos="150" data-size="100""#))
        );
        assert!(bad[0].contains(r#"x="512.000" y="12""#), "{}", bad[0]);
        assert!(bad[1].contains(r#"x="0.000" y="24""#), "{}", bad[1]);
        assert!(picture.contains(r#"data-offset="200" data-length="800""#));
        assert!(picture.contains("volume 0 &lt;ext4&gt;") && picture.contains("disk &amp; co"));
        assert!(picture.contains("bad\\x0aname"));
        // One byte of a huge device is still a visible rect.
        let tiny = svg(
            &map(&[(0, 1 << 40, Finished), (1 << 40, 512, Bad)]),
            4,
            &[],
            "t",
            &[],
        );
        let line = tiny
            .lines()
            .find(|l| l.contains(r#"data-status="-""#))
            .unwrap();
        assert!(line.contains(r#"width="1.000""#), "{line}");
        // 20 000 blocks of 512 bytes, bad and finished in turn, on 10 MiB: a unit of the
        // picture (one row, 1024 units) is 10 KiB, so 20 blocks share a unit and are one
        // rectangle, bad, saying how many blocks it stands for.
        let mut blocks: Vec<(u64, u64, BlockStatus)> = (0..20_000u64)
            .map(|i| (i * 512, 512, if i % 2 == 0 { Bad } else { Finished }))
            .collect();
        blocks.push((20_000 * 512, 10 * (1 << 20) - 20_000 * 512, Finished));
        let busy = svg(&map(&blocks), 1, &[], "t", &[]);
        let rects: Vec<&str> = busy
            .lines()
            .filter(|l| l.starts_with("<rect") && l.contains("data-pos"))
            .collect();
        assert!(rects.len() <= 1100, "{} rects", rects.len());
        assert!(
            rects
                .iter()
                .all(|r| !r.contains("data-blocks") || r.contains(r#"data-status="-""#))
        );
        assert!(rects.iter().any(|r| {
            r.contains(r#"data-pos="0" data-size="10240" data-status="-" data-blocks="20""#)
        }));
    }
}
