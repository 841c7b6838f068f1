//! Ignore patterns: regular expressions over path bytes. A matching path is loaded and marked
//! excluded with the pattern as its reason, never dropped, so it can be reviewed and included.
//!
//! Rules: patterns match anywhere in the path (relative to the volume root, without a leading
//! `/`), byte-wise (`.` matches any byte, so invalid UTF-8 never stops a match); the first
//! matching pattern names the reason. Site defaults apply to every medium, a medium's own patterns
//! to it alone, and presets only when named.

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// Not a valid regular expression.
    #[error("ignore pattern {pattern:?} is not a valid regular expression: {reason}")]
    Invalid {
        /// The pattern.
        pattern: String,
        /// What the parser said.
        reason: String,
    },
    /// No preset has this name.
    #[error("no ignore preset is called {name:?} (presets: {known})")]
    UnknownPreset {
        /// The name given.
        name: String,
        /// The presets there are.
        known: String,
    },
}

/// Where a pattern comes from, for the exclusion reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A site default (every medium).
    Site,
    /// The medium's own.
    Medium,
    /// A named preset.
    Preset(&'static str),
}

/// One pattern with its origin.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The expression as given.
    pub text: String,
    /// Where it comes from.
    pub origin: Origin,
}

/// The predecessor's list (45 POSIX EREs matched anywhere in the path), without its hard-coded
/// `#`, which excluded every path holding that character. Off unless asked for by name.
pub const PREDECESSOR: &[&str] = &[
    r"\.cache/",
    r"\.npm/",
    r"\.conda/",
    r"\.keras/",
    r"\.ollama/",
    r"/node_modules/",
    r"__pycache__/",
    r"/target/",
    r"/dist/",
    r"/build/",
    r"\.venv/",
    r"\.egg-info/",
    r"\.rustup/",
    r"\.cargo/registry/",
    r"\.TinyTeX/",
    r"\.julia/packages/",
    r"\.vscode-server/",
    r"\.vscode/extensions/",
    r"/Trash/",
    r"\.Spotlight-V100/",
    r"\.Trash/",
    r"/temp/",
    r"\.tmp/",
    r"core\.[0-9]+$",
    r"\.bash_history$",
    r"\.zsh_history$",
    r"\.python_history$",
    r"\.iso$",
    r"\.vmdk$",
    r"\.qcow2?$",
    r"\.vdi$",
    r"\.vhd$",
    r"\.ova$",
    r"\.ovf$",
    r"/anaconda[0-9]*/",
    r"/anaconda/",
    r"/miniconda[0-9]*/",
    r"/miniconda/",
    r"/conda/pkgs/",
    r"/conda/envs/",
    r"Library/Developer",
    r"\\left-\\right",
    r"/\\n\.plist",
    r"\\newenvironment\{",
    r"share/doc/pandas",
];

/// The named presets.
pub const PRESETS: &[(&str, &[&str])] = &[("predecessor", PREDECESSOR)];

/// The patterns of a preset.
pub fn preset(name: &str) -> Result<Vec<Pattern>, PatternError> {
    let (name, list) =
        PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| PatternError::UnknownPreset {
                name: name.to_owned(),
                known: PRESETS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
    Ok(list
        .iter()
        .map(|p| Pattern {
            text: (*p).to_owned(),
            origin: Origin::Preset(name),
        })
        .collect())
}

fn build(pattern: &str) -> Result<Regex, PatternError> {
    // unicode(false): `.` and classes match bytes, so names in any encoding can match.
    RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .map_err(|e| PatternError::Invalid {
            pattern: pattern.to_owned(),
            reason: e.to_string(),
        })
}

/// Checks a pattern before it is stored.
pub fn validate(pattern: &str) -> Result<(), PatternError> {
    build(pattern).map(drop)
}

/// A compiled set of patterns.
#[derive(Debug, Clone)]
pub struct IgnoreSet {
    patterns: Vec<Pattern>,
    set: RegexSet,
}

impl IgnoreSet {
    /// Compiles the patterns; an invalid one is an error naming it.
    pub fn new(patterns: Vec<Pattern>) -> Result<Self, PatternError> {
        for pattern in &patterns {
            validate(&pattern.text)?;
        }
        let set = RegexSetBuilder::new(patterns.iter().map(|p| p.text.as_str()))
            .unicode(false)
            .build()
            .map_err(|e| PatternError::Invalid {
                pattern: "(the set)".to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self { patterns, set })
    }

    /// No patterns.
    pub fn empty() -> Self {
        Self {
            patterns: Vec::new(),
            set: RegexSet::empty(),
        }
    }

    /// The patterns.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Why `path` is excluded, or `None` when no pattern matches.
    pub fn reason(&self, path: &[u8]) -> Option<String> {
        // Most paths match nothing: answer that with the cheaper search that stops at the
        // first match before asking which pattern matched first.
        if !self.set.is_match(path) {
            return None;
        }
        let first = self.set.matches(path).into_iter().next()?;
        let pattern = &self.patterns[first];
        let origin = match &pattern.origin {
            Origin::Site => "site default".to_owned(),
            Origin::Medium => "medium".to_owned(),
            Origin::Preset(name) => format!("preset {name}"),
        };
        Some(format!("ignore pattern {} ({origin})", pattern.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[(&str, Origin)]) -> IgnoreSet {
        IgnoreSet::new(
            patterns
                .iter()
                .map(|(text, origin)| Pattern {
                    text: (*text).to_owned(),
                    origin: origin.clone(),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn the_first_matching_pattern_is_the_reason() {
        let ignore = set(&[(r"\.tmp$", Origin::Site), (r"^cache/", Origin::Medium)]);
        assert_eq!(
            ignore.reason(b"cache/x.tmp").as_deref(),
            Some(r"ignore pattern \.tmp$ (site default)")
        );
        assert_eq!(
            ignore.reason(b"cache/x").as_deref(),
            Some("ignore pattern ^cache/ (medium)")
        );
        assert_eq!(ignore.reason(b"docs/cache/x"), None);
    }

    #[test]
    fn patterns_match_bytes_that_are_not_utf8() {
        let ignore = set(&[(r"caf.\.txt$", Origin::Medium), (r"\xff", Origin::Site)]);
        assert!(ignore.reason(b"dir/caf\xe9.txt").is_some());
        assert!(ignore.reason(b"a\xffb").is_some());
        assert!(ignore.reason(b"line\nbreak").is_none());
    }

    #[test]
    fn hash_signs_are_not_excluded_by_the_predecessor_preset() {
        let ignore = IgnoreSet::new(preset("predecessor").unwrap()).unwrap();
        assert_eq!(ignore.patterns().len(), 45);
        assert_eq!(ignore.reason(b"notes #1.txt"), None);
        assert_eq!(
            ignore.reason(b"home/u/.cache/x").as_deref(),
            Some(r"ignore pattern \.cache/ (preset predecessor)")
        );
        assert!(ignore.reason(b"Library/Developer/Xcode").is_some());
        assert!(ignore.reason(b"x/\\n.plist").is_some());
    }

    #[test]
    fn bad_patterns_and_presets_are_refused_by_name() {
        assert!(
            validate("(unclosed")
                .unwrap_err()
                .to_string()
                .contains("(unclosed")
        );
        assert!(
            preset("nope")
                .unwrap_err()
                .to_string()
                .contains("predecessor")
        );
        assert_eq!(IgnoreSet::empty().reason(b"anything"), None);
    }
}
