//! Shell globs over name bytes (`ntt find --name`, `--iname`): `*` any bytes, `?` one
//! character (or one byte that is not UTF-8), `[abc]` `[a-z]` `[!x]` classes, `\` quotes the
//! next character; the whole name must match. Names and patterns need not be UTF-8: a byte
//! that is not part of a character matches itself. Translated to a `regex::bytes` expression,
//! because glob crates take patterns as `str` and could not match such a byte.

use std::fmt::Write;

/// A pattern that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobError {
    /// `[` without its `]`.
    #[error("the glob {0:?} opens a [class] it does not close")]
    UnclosedClass(String),
    /// A class holding bytes that are not UTF-8.
    #[error("the glob {0:?} has a [class] that is not UTF-8")]
    ClassNotUtf8(String),
    /// The translated expression was refused (too large).
    #[error("the glob {pattern:?} cannot be compiled: {message}")]
    Compile {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
}

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct NameGlob(regex::bytes::Regex);

impl NameGlob {
    /// Compiles `pattern`; `case_insensitive` folds case (Unicode simple folding).
    pub fn new(pattern: &[u8], case_insensitive: bool) -> Result<Self, GlobError> {
        let shown = || String::from_utf8_lossy(pattern).into_owned();
        let mut expression = String::from(if case_insensitive { "(?i)\\A" } else { "\\A" });
        let mut i = 0;
        while i < pattern.len() {
            match pattern[i] {
                b'*' => {
                    expression.push_str("(?s-u:.)*");
                    i += 1;
                }
                b'?' => {
                    expression.push_str("(?:(?s:.)|(?-u:[\\x80-\\xFF]))");
                    i += 1;
                }
                b'[' => {
                    let (class, next) = class(pattern, i).ok_or_else(|| {
                        if pattern[i..].contains(&b']') {
                            GlobError::ClassNotUtf8(shown())
                        } else {
                            GlobError::UnclosedClass(shown())
                        }
                    })?;
                    expression.push_str(&class);
                    i = next;
                }
                b'\\' if i + 1 < pattern.len() => {
                    i = literal(pattern, i + 1, &mut expression);
                }
                _ => i = literal(pattern, i, &mut expression),
            }
        }
        expression.push_str("\\z");
        regex::bytes::Regex::new(&expression)
            .map(Self)
            .map_err(|e| GlobError::Compile {
                pattern: shown(),
                message: e.to_string(),
            })
    }

    /// Whether the whole `name` matches.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.0.is_match(name)
    }
}

/// The last component of `path` (the name `find -name` matches).
pub fn name_of(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// Appends the character (or lone byte) at `i` as a literal; returns the index after it.
fn literal(pattern: &[u8], i: usize, out: &mut String) -> usize {
    let valid = pattern[i..]
        .utf8_chunks()
        .next()
        .map_or("", |chunk| chunk.valid());
    if let Some(c) = valid.chars().next() {
        out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        i + c.len_utf8()
    } else {
        let _ = write!(out, "(?-u:\\x{:02X})", pattern[i]);
        i + 1
    }
}

/// The class starting at `[` (index `start`) as a regex class, and the index after its `]`;
/// `None` when it is not closed or not UTF-8.
fn class(pattern: &[u8], start: usize) -> Option<(String, usize)> {
    let mut i = start + 1;
    let mut out = String::from("[");
    if matches!(pattern.get(i), Some(b'!' | b'^')) {
        out.push('^');
        i += 1;
    }
    // A `]` right after the opening (or the negation) is a member.
    let first = i;
    let from = if pattern.get(first) == Some(&b']') {
        first + 1
    } else {
        first
    };
    let end = from + pattern.get(from..)?.iter().position(|&b| b == b']')?;
    let members = std::str::from_utf8(&pattern[first..end]).ok()?;
    let chars: Vec<char> = members.chars().collect();
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        if k + 2 < chars.len() && chars[k + 1] == '-' {
            let _ = write!(out, "{}-{}", class_char(c), class_char(chars[k + 2]));
            k += 3;
        } else {
            out.push_str(&class_char(c));
            k += 1;
        }
    }
    out.push(']');
    Some((out, end + 1))
}

/// A character inside a regex class, escaped when the class syntax would read it.
fn class_char(c: char) -> String {
    if matches!(c, '\\' | ']' | '[' | '^' | '-' | '&' | '~') {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &[u8]) -> NameGlob {
        NameGlob::new(pattern, false).unwrap()
    }

    #[test]
    fn stars_questions_and_literals_match_whole_names() {
        let g = glob(b"*.txt");
        assert!(g.matches(b"report.txt"));
        assert!(g.matches(b".txt"));
        assert!(g.matches(b"new\nline.txt"), "a star crosses a newline");
        assert!(g.matches(b"bad \xff.txt"), "and bytes that are not UTF-8");
        assert!(!g.matches(b"report.txt.bak"), "the whole name");
        assert!(!g.matches(b"report.TXT"));
        let g = glob(b"f?.jpg");
        assert!(g.matches(b"f1.jpg") && g.matches("fé.jpg".as_bytes()) && g.matches(b"f\xff.jpg"));
        assert!(!g.matches(b"f12.jpg") && !g.matches(b"f.jpg"));
        let g = glob(b"a.b+(c)");
        assert!(
            g.matches(b"a.b+(c)") && !g.matches(b"axb+(c)"),
            "regex syntax is literal"
        );
    }

    #[test]
    fn classes_ranges_negation_and_quoting() {
        let g = glob(b"IMG_[0-9][0-9].JPG");
        assert!(g.matches(b"IMG_07.JPG") && !g.matches(b"IMG_7a.JPG"));
        let g = glob(b"[!.]*");
        assert!(g.matches(b"visible") && !g.matches(b".hidden"));
        let g = glob(b"[]a]x");
        assert!(g.matches(b"]x") && g.matches(b"ax") && !g.matches(b"bx"));
        let g = glob(b"what\\?");
        assert!(g.matches(b"what?") && !g.matches(b"whatx"));
        // Inside a class every character is a member (a trailing `-` too); none is special
        // to the expression it becomes.
        let g = glob(b"[\\^-]");
        assert!(g.matches(b"^") && g.matches(b"-") && g.matches(b"\\"));
        assert!(!g.matches(b"a"));
        assert_eq!(
            NameGlob::new(b"[abc", false).unwrap_err(),
            GlobError::UnclosedClass("[abc".into())
        );
        assert!(matches!(
            NameGlob::new(b"[\xff]", false),
            Err(GlobError::ClassNotUtf8(_))
        ));
    }

    #[test]
    fn patterns_may_hold_bytes_that_are_not_utf8() {
        let g = glob(b"bad \xff*");
        assert!(g.matches(b"bad \xff name"));
        assert!(!g.matches(b"bad \xfe name"));
        assert!(
            !g.matches("bad ÿ name".as_bytes()),
            "the byte, not the character U+00FF"
        );
    }

    #[test]
    fn case_insensitive_folds_beyond_ascii() {
        let g = NameGlob::new("résumé*.DOC".as_bytes(), true).unwrap();
        assert!(g.matches("RÉSUMÉ 1998.doc".as_bytes()));
        assert!(!glob("résumé*.DOC".as_bytes()).matches("RÉSUMÉ 1998.doc".as_bytes()));
    }

    #[test]
    fn the_name_is_the_last_component() {
        assert_eq!(name_of(b"a/b/c.txt"), b"c.txt");
        assert_eq!(name_of(b"top"), b"top");
        assert_eq!(name_of(b"dir/"), b"");
    }
}
