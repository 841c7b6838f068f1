//! Label and field selectors, parsed as the API server parses them.
//!
//! Labels: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, joined by commas.
//! Fields: `path=value`, `path==value`, `path!=value` over dotted paths of the object
//! (`metadata.name`, `metadata.namespace`, and the selectable fields of a CRD).

use serde_json::Value;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// Why a selector is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {0:?}")]
pub struct SelectorError(pub String);

/// Splits on commas outside parentheses.
fn terms(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0_i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn set(values: &str) -> Option<Vec<String>> {
    let inner = values.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    /// Parses a label selector.
    pub fn labels(text: &str) -> Result<Self, SelectorError> {
        let bad = || SelectorError(text.to_owned());
        let mut out = Vec::new();
        for term in terms(text) {
            let requirement = if let Some((key, values)) = term.split_once(" notin ") {
                Requirement::NotIn(key.trim().to_owned(), set(values).ok_or_else(bad)?)
            } else if let Some((key, values)) = term.split_once(" in ") {
                Requirement::In(key.trim().to_owned(), set(values).ok_or_else(bad)?)
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_owned())
            } else if term
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(term.to_owned())
            } else {
                return Err(bad());
            };
            out.push(requirement);
        }
        Ok(Self(out))
    }

    /// Parses a field selector (equality and inequality only, as the API server allows).
    pub fn fields(text: &str) -> Result<Self, SelectorError> {
        let mut out = Vec::new();
        for term in terms(text) {
            let requirement = if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else {
                return Err(SelectorError(text.to_owned()));
            };
            out.push(requirement);
        }
        Ok(Self(out))
    }

    /// The field paths a field selector uses.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|r| match r {
            Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::NotExists(k) => k.as_str(),
        })
    }

    /// Whether a label map satisfies the selector.
    pub fn matches_labels(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.matches(get)
    }

    /// Whether the object's fields satisfy the selector.
    pub fn matches_fields(&self, object: &Value) -> bool {
        let get = |path: &str| {
            let pointer = format!("/{}", path.replace('.', "/"));
            object.pointer(&pointer).and_then(|v| match v {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            })
        };
        self.matches(get)
    }

    fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_of_every_form() {
        let object = json!({"metadata": {"labels": {"app": "ntt", "tier": "agent"}}});
        let yes = [
            "",
            "app=ntt",
            "app==ntt",
            "app!=other",
            "tier in (agent, controller)",
            "tier notin (db)",
            "app",
            "!missing",
            "app=ntt,tier in (agent)",
        ];
        for text in yes {
            assert!(
                Selector::labels(text).unwrap().matches_labels(&object),
                "{text}"
            );
        }
        let no = [
            "app=x",
            "tier notin (agent)",
            "missing",
            "!app",
            "app=ntt,tier=db",
        ];
        for text in no {
            assert!(
                !Selector::labels(text).unwrap().matches_labels(&object),
                "{text}"
            );
        }
        assert!(Selector::labels("a in x").is_err());
    }

    #[test]
    fn field_selectors_follow_dotted_paths() {
        let object = json!({"metadata": {"name": "j"}, "spec": {"nodeName": "dock-1"}});
        assert!(
            Selector::fields("spec.nodeName=dock-1")
                .unwrap()
                .matches_fields(&object)
        );
        assert!(
            !Selector::fields("spec.nodeName=dock-2")
                .unwrap()
                .matches_fields(&object)
        );
        assert!(
            Selector::fields("metadata.name!=x")
                .unwrap()
                .matches_fields(&object)
        );
        assert!(Selector::fields("spec.nodeName in (a)").is_err());
    }
}
