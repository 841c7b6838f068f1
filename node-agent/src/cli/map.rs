//! `ntt map MEDIUM`: the rescue map as ddrescueview draws it, in the terminal or as SVG.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;

use super::text::{escape_path, human_bytes};
use crate::catalog::media;
use crate::catalog::volumes;
use crate::catalog::{Catalog, listing};
use crate::imaging::mapfile::{BlockStatus, Mapfile};
use crate::imaging::picture::{self, Mark};

/// Options of `ntt map`.
#[derive(Debug, clap::Args)]
pub struct MapArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,

    /// Cells per row in the terminal
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(8..=512))]
    pub width: u16,

    /// Rows in the terminal and in the SVG
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub rows: u16,

    /// Write the picture as SVG to this file (made anew; refused if it exists) instead
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// Damaged files listed under the picture at most.
const MAX_FILES: usize = 50;

/// `ntt map`.
pub(super) async fn run(
    catalog: &Catalog,
    args: MapArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let Some(path) = &medium.mapfile_path else {
        anyhow::bail!(
            "{} has no rescue map: it was registered from an image or a directory, not imaged \
             from a device",
            medium.name
        );
    };
    let text = fs_err::read_to_string(path)
        .context("read the medium's mapfile (is the data directory mounted?)")?;
    let map = Mapfile::parse(&text).with_context(|| format!("parse the mapfile {path}"))?;
    let summary = map.summary();
    // A filesystem's deleted entries are the same bytes: one mark, the filesystem's.
    let marks: Vec<Mark> = volumes::medium_volumes(catalog.pool(), medium.id)
        .await?
        .iter()
        .filter(|v| v.role != volumes::RoleValue::Deleted)
        .map(|v| Mark {
            offset: u64::try_from(v.offset_bytes).unwrap_or_default(),
            length: u64::try_from(v.length_bytes).unwrap_or_default(),
            label: format!(
                "volume {} {}",
                v.volume_no,
                v.fs_type.as_deref().unwrap_or("(no filesystem)")
            ),
        })
        .collect();
    let lines = describe(catalog, &medium, &summary, &marks).await?;
    let title = format!("{} ({})", medium.name, medium.hash);
    if let Some(file) = &args.svg {
        let picture = picture::svg(&map, u64::from(args.rows), &marks, &title, &lines);
        let mut out = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(file)?;
        out.write_all(picture.as_bytes())?;
        out.sync_all()?;
        writeln!(stdout, "wrote {}", file.display())?;
        return Ok(());
    }
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    draw(&map, &args, &marks, colour, &title, stdout)?;
    for line in &lines {
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}

/// The text beside the picture: the rescue totals, the volumes, and the damaged files.
async fn describe(
    catalog: &Catalog,
    medium: &media::MediumRecord,
    summary: &crate::imaging::mapfile::RescueSummary,
    marks: &[Mark],
) -> anyhow::Result<Vec<String>> {
    let mut damaged = Vec::new();
    let mut files = std::collections::BTreeSet::new();
    listing::list_paths(
        catalog.pool(),
        medium.id,
        None,
        None,
        listing::Only {
            damaged: true,
            deleted: false,
        },
        false,
        &mut |row| {
            files.insert((row.volume_no, row.ino));
            damaged.push(format!(
                "volume {}  {}  {}",
                row.volume_no,
                escape_path(&row.path),
                row.damaged_ranges.unwrap_or_default()
            ));
            Ok(())
        },
    )
    .await?;
    let mut lines = vec![format!(
        "{} of {} rescued ({:.2} %); {} bad in {} areas, {} non-trimmed, {} non-scraped, {} \
         non-tried",
        human_bytes(summary.rescued),
        human_bytes(summary.total),
        summary.percent(),
        human_bytes(summary.bad),
        summary.bad_areas.len(),
        human_bytes(summary.non_trimmed),
        human_bytes(summary.non_scraped),
        human_bytes(summary.non_tried)
    )];
    lines.extend(marks.iter().map(|m| {
        format!(
            "{} at {}, {}",
            m.label,
            human_bytes(m.offset),
            human_bytes(m.length)
        )
    }));
    lines.push(match (files.len(), damaged.len()) {
        (0, _) => "no file is damaged (or the damage is not mapped yet: `ntt damage`)".to_owned(),
        (n, paths) if paths == n => {
            format!("{n} damaged files (file byte ranges on unreadable areas):")
        }
        (n, paths) => {
            format!("{n} damaged files under {paths} paths (file byte ranges on unreadable areas):")
        }
    });
    let more = damaged.len().saturating_sub(MAX_FILES);
    lines.extend(
        damaged
            .into_iter()
            .take(MAX_FILES)
            .map(|l| format!("  {l}")),
    );
    if more > 0 {
        lines.push(format!(
            "  ... and {more} more (`ntt ls {} --damaged`)",
            medium.name
        ));
    }
    Ok(lines)
}

/// The terminal picture: rows of cells with the offset each row starts at, volume starts
/// listed with their cells, and a legend.
fn draw(
    map: &Mapfile,
    args: &MapArgs,
    marks: &[Mark],
    colour: bool,
    title: &str,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let width = usize::from(args.width);
    let cells = picture::cells(map, width * usize::from(args.rows));
    let size = picture::extent(map);
    let per_cell = size / (cells.states.len().max(1) as u64);
    writeln!(out, "{title}: one cell is about {}", human_bytes(per_cell))?;
    for (row, chunk) in cells.states.chunks(width).enumerate() {
        write!(out, "{:>10} ", human_bytes(cells.start(row * width)))?;
        for &status in chunk {
            if colour {
                write!(
                    out,
                    "\x1b[{}m{}\x1b[0m",
                    ansi(status),
                    picture::glyph(status)
                )?;
            } else {
                write!(out, "{}", picture::glyph(status))?;
            }
        }
        writeln!(out)?;
    }
    let legend: Vec<String> = picture::STATES
        .iter()
        .map(|&s| format!("{} {}", picture::glyph(s), picture::label(s)))
        .collect();
    writeln!(out, "{}", legend.join("   "))?;
    for mark in marks {
        let first = cells.cell_of(mark.offset);
        let last = cells.cell_of(mark.offset + mark.length.max(1) - 1);
        writeln!(
            out,
            "{}: cells {first}-{last} (row {}, column {})",
            mark.label,
            first / width,
            first % width
        )?;
    }
    Ok(())
}

const fn ansi(status: BlockStatus) -> &'static str {
    match status {
        BlockStatus::Finished => "32",
        BlockStatus::NonTried => "90",
        BlockStatus::NonTrimmed => "33",
        BlockStatus::NonScraped => "34",
        BlockStatus::Bad => "31;1",
    }
}
