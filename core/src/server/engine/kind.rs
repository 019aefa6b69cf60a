//! Which engine the loop runs on, as asked for (`--engine`): parsing and
//! naming only.

use std::fmt;
use std::str::FromStr;

/// The engine asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// io_uring where the kernel allows it (Linux), else epoll/kqueue; a
    /// refusal is logged once.
    #[default]
    Auto,
    /// io_uring or nothing: the server fails to start if it is refused.
    Uring,
    /// The readiness loop (epoll on Linux, kqueue on the BSDs and macOS).
    Epoll,
}

/// The environment variable that picks the engine when `--engine` is not
/// given, so that a whole test suite can run under each engine.
pub const ENGINE_ENV: &str = "SENDFILED_ENGINE";

impl EngineKind {
    /// The value of [`ENGINE_ENV`], or `Auto` when it is unset or empty.
    pub fn from_env() -> Result<EngineKind, String> {
        match std::env::var(ENGINE_ENV) {
            Ok(v) if !v.is_empty() => v.parse(),
            _ => Ok(EngineKind::Auto),
        }
    }
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(EngineKind::Auto),
            "uring" | "io_uring" => Ok(EngineKind::Uring),
            "epoll" | "kqueue" => Ok(EngineKind::Epoll),
            other => Err(format!(
                "unknown engine {other:?} (expected auto, uring or epoll)"
            )),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Auto => "auto",
            EngineKind::Uring => "uring",
            EngineKind::Epoll => "epoll",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for k in [EngineKind::Auto, EngineKind::Uring, EngineKind::Epoll] {
            assert_eq!(k.to_string().parse::<EngineKind>(), Ok(k));
        }
        assert_eq!("io_uring".parse(), Ok(EngineKind::Uring));
        assert_eq!("kqueue".parse(), Ok(EngineKind::Epoll));
        assert!("select".parse::<EngineKind>().is_err());
    }
}
