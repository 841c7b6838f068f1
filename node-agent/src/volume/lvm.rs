//! LVM2 logical volumes read in user space, without device-mapper: the physical volume's label
//! and metadata area are read from the image, the volume group's text metadata parsed, and each
//! logical volume that lies on this physical volume in one linear run becomes a byte range of
//! the image, read like a partition.
//!
//! Rules: only what this physical volume holds is read (an LV with a segment on another PV, or
//! striped, mirrored, thin or cached, is recorded with why it is not read); a linear LV of
//! several segments is read only when they follow each other on the PV (otherwise it needs a
//! concatenating view, not built yet); every number comes from the metadata of the medium and is
//! checked against the PV's size before it is used.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Why the metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    /// Reading the image failed.
    #[error("cannot read the LVM metadata: {0}")]
    Io(#[from] std::io::Error),
    /// The label, headers or text are not what LVM writes.
    #[error("malformed LVM metadata: {0}")]
    Malformed(String),
}

fn malformed(what: impl Into<String>) -> LvmError {
    LvmError::Malformed(what.into())
}

/// One logical volume of the volume group, as found on this physical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    /// `vg/lv`.
    pub name: String,
    /// Its bytes as one range of the PV (offset from the PV's first byte, length), or why it is
    /// not read.
    pub extent: Result<(u64, u64), String>,
}

/// A value of LVM's text metadata format.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Number(i64),
    /// A string.
    Text(String),
    /// `[ ... ]`.
    List(Vec<Value>),
    /// `name { ... }`.
    Section(BTreeMap<String, Value>),
}

impl Value {
    fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Section(map) => map.get(key),
            _ => None,
        }
    }

    fn number(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Self::Number(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Self::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// Deepest nesting read (LVM writes fewer than ten levels; a crafted text could exhaust the
/// stack).
const MAX_DEPTH: usize = 32;
/// Most tokens read (LVM's metadata of a large group holds some tens of thousands).
const MAX_TOKENS: usize = 1 << 20;
/// Most logical volumes read from one physical volume (each is probed and may be attached).
pub const MAX_VOLUMES: usize = 256;

/// Parses LVM's text metadata format into its top-level section (pure).
pub fn parse(text: &str) -> Result<Value, LvmError> {
    let mut tokens = tokenize(text)?.into_iter().peekable();
    let top = section_body(&mut tokens, 0)?;
    if tokens.next().is_some() {
        return Err(malformed("unbalanced '}'"));
    }
    Ok(top)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Symbol(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>, LvmError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if out.len() >= MAX_TOKENS {
            return Err(malformed(format!("more than {MAX_TOKENS} tokens")));
        }
        match c {
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' | '{' | '}' | '[' | ']' | ',' => {
                chars.next();
                out.push(Token::Symbol(c));
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => s.push(chars.next().ok_or_else(|| malformed("open string"))?),
                        Some(c) => s.push(c),
                        None => return Err(malformed("open string")),
                    }
                }
                out.push(Token::Text(s));
            }
            _ => {
                let mut word = String::new();
                while let Some(c) = chars.next_if(|c| {
                    !c.is_whitespace()
                        && !matches!(c, '=' | '{' | '}' | '[' | ']' | ',' | '"' | '#')
                }) {
                    word.push(c);
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<Token>>;

fn section_body(tokens: &mut Tokens, depth: usize) -> Result<Value, LvmError> {
    if depth > MAX_DEPTH {
        return Err(malformed(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let mut map = BTreeMap::new();
    while let Some(token) = tokens.peek() {
        if *token == Token::Symbol('}') {
            break;
        }
        let Some(Token::Word(key)) = tokens.next() else {
            return Err(malformed("expected a name"));
        };
        match tokens.next() {
            Some(Token::Symbol('=')) => {
                let value = value(tokens, depth + 1)?;
                map.insert(key, value);
            }
            Some(Token::Symbol('{')) => {
                let inner = section_body(tokens, depth + 1)?;
                if tokens.next() != Some(Token::Symbol('}')) {
                    return Err(malformed(format!("section {key} is not closed")));
                }
                map.insert(key, inner);
            }
            _ => return Err(malformed(format!("expected '=' or '{{' after {key}"))),
        }
    }
    Ok(Value::Section(map))
}

fn value(tokens: &mut Tokens, depth: usize) -> Result<Value, LvmError> {
    if depth > MAX_DEPTH {
        return Err(malformed(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    match tokens.next() {
        Some(Token::Text(s)) => Ok(Value::Text(s)),
        Some(Token::Word(w)) => w
            .parse::<i64>()
            .map(Value::Number)
            .map_err(|_| malformed(format!("not a number: {w}"))),
        Some(Token::Symbol('[')) => {
            let mut items = Vec::new();
            loop {
                if tokens.next_if_eq(&Token::Symbol(']')).is_some() {
                    return Ok(Value::List(items));
                }
                items.push(value(tokens, depth + 1)?);
                if tokens.next_if_eq(&Token::Symbol(',')).is_none()
                    && tokens.peek() != Some(&Token::Symbol(']'))
                {
                    return Err(malformed("expected ',' or ']'"));
                }
            }
        }
        _ => Err(malformed("expected a value")),
    }
}

/// LVM writes UUIDs without dashes on disk and with them (6-4-4-4-4-4-6) in the text.
pub fn dashed_uuid(raw: &str) -> String {
    let mut out = String::new();
    let mut at = 0;
    for (i, width) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(raw.get(at..at + width).unwrap_or_default());
        at += width;
    }
    out
}

/// The logical volumes of the volume group in `metadata` as they lie on the physical volume
/// `pv_uuid` (dashed) of `pv_size` bytes (pure).
pub fn logical_volumes(metadata: &Value, pv_uuid: &str, pv_size: u64) -> Vec<LogicalVolume> {
    let Value::Section(top) = metadata else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (vg_name, vg) in top {
        let Some(Value::Section(pvs)) = vg.get("physical_volumes") else {
            continue;
        };
        let Some(extent_sectors) = vg.number("extent_size") else {
            continue;
        };
        let extent = extent_sectors.saturating_mul(512);
        let ours = pvs
            .iter()
            .find(|(_, pv)| pv.text("id") == Some(pv_uuid))
            .and_then(|(key, pv)| Some((key.clone(), pv.number("pe_start")?.saturating_mul(512))));
        let Some((pv_key, pe_start)) = ours else {
            continue;
        };
        let Some(Value::Section(lvs)) = vg.get("logical_volumes") else {
            continue;
        };
        for (lv_name, lv) in lvs {
            // Hidden volumes are parts of others (RAID images, thin pool data, cache metadata).
            let visible = matches!(lv.get("status"), Some(Value::List(flags))
                if flags.contains(&Value::Text("VISIBLE".to_owned())));
            if !visible {
                continue;
            }
            if out.len() == MAX_VOLUMES {
                out.push(LogicalVolume {
                    name: format!("{vg_name}/..."),
                    extent: Err(format!("more than {MAX_VOLUMES} logical volumes: the rest")),
                });
                return out;
            }
            out.push(LogicalVolume {
                name: format!("{vg_name}/{lv_name}"),
                extent: placement(lv, &pv_key, pe_start, extent, pv_size),
            });
        }
    }
    out
}

/// Where a logical volume's bytes are on the PV, or why it is not read (pure).
fn placement(
    lv: &Value,
    pv_key: &str,
    pe_start: u64,
    extent: u64,
    pv_size: u64,
) -> Result<(u64, u64), String> {
    let Value::Section(map) = lv else {
        return Err("not a section".to_owned());
    };
    let mut segments: Vec<(u64, u64, u64)> = Vec::new();
    for (key, segment) in map {
        if !key.starts_with("segment") || !matches!(segment, Value::Section(_)) {
            continue;
        }
        let kind = segment.text("type").unwrap_or("?");
        if kind != "striped" || segment.number("stripe_count") != Some(1) {
            return Err(format!(
                "a {kind} segment (only linear volumes are read so far)"
            ));
        }
        let (Some(start), Some(count)) = (
            segment.number("start_extent"),
            segment.number("extent_count"),
        ) else {
            return Err("a segment without its extents".to_owned());
        };
        let Some(Value::List(stripes)) = segment.get("stripes") else {
            return Err("a segment without its physical volume".to_owned());
        };
        match stripes.as_slice() {
            [Value::Text(pv), Value::Number(first)] if pv == pv_key => {
                segments.push((start, count, u64::try_from(*first).unwrap_or(u64::MAX)));
            }
            _ => return Err("a segment on another physical volume".to_owned()),
        }
    }
    segments.sort_unstable();
    let Some(&(_, _, first_pe)) = segments.first() else {
        return Err("no segments".to_owned());
    };
    let mut logical = 0;
    let mut physical = first_pe;
    for &(start, count, pe) in &segments {
        if start != logical {
            return Err("segments that leave a gap".to_owned());
        }
        if pe != physical {
            return Err(format!(
                "{} segments apart from each other on the disk (a concatenating view is not \
                 built yet)",
                segments.len()
            ));
        }
        logical = start.saturating_add(count);
        physical = pe.saturating_add(count);
    }
    let offset = pe_start.saturating_add(first_pe.saturating_mul(extent));
    let length = logical.saturating_mul(extent);
    if length == 0 {
        return Err("no extents".to_owned());
    }
    if offset.saturating_add(length) > pv_size {
        return Err(format!(
            "extents beyond the physical volume's end ({offset} + {length} > {pv_size})"
        ));
    }
    Ok((offset, length))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// Most metadata text read (LVM's default metadata area is 1 MiB).
const MAX_TEXT: u64 = 16 << 20;

/// Reads the PV at `offset..offset + length` of `image`: its UUID (dashed) and its volume
/// group's parsed metadata.
pub fn read_pv(image: &Path, offset: u64, length: u64) -> Result<(String, Value), LvmError> {
    let file = fs_err::File::open(image)?;
    let read = |at: u64, len: u64| -> Result<Vec<u8>, LvmError> {
        if at.checked_add(len).is_none_or(|end| end > length) {
            return Err(malformed("an area beyond the physical volume"));
        }
        let mut buf = vec![0_u8; usize::try_from(len).map_err(|_| malformed("too large"))?];
        file.file().read_exact_at(&mut buf, offset + at)?;
        Ok(buf)
    };
    let head = read(0, 2048)?;
    let label = (0..4)
        .map(|s| s * 512)
        .find(|&at| head.get(at..at + 8) == Some(b"LABELONE"))
        .ok_or_else(|| malformed("no LABELONE in the first four sectors"))?;
    let pv_at =
        label + usize::try_from(u32_at(&head, label + 20).unwrap_or(0)).unwrap_or(usize::MAX);
    let header = head
        .get(pv_at..)
        .ok_or_else(|| malformed("pv header outside the label"))?;
    let uuid = String::from_utf8_lossy(header.get(..32).unwrap_or_default()).into_owned();
    // Data areas, then metadata areas: (offset, size) lists, each ended by a zero pair.
    let mut at = 40;
    let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for list in &mut lists {
        loop {
            let (o, s) = (u64_at(header, at), u64_at(header, at + 8));
            at += 16;
            match (o, s) {
                (Some(0), Some(0)) => break,
                (Some(o), Some(s)) => list.push((o, s)),
                _ => return Err(malformed("unterminated area list")),
            }
        }
    }
    let &(mda, mda_size) = lists[1]
        .first()
        .ok_or_else(|| malformed("no metadata area"))?;
    let mda_header = read(mda, 512)?;
    if mda_header.get(4..20) != Some(b" LVM2 x[5A%r0N*>") {
        return Err(malformed("no metadata area header"));
    }
    let (Some(text_at), Some(text_len)) = (u64_at(&mda_header, 40), u64_at(&mda_header, 48)) else {
        return Err(malformed("short metadata area header"));
    };
    if text_len == 0 || text_len > MAX_TEXT || text_at < 512 || text_at >= mda_size {
        return Err(malformed("no metadata text"));
    }
    if mda.checked_add(mda_size).is_none_or(|end| end > length) {
        return Err(malformed("a metadata area beyond the physical volume"));
    }
    // The text area is circular after the 512-byte header.
    let first = text_len.min(mda_size - text_at);
    let mut text = read(mda + text_at, first)?;
    if first < text_len {
        text.extend(read(mda + 512, text_len - first)?);
    }
    let text = String::from_utf8_lossy(text.split(|&b| b == 0).next().unwrap_or_default());
    Ok((dashed_uuid(&uuid), parse(&text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const METADATA: &str = r#"
# Generated by LVM2
contents = "Text Format Volume Group"
version = 1
testvg {
	id = "8Sy73f-go3y-FFsA-bJpr-fdRu-bZUa-4aYhf1"
	seqno = 3
	status = ["RESIZEABLE", "READ", "WRITE"]
	flags = []
	extent_size = 8192		# 4 Megabytes
	physical_volumes {
		pv0 {
			id = "cx2v1l-pUqu-eT3P-mHJ6-thzG-5RfZ-27SQJU"
			device = "/dev/loop0"	# Hint only
			dev_size = 131072
			pe_start = 2048
			pe_count = 15
		}
	}
	logical_volumes {
		data {
			id = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
			status = ["READ", "WRITE", "VISIBLE"]
			segment_count = 2
			segment1 {
				start_extent = 0
				extent_count = 2
				type = "striped"
				stripe_count = 1
				stripes = [
					"pv0", 1
				]
			}
			segment2 {
				start_extent = 2
				extent_count = 1
				type = "striped"
				stripe_count = 1
				stripes = ["pv0", 3]
			}
		}
		apart {
			status = ["READ", "WRITE", "VISIBLE"]
			segment1 { start_extent = 0 extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv0", 5] }
			segment2 { start_extent = 1 extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv0", 9] }
		}
		thin { status = ["VISIBLE"] segment1 { start_extent = 0 extent_count = 1 type = "thin" } }
		elsewhere { status = ["VISIBLE"] segment1 { start_extent = 0 extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv1", 0] } }
		huge { status = ["VISIBLE"] segment1 { start_extent = 0 extent_count = 100 type = "striped" stripe_count = 1 stripes = ["pv0", 0] } }
		empty { status = ["VISIBLE"] segment1 { start_extent = 0 extent_count = 0 type = "striped" stripe_count = 1 stripes = ["pv0", 0] } }
		data_rimage_0 { status = ["READ"] segment1 { start_extent = 0 extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv0", 0] } }
	}
}
"#;

    #[test]
    fn linear_volumes_become_byte_ranges_and_the_rest_say_why_not() {
        let value = parse(METADATA).unwrap();
        let lvs = logical_volumes(&value, "cx2v1l-pUqu-eT3P-mHJ6-thzG-5RfZ-27SQJU", 64 << 20);
        let by_name: BTreeMap<&str, &Result<(u64, u64), String>> = lvs
            .iter()
            .map(|lv| (lv.name.as_str(), &lv.extent))
            .collect();
        let mib = 1 << 20;
        // pe_start 1 MiB, extents of 4 MiB: extents 1..4 in a row.
        assert_eq!(by_name["testvg/data"], &Ok((mib + 4 * mib, 12 * mib)));
        assert!(
            by_name["testvg/apart"]
                .as_ref()
                .unwrap_err()
                .contains("concatenating")
        );
        assert!(
            by_name["testvg/thin"]
                .as_ref()
                .unwrap_err()
                .contains("thin")
        );
        assert!(
            by_name["testvg/elsewhere"]
                .as_ref()
                .unwrap_err()
                .contains("another")
        );
        assert!(
            by_name["testvg/huge"]
                .as_ref()
                .unwrap_err()
                .contains("beyond")
        );
        // Another PV's UUID: nothing of this group is on it.
        assert!(logical_volumes(&value, "other", 64 << 20).is_empty());
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        for text in [
            "vg {",
            "vg { a = }",
            "vg { a = [1, }",
            "a = \"open",
            "}",
            "vg { x = y }",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        assert_eq!(
            dashed_uuid("cx2v1lpUqueT3PmHJ6thzG5RfZ27SQJU"),
            "cx2v1l-pUqu-eT3P-mHJ6-thzG-5RfZ-27SQJU"
        );
    }
}
