//! Text for people: sizes and path bytes as a terminal shows them.

/// 1536 -> "1.5 KiB".
pub(super) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    #[expect(clippy::cast_precision_loss, reason = "a displayed size")]
    let mut value = bytes as f64;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A medium's hash as people read it: its first 8 characters (all of it when shorter).
pub(super) fn short_hash(hash: &str) -> &str {
    hash.get(..8).unwrap_or(hash)
}

/// Path bytes for a terminal: printable UTF-8 as is; control and invisible format characters
/// and bytes that are not UTF-8 escaped (`\n`, `\xNN`).
pub(super) fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() || is_invisible(c) => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        push_hex(&mut out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            push_hex(&mut out, b);
        }
    }
    out
}

/// Unicode format characters and the like that change how a line shows without showing
/// themselves (bidi overrides and isolates, zero-width characters, the soft hyphen, tag
/// characters): a crafted name must not display as another.
const fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

fn push_hex(out: &mut String, byte: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(char::from(DIGITS[usize::from(byte >> 4)]));
    out.push(char::from(DIGITS[usize::from(byte & 15)]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(4 * 1024 * 1024 * 1024), "4.0 GiB");
    }

    #[test]
    fn terminal_paths_escape_what_would_mislead() {
        assert_eq!(escape_path(b"plain/name.txt"), "plain/name.txt");
        assert_eq!(escape_path(b"a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escape_path(b"back\\rslash"), "back\\\\rslash");
        assert_eq!(escape_path(b"x\x1cy"), "x\\x1cy");
        assert_eq!(escape_path(b"caf\xe9"), "caf\\xe9");
        assert_eq!(escape_path("ímynd".as_bytes()), "ímynd");
        // A right-to-left override would show "evil\u{202e}txt.exe" as "evilexe.txt".
        assert_eq!(
            escape_path("evil\u{202e}txt.exe".as_bytes()),
            "evil\\xe2\\x80\\xaetxt.exe"
        );
        assert_eq!(escape_path("a\u{200b}b".as_bytes()), "a\\xe2\\x80\\x8bb");
    }
}
