//! One thing wrong with a row.

use std::fmt;

/// One thing wrong with a row: which field, what kind of problem (the same
/// words on every row with it, so the dry-run report can group them), and
/// what exactly is wrong here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The column, or empty for a problem of the whole row.
    pub field: String,
    /// The same words for every row with this kind of problem, for grouping.
    pub kind: &'static str,
    /// What is wrong in this row.
    pub message: String,
}

impl Problem {
    /// A problem of the whole row, until [`Problem::in_field`] names its field.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Problem {
            field: String::new(),
            kind,
            message: message.into(),
        }
    }

    /// The same problem, found in `field`.
    pub fn in_field(self, field: impl fmt::Display) -> Self {
        Problem {
            field: field.to_string(),
            ..self
        }
    }

    /// `to: too short`, the label the dry-run report groups by.
    pub fn label(&self) -> String {
        if self.field.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}: {}", self.field, self.kind)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}
