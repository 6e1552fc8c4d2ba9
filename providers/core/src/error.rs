//! Provider errors and their classification.

use std::time::Duration;

use crate::Observed;

/// How the engine should react to a failed provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// May succeed if retried soon (network blip, throttling).
    Transient,
    /// The remote side is not ready yet; try again after the given time.
    Waiting {
        /// How long to wait before the next attempt.
        after: Duration,
    },
    /// Retrying will not help until the config changes (bad input, permission denied).
    Terminal,
    /// The config asks for something that contradicts itself on the target (two resources that
    /// are one object there), or the target holds what another owner manages: a plan error, not
    /// a failure to observe.
    Conflict,
    /// The credentials were refused (a login, an API key, a host key).
    Unauthorized,
    /// Something the change needs does not exist (an image, a parent object).
    NotFound,
}

impl ErrorKind {
    /// The name used in JSON plans, `/status` (`last_error.kind`) and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Waiting { .. } => "waiting",
            Self::Terminal => "terminal",
            Self::Conflict => "conflict",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
        }
    }

    /// Whether trying again soon, with nothing changed, may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, Self::Transient | Self::Waiting { .. })
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "transient" => Self::Transient,
            "waiting" => Self::Waiting { after: Duration::ZERO },
            "conflict" => Self::Conflict,
            "unauthorized" => Self::Unauthorized,
            "not_found" => Self::NotFound,
            _ => Self::Terminal,
        })
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// An error from a provider call, with the context a user needs to fix it.
///
/// The message describes this layer only (lowercase, no trailing period); the cause, if any, is
/// in `source` and printed by the CLI as a `Caused by:` chain.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// Retry classification.
    pub kind: ErrorKind,
    /// What went wrong, naming the path, host or API call.
    pub message: String,
    /// What a user can do about it, if known.
    pub hint: Option<String>,
    /// What exists now, if the call failed after creating something (recorded as tainted).
    /// Boxed: it is rare, and a read result is as large as its error.
    pub partial: Option<Box<Observed>>,
    /// The underlying cause.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ProviderError {
    /// A terminal error with a message.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Terminal, message: message.into(), hint: None, partial: None, source: None }
    }

    /// A transient error with a message.
    pub fn transient(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Transient, ..Self::terminal(message) }
    }

    /// A conflict between resources found on the target (see [`ErrorKind::Conflict`]).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Conflict, ..Self::terminal(message) }
    }

    /// Refused credentials (see [`ErrorKind::Unauthorized`]).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Unauthorized, ..Self::terminal(message) }
    }

    /// Something needed is missing (see [`ErrorKind::NotFound`]).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::NotFound, ..Self::terminal(message) }
    }

    /// Not ready yet; worth another try after `after`.
    pub fn waiting(message: impl Into<String>, after: Duration) -> Self {
        Self { kind: ErrorKind::Waiting { after }, ..Self::terminal(message) }
    }

    /// The same error with another kind.
    #[must_use]
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Attach the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Attach a hint for the user.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        // An empty hint (a command that printed nothing) is no hint.
        let hint = hint.into();
        self.hint = (!hint.trim().is_empty()).then_some(hint);
        self
    }
}

impl From<crate::JailError> for ProviderError {
    fn from(e: crate::JailError) -> Self {
        let hint = e.hint();
        Self::terminal(e.to_string()).with_hint(hint)
    }
}
