//! Two small helpers for errors, used by every layer: [`Chain`] shows an error with its sources
//! (`outer: cause: root cause`) for a log line, and [`CanFail`] is how an error that is ignored
//! on purpose still gets a log line, instead of vanishing in a bare `let _ =`.

use std::error::Error;
use std::fmt;

/// An error and its sources, joined with `: `. A source whose message the text so far already
/// holds is left out: many errors repeat their source's message in their own.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let message = cause.to_string();
            if !message.is_empty() && !shown.contains(&message) {
                shown.push_str(": ");
                shown.push_str(&message);
            }
            source = cause.source();
        }
        f.write_str(&shown)
    }
}

/// For results whose failure is acceptable: `result.can_fail("Why it does not matter.")` logs
/// the error, with its chain, at `warn` and goes on. `why` is the log message: a capitalised
/// sentence saying what failed and why going on is fine.
pub trait CanFail {
    fn can_fail(self, why: &str);
}

impl<T, E: Error + 'static> CanFail for Result<T, E> {
    fn can_fail(self, why: &str) {
        if let Err(error) = self {
            tracing::warn!(error = %Chain(&error), "{why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot load the flows")]
        Load(#[source] Middle),
    }

    #[derive(Debug, thiserror::Error)]
    enum Middle {
        /// Repeats its source's message, as many errors do.
        #[error("flows: {0}")]
        Io(#[source] std::io::Error),
    }

    #[test]
    fn the_chain_shows_each_source_once() {
        let root = std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder");
        let error = Outer::Load(Middle::Io(root));
        assert_eq!(
            Chain(&error).to_string(),
            "cannot load the flows: flows: no such folder"
        );
    }

    #[test]
    fn an_ignored_success_is_quiet() {
        Ok::<(), std::io::Error>(()).can_fail("Nothing to say.");
        Err::<(), _>(std::io::Error::other("gone")).can_fail("Going on without it.");
    }
}
