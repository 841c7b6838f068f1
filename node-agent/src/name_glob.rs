//! Shell globs over name bytes (`ntt find --name`, `--iname`), as `fnmatch` reads them: `*` any
//! run, `?` one character, `[abc]` `[a-z]` `[!x]` `[^x]` `[[:digit:]]` classes, `\` quotes the
//! next character (inside a class too); the whole name must match. Names and patterns need not
//! be UTF-8: both are read as a sequence of characters and of single bytes that belong to no
//! character, and a byte matches only the same byte, never part of a character. Glob crates
//! take patterns as `str`, and a regular expression cannot tell a lone byte from part of a
//! character by context, so the match is done here on those units.

/// One unit of a name or pattern: a character, or a byte that is not part of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Char(char),
    Byte(u8),
}

/// The units of `bytes`, in order.
fn units(bytes: &[u8]) -> Vec<Unit> {
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars().map(Unit::Char));
        out.extend(chunk.invalid().iter().copied().map(Unit::Byte));
    }
    out
}

/// A POSIX character class (`[:digit:]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Alnum,
    Alpha,
    Blank,
    Cntrl,
    Digit,
    Graph,
    Lower,
    Print,
    Punct,
    Space,
    Upper,
    Xdigit,
}

impl Named {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "alnum" => Self::Alnum,
            "alpha" => Self::Alpha,
            "blank" => Self::Blank,
            "cntrl" => Self::Cntrl,
            "digit" => Self::Digit,
            "graph" => Self::Graph,
            "lower" => Self::Lower,
            "print" => Self::Print,
            "punct" => Self::Punct,
            "space" => Self::Space,
            "upper" => Self::Upper,
            "xdigit" => Self::Xdigit,
            _ => return None,
        })
    }

    fn holds(self, c: char) -> bool {
        match self {
            Self::Alnum => c.is_alphanumeric(),
            Self::Alpha => c.is_alphabetic(),
            Self::Blank => c == ' ' || c == '\t',
            Self::Cntrl => c.is_control(),
            Self::Digit => c.is_ascii_digit(),
            Self::Graph => !c.is_control() && !c.is_whitespace(),
            Self::Lower => c.is_lowercase(),
            Self::Print => !c.is_control(),
            Self::Punct => c.is_ascii_punctuation(),
            Self::Space => c.is_whitespace(),
            Self::Upper => c.is_uppercase(),
            Self::Xdigit => c.is_ascii_hexdigit(),
        }
    }
}

/// A member of a bracket class.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    One(Unit),
    Range(char, char),
    Named(Named),
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    Star,
    Any,
    Unit(Unit),
    Class { negated: bool, members: Vec<Member> },
}

/// A pattern that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobError {
    /// `[` without its `]`.
    #[error("the glob {0:?} opens a [class] it does not close")]
    UnclosedClass(String),
    /// `[:name:]` that POSIX does not define.
    #[error("the glob {pattern:?} names an unknown class [:{name}:]")]
    UnknownClass {
        /// The pattern.
        pattern: String,
        /// The name.
        name: String,
    },
}

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct NameGlob {
    elements: Vec<Element>,
    case_insensitive: bool,
}

impl NameGlob {
    /// Compiles `pattern`; `case_insensitive` folds case (characters' lowercase forms).
    pub fn new(pattern: &[u8], case_insensitive: bool) -> Result<Self, GlobError> {
        let shown = || String::from_utf8_lossy(pattern).into_owned();
        let input = units(pattern);
        let mut elements = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                Unit::Char('*') => {
                    if elements.last() != Some(&Element::Star) {
                        elements.push(Element::Star);
                    }
                    i += 1;
                }
                Unit::Char('?') => {
                    elements.push(Element::Any);
                    i += 1;
                }
                Unit::Char('[') => match class(&input, i + 1) {
                    Ok(Some((element, next))) => {
                        elements.push(element);
                        i = next;
                    }
                    // Not closed: fnmatch reads the `[` as itself.
                    Ok(None) => return Err(GlobError::UnclosedClass(shown())),
                    Err(name) => {
                        return Err(GlobError::UnknownClass {
                            pattern: shown(),
                            name,
                        });
                    }
                },
                Unit::Char('\\') if i + 1 < input.len() => {
                    elements.push(Element::Unit(input[i + 1]));
                    i += 2;
                }
                unit => {
                    elements.push(Element::Unit(unit));
                    i += 1;
                }
            }
        }
        Ok(Self {
            elements,
            case_insensitive,
        })
    }

    /// A `LIKE` pattern over [`fold`]ed names that every name this glob matches satisfies (and
    /// others may): its runs of literal units, folded, in order, anchored at an end the glob
    /// is anchored at. `None` when the glob has no literal (nothing to narrow by).
    pub fn like_pattern(&self) -> Option<String> {
        let mut pattern = String::new();
        let mut literal = false;
        // Whether the pattern ends in a `%` (open) or in a literal.
        let mut open = false;
        for element in &self.elements {
            match element {
                Element::Unit(unit) => {
                    literal = true;
                    let mut folded = String::new();
                    fold_unit(*unit, &mut folded);
                    for c in folded.chars() {
                        if matches!(c, '%' | '_' | '\\') {
                            pattern.push('\\');
                        }
                        pattern.push(c);
                    }
                    open = false;
                }
                // `?` and a class stand for one unit, whose fold may be several characters.
                Element::Star | Element::Any | Element::Class { .. } => {
                    if !open {
                        pattern.push('%');
                        open = true;
                    }
                }
            }
        }
        literal.then_some(pattern)
    }

    /// Whether the whole `name` matches.
    pub fn matches(&self, name: &[u8]) -> bool {
        let name = units(name);
        // The classic matcher: on a mismatch, go back to the last star and let it take one
        // more unit. Linear in practice, at worst patterns × name.
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.elements.get(p) {
                Some(Element::Star) => {
                    star = Some((p, n));
                    p += 1;
                }
                Some(element) if self.one(element, name[n]) => {
                    p += 1;
                    n += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        p = sp + 1;
                        n = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        self.elements[p..].iter().all(|e| *e == Element::Star)
    }

    /// Whether one element matches one unit.
    fn one(&self, element: &Element, unit: Unit) -> bool {
        match element {
            Element::Star | Element::Any => true,
            Element::Unit(want) => self.same(*want, unit),
            Element::Class { negated, members } => {
                members.iter().any(|m| self.member(m, unit)) != *negated
            }
        }
    }

    fn same(&self, want: Unit, unit: Unit) -> bool {
        match (want, unit) {
            (Unit::Char(a), Unit::Char(b)) => {
                a == b || (self.case_insensitive && a.to_lowercase().eq(b.to_lowercase()))
            }
            (Unit::Byte(a), Unit::Byte(b)) => a == b,
            _ => false,
        }
    }

    fn member(&self, member: &Member, unit: Unit) -> bool {
        match (member, unit) {
            (Member::One(want), unit) => self.same(*want, unit),
            (Member::Range(low, high), Unit::Char(c)) => {
                let within = |c: char| (*low..=*high).contains(&c);
                within(c)
                    || (self.case_insensitive
                        && (c.to_lowercase().any(within) || c.to_uppercase().any(within)))
            }
            (Member::Named(named), Unit::Char(c)) => {
                named.holds(c)
                    || (self.case_insensitive
                        && matches!(named, Named::Lower | Named::Upper)
                        && c.is_alphabetic())
            }
            (Member::Range(..) | Member::Named(_), Unit::Byte(_)) => false,
        }
    }
}

/// The class whose members start at `start` (after the `[`): the element and the index after
/// its `]`; `None` when it is not closed; the name of an unknown `[:name:]`.
fn class(input: &[Unit], start: usize) -> Result<Option<(Element, usize)>, String> {
    let mut i = start;
    let negated = matches!(input.get(i), Some(Unit::Char('!' | '^')));
    if negated {
        i += 1;
    }
    let mut members = Vec::new();
    let first = i;
    loop {
        let Some(&unit) = input.get(i) else {
            return Ok(None);
        };
        match unit {
            // A `]` first is a member; later it closes the class.
            Unit::Char(']') if i > first => {
                return Ok(Some((Element::Class { negated, members }, i + 1)));
            }
            Unit::Char('[') if input.get(i + 1) == Some(&Unit::Char(':')) => {
                let close = (i + 2..input.len().saturating_sub(1))
                    .find(|&k| input[k] == Unit::Char(':') && input[k + 1] == Unit::Char(']'));
                let Some(close) = close else {
                    return Ok(None);
                };
                let name: String = input[i + 2..close]
                    .iter()
                    .map(|u| match u {
                        Unit::Char(c) => *c,
                        Unit::Byte(_) => char::REPLACEMENT_CHARACTER,
                    })
                    .collect();
                members.push(Member::Named(Named::parse(&name).ok_or(name)?));
                i = close + 2;
            }
            _ => {
                let (low, next) = match unit {
                    Unit::Char('\\') if i + 1 < input.len() => (input[i + 1], i + 2),
                    unit => (unit, i + 1),
                };
                // `a-z`: a range, unless the `-` is last (then it is a member).
                match (low, input.get(next), input.get(next + 1)) {
                    (Unit::Char(a), Some(Unit::Char('-')), Some(&high))
                        if high != Unit::Char(']') =>
                    {
                        let (high, after) = match high {
                            Unit::Char('\\') if next + 2 < input.len() => {
                                (input[next + 2], next + 3)
                            }
                            high => (high, next + 2),
                        };
                        match high {
                            Unit::Char(b) => members.push(Member::Range(a, b)),
                            // A range cannot end in a lone byte: its three units are members.
                            Unit::Byte(_) => members.extend([
                                Member::One(low),
                                Member::One(Unit::Char('-')),
                                Member::One(high),
                            ]),
                        }
                        i = after;
                    }
                    _ => {
                        members.push(Member::One(low));
                        i = next;
                    }
                }
            }
        }
    }
}

/// The hash a name is indexed under (`path.name_id`, `file_name.hash`): the first 8 bytes of its
/// BLAKE3, little-endian. Stored, so it must never change.
pub fn name_hash(name: &[u8]) -> i64 {
    let digest = blake3::hash(name);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    i64::from_le_bytes(first)
}

/// The text the name index holds for `name` (`file_name.fold`): each character lowercased on
/// its own, each byte that is not part of a character (and NUL, which text cannot hold) as
/// U+FFFD. Folded alike, a run of literal units of a glob ([`NameGlob::like_pattern`]) is a
/// substring of the fold of every name the glob matches, with or without case.
pub fn fold(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for unit in units(name) {
        fold_unit(unit, &mut out);
    }
    out
}

fn fold_unit(unit: Unit, out: &mut String) {
    match unit {
        Unit::Char('\0') | Unit::Byte(_) => out.push(char::REPLACEMENT_CHARACTER),
        Unit::Char(c) => out.extend(c.to_lowercase()),
    }
}

/// The last component of `path` (the name `find -name` matches).
pub fn name_of(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
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
        assert!(
            !glob(b"f??.jpg").matches("fé.jpg".as_bytes()),
            "one character is one ?, however many bytes"
        );
        assert!(
            !glob(b"???.txt").matches("дв.txt".as_bytes()),
            "two letters are not three"
        );
        let g = glob(b"a.b+(c)");
        assert!(
            g.matches(b"a.b+(c)") && !g.matches(b"axb+(c)"),
            "no regex syntax"
        );
        assert!(glob(b"*a*b*c*").matches(b"xxaxxbxxcxx") && !glob(b"*a*b*c*").matches(b"cba"));
        assert!(glob(b"").matches(b"") && !glob(b"").matches(b"x"));
    }

    #[test]
    fn classes_ranges_negation_posix_and_quoting() {
        let g = glob(b"IMG_[0-9][0-9].JPG");
        assert!(g.matches(b"IMG_07.JPG") && !g.matches(b"IMG_7a.JPG"));
        let g = glob(b"[!.]*");
        assert!(g.matches(b"visible") && !g.matches(b".hidden"));
        assert!(g.matches(b"\xffodd"), "a negated class takes a lone byte");
        assert!(glob(b"[^.]*").matches(b"x"));
        let g = glob(b"[]a]x");
        assert!(g.matches(b"]x") && g.matches(b"ax") && !g.matches(b"bx"));
        assert!(glob(b"[\\]]").matches(b"]"), "a quoted ] inside a class");
        let g = glob(b"what\\?");
        assert!(g.matches(b"what?") && !g.matches(b"whatx"));
        let g = glob(b"[a-]");
        assert!(
            g.matches(b"a") && g.matches(b"-") && !g.matches(b"b"),
            "a last - is a member"
        );
        let g = glob(b"f[[:digit:]][[:alpha:]]");
        assert!(g.matches(b"f1x") && g.matches("f2é".as_bytes()) && !g.matches(b"fxx"));
        assert!(glob(b"[\xff]").matches(b"\xff") && !glob(b"[\xff]").matches("ÿ".as_bytes()));
        assert_eq!(
            NameGlob::new(b"[abc", false).unwrap_err(),
            GlobError::UnclosedClass("[abc".into())
        );
        assert!(matches!(
            NameGlob::new(b"[[:vowel:]]", false),
            Err(GlobError::UnknownClass { name, .. }) if name == "vowel"
        ));
    }

    #[test]
    fn a_lone_byte_matches_only_itself_never_part_of_a_character() {
        let g = glob(b"bad \xff*");
        assert!(g.matches(b"bad \xff name"));
        assert!(!g.matches(b"bad \xfe name"));
        assert!(
            !g.matches("bad ÿ name".as_bytes()),
            "the byte, not the character U+00FF"
        );
        // 0xA9 is Latin-1 ©; in UTF-8 it is the second byte of é (C3 A9).
        assert!(!glob(b"*\xa9").matches("café".as_bytes()));
        assert!(glob(b"*\xa9").matches(b"caf\xa9"));
    }

    /// `LIKE` as PostgreSQL reads it (backslash escapes), for checking the patterns here.
    fn like(text: &str, pattern: &str) -> bool {
        let mut regex = String::from("^");
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => regex.push_str(".*"),
                '_' => regex.push('.'),
                '\\' => regex.push_str(&regex::escape(&chars.next().unwrap().to_string())),
                c => regex.push_str(&regex::escape(&c.to_string())),
            }
        }
        regex.push('$');
        regex::Regex::new(&format!("(?s){regex}"))
            .unwrap()
            .is_match(text)
    }

    #[test]
    fn like_patterns_keep_every_match_of_the_glob() {
        let pattern = |g: &[u8]| glob(g).like_pattern();
        assert_eq!(pattern(b"*report*").as_deref(), Some("%report%"));
        assert_eq!(pattern(b"IMG_[0-9]?.JPG").as_deref(), Some("img\\_%.jpg"));
        assert_eq!(pattern(b"50%*").as_deref(), Some("50\\%%"));
        assert_eq!(pattern(b"*"), None);
        assert_eq!(pattern(b"?[ab]*"), None);
        assert_eq!(pattern(b"a*b").as_deref(), Some("a%b"));
        let names: [&[u8]; 9] = [
            b"report.pdf",
            b"Annual REPORT 1998.pdf",
            "RÉSUMÉ 1998.doc".as_bytes(),
            "İstanbul.txt".as_bytes(),
            b"bad \xff name",
            b"caf\xa9",
            "café".as_bytes(),
            b"IMG_07.JPG",
            b"50% off",
        ];
        let globs: [&[u8]; 10] = [
            b"*report*",
            "résumé*.DOC".as_bytes(),
            "i̇stanbul*".as_bytes(),
            "İST*".as_bytes(),
            b"bad \xff*",
            b"*\xa9",
            "*é".as_bytes(),
            b"img_??.jpg",
            b"50\\% *",
            b"*[0-9]*",
        ];
        let mut matched = 0;
        for g in globs {
            for insensitive in [false, true] {
                let compiled = NameGlob::new(g, insensitive).unwrap();
                for name in names {
                    if !compiled.matches(name) {
                        continue;
                    }
                    matched += 1;
                    if let Some(pattern) = compiled.like_pattern() {
                        assert!(
                            like(&fold(name), &pattern),
                            "{:?} matches {:?} but its fold {:?} is not like {pattern:?}",
                            String::from_utf8_lossy(g),
                            String::from_utf8_lossy(name),
                            fold(name)
                        );
                    }
                }
            }
        }
        assert!(matched >= 16, "the cases exercise matches ({matched})");
        assert_eq!(fold(b"A\xffb\x00"), "a\u{fffd}b\u{fffd}");
        assert_eq!(fold("ΣΟΦΟΣ".as_bytes()), "σοφοσ", "no final-sigma context");
        assert_eq!(name_hash(b"report.pdf"), name_hash(b"report.pdf"));
        assert_ne!(name_hash(b"report.pdf"), name_hash(b"Report.pdf"));
        assert_eq!(
            name_hash(b""),
            i64::from_le_bytes(blake3::hash(b"").as_bytes()[..8].try_into().unwrap())
        );
    }

    #[test]
    fn case_insensitive_folds_beyond_ascii() {
        let g = NameGlob::new("résumé*.DOC".as_bytes(), true).unwrap();
        assert!(g.matches("RÉSUMÉ 1998.doc".as_bytes()));
        assert!(!glob("résumé*.DOC".as_bytes()).matches("RÉSUMÉ 1998.doc".as_bytes()));
        let g = NameGlob::new(b"[a-c]*", true).unwrap();
        assert!(g.matches(b"Beta") && !g.matches(b"Delta"));
    }

    #[test]
    fn the_name_is_the_last_component() {
        assert_eq!(name_of(b"a/b/c.txt"), b"c.txt");
        assert_eq!(name_of(b"top"), b"top");
        assert_eq!(name_of(b"dir/"), b"");
    }
}
