//! [`Mode`]: where enforcer sits relative to the API traffic, inline or sideband.

/// Where enforcer sits relative to the API traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reverse proxy in front of the backends.
    Inline,
    /// Decision service called by an API gateway.
    Sideband,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
            Mode::Sideband => "sideband",
        }
    }
}
