//! The operator's error type, and how long to wait before retrying each kind.

use std::time::Duration;

use thiserror::Error;

/// Everything a reconcile can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// The API server refused or failed a request; usually transient.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A resource this one needs does not exist (yet): the Cooperative, a pool, ...
    #[error("missing {kind} {name:?} in namespace {namespace}")]
    Missing {
        /// The kind that is missing.
        kind: &'static str,
        /// Its name (empty when any of the kind would do).
        name: String,
        /// The namespace looked in.
        namespace: String,
    },
    /// The spec cannot be acted on until someone edits it.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A governance decision could not be made from the recorded state.
    #[error("tally: {0}")]
    Tally(#[from] synco_policies::TallyError),
    /// The allocation solver refused its input.
    #[error("allocation solver: {0}")]
    Solve(#[from] synco_policies::SolveError),
    /// A resource could not be (de)serialised.
    #[error("serialisation: {0}")]
    Serde(#[from] serde_json::Error),
    /// A resource came back from the API server without a field it always has.
    #[error("the API server returned a {0} without a name or namespace")]
    Unnamed(&'static str),
}

impl Error {
    /// A short, bounded label for the `error` label of the metrics.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(_) => "kube",
            Error::Missing { .. } => "missing_reference",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Tally(_) => "tally",
            Error::Solve(_) => "solve",
            Error::Serde(_) => "serde",
            Error::Unnamed(_) => "unnamed",
        }
    }

    /// How long to wait before trying again. A conflict or a transient API error is
    /// retried soon; a missing reference after a while (a watch usually brings it
    /// sooner); a bad spec or bad input only after a long time, since an edit triggers
    /// a new reconcile anyway.
    #[must_use]
    pub fn requeue_after(&self) -> Duration {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => Duration::from_millis(200),
            Error::Kube(_) => Duration::from_secs(2),
            Error::Missing { .. } => Duration::from_secs(10),
            Error::InvalidSpec(_) | Error::Tally(_) | Error::Solve(_) => Duration::from_secs(300),
            Error::Serde(_) | Error::Unnamed(_) => Duration::from_secs(60),
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_specs_wait_longer_than_missing_references() {
        let invalid = Error::InvalidSpec("x".into());
        let missing = Error::Missing {
            kind: "ComputePool",
            name: "gpus".into(),
            namespace: "ns".into(),
        };
        assert!(invalid.requeue_after() > missing.requeue_after());
        assert_eq!(invalid.metric_label(), "invalid_spec");
        assert_eq!(missing.metric_label(), "missing_reference");
    }
}
