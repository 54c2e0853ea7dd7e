//! Diagnostics: one problem found in a flow, with where it is (the place in the flow, like
//! `steps[2].http`, and the line and column in the source) and a sentence a person understands.

use std::fmt;

use serde::Serialize;
use utoipa::ToSchema;

/// A 1-based line and column in a source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A step along a path into a flow: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Where in a flow something is, displayed as `steps[2].http.url`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowPath(pub Vec<Seg>);

impl FlowPath {
    pub fn root() -> FlowPath {
        FlowPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> FlowPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        FlowPath(segs)
    }

    pub fn index(&self, index: usize) -> FlowPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        FlowPath(segs)
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FlowPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for FlowPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One problem (or warning) in a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The place in the flow, e.g. `steps[2].http`; empty for the flow as a whole.
    #[schema(value_type = String, example = "steps[2].http")]
    pub path: FlowPath,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn error(path: FlowPath, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            path,
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }

    pub fn warning(path: FlowPath, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, pos, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }
}

/// `steps[2].http: unknown key ...`, or just the message at the root; warnings say so.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if self.path.is_root() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The closest candidate to `word` when it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars; inputs here are short names, so the quadratic cost is fine.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_like_the_flow() {
        let p = FlowPath::root()
            .key("steps")
            .index(2)
            .key("http")
            .key("url");
        assert_eq!(p.to_string(), "steps[2].http.url");
    }

    #[test]
    fn suggests_close_names_only() {
        let keys = ["method", "url", "headers"];
        assert_eq!(suggest("methd", keys), Some("method"));
        assert_eq!(suggest("URL", keys), Some("url"));
        assert_eq!(suggest("banana", keys), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
