//! `ntt status`: the media table for people, or JSON for scripts.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::text::human_bytes;
use crate::catalog::Catalog;
use crate::catalog::media::{self, MediumSummary};

/// `ntt status`.
pub(super) async fn run(
    catalog: &Catalog,
    json: bool,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let media = media::list_media(catalog.pool()).await?;
    if json {
        write_json(&media, stdout)?;
    } else {
        write_table(&media, stdout)?;
        if media.is_empty() {
            tracing::info!("no media in the catalog yet");
        }
    }
    Ok(())
}

/// Writes one JSON array of media.
pub(super) fn write_json(media: &[MediumSummary], out: &mut (impl Write + Send)) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, media)?;
    writeln!(out)
}

/// Writes an aligned table with a header line.
pub(super) fn write_table(
    media: &[MediumSummary],
    out: &mut (impl Write + Send),
) -> io::Result<()> {
    let header = [
        "NAME", "HASH", "KIND", "STAGE", "HEALTH", "SIZE", "RESCUED", "ENTRIES", "PENDING",
        "FAILED", "ADDED",
    ];
    let rows: Vec<[String; 11]> = media
        .iter()
        .map(|m| {
            [
                printable(&m.name),
                m.hash.chars().take(8).collect(),
                format!("{:?}", m.kind).to_lowercase(),
                m.stage.as_str().to_owned(),
                m.health.map_or_else(|| "-".to_owned(), |h| h.to_string()),
                m.size_bytes
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or_else(|| "-".to_owned(), human_bytes),
                rescued_percent(m.rescued_bytes, m.size_bytes),
                m.entries.map_or_else(|| "-".to_owned(), |e| e.to_string()),
                m.pending_files.to_string(),
                m.failed_files.to_string(),
                m.created_at.format("%Y-%m-%d %H:%M").to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    write_row(out, &header.map(str::to_owned), &widths)?;
    for row in &rows {
        write_row(out, row, &widths)?;
    }
    Ok(())
}

fn write_row(
    out: &mut (impl Write + Send),
    cells: &[String; 11],
    widths: &[usize; 11],
) -> io::Result<()> {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            line.push_str(cell);
        } else {
            let _ = write!(line, "{cell:<width$}  ");
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// Control characters in a name would break the table; show them escaped, keep the rest.
fn printable(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn rescued_percent(rescued: Option<i64>, size: Option<i64>) -> String {
    match (rescued, size) {
        (Some(rescued), Some(size)) if size > 0 && rescued >= size => "100%".to_owned(),
        (Some(rescued), Some(size)) if size > 0 => {
            // Truncate, never round up: 99.999 % must not read as 100 %.
            #[expect(clippy::cast_precision_loss, reason = "a displayed percentage")]
            let percent = (rescued as f64 * 1000.0 / size as f64).floor() / 10.0;
            format!("{percent:.1}%")
        }
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::media::{MediumId, MediumKind, Stage};
    use chrono::TimeZone;

    fn medium(name: &str, size: Option<i64>, rescued: Option<i64>) -> MediumSummary {
        MediumSummary {
            id: MediumId::new(1),
            hash: "0123456789abcdef0123456789abcdef".into(),
            name: name.into(),
            kind: MediumKind::Image,
            source: "/images/a.img".into(),
            description: None,
            size_bytes: size,
            health: None,
            rescued_bytes: rescued,
            bad_bytes: None,
            stage: Stage::Identified,
            created_at: chrono::Utc.with_ymd_and_hms(2026, 11, 29, 6, 0, 0).unwrap(),
            entries: None,
            pending_files: 0,
            failed_files: 0,
        }
    }

    #[test]
    fn rescued_percent_never_rounds_up_to_complete() {
        assert_eq!(rescued_percent(Some(99_999), Some(100_000)), "99.9%");
        assert_eq!(rescued_percent(Some(100), Some(100)), "100%");
        assert_eq!(rescued_percent(None, Some(100)), "-");
        assert_eq!(rescued_percent(Some(0), Some(0)), "-");
    }

    #[test]
    fn table_aligns_columns_and_escapes_control_characters() {
        let mut out = Vec::new();
        write_table(
            &[
                medium("disk\n1", Some(1536), Some(768)),
                medium("ímynd", None, None),
            ],
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[2].starts_with("ímynd    "), "{text}");
        assert!(
            lines[0].starts_with("NAME     HASH      KIND   STAGE"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("disk\\n1  01234567  image  identified  -       1.5 KiB  50.0%"),
            "{text}"
        );
    }

    #[test]
    fn empty_catalog_prints_only_the_header_and_json_empty_array() {
        let mut out = Vec::new();
        write_table(&[], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
        let mut out = Vec::new();
        write_json(&[], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), "[]");
    }
}
