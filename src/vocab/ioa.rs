//! [`Ioa`]: the Indicators of Attack real-time detection and the request phase raise, with
//! ASE's attack type ids and the stable names reports and Prometheus use.

use serde::Serialize;

/// An Indicator of Attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ioa {
    DataExfiltration,
    LoginAttack,
    MultiClientLoginAttack,
    StolenToken,
    StolenCookie,
    ApiProbing,
    ExtremeClientActivity,
    StolenApiKey,
    /// Type 101: a protocol, method or content-type rule broken.
    PatternViolation,
    /// Type 101: a decoy path touched.
    DecoyAccess,
    /// Type 101: no token on an API where it is mandatory.
    MissingToken,
}

impl Ioa {
    pub const ALL: [Ioa; 11] = [
        Ioa::DataExfiltration,
        Ioa::LoginAttack,
        Ioa::MultiClientLoginAttack,
        Ioa::StolenToken,
        Ioa::StolenCookie,
        Ioa::ApiProbing,
        Ioa::ExtremeClientActivity,
        Ioa::StolenApiKey,
        Ioa::PatternViolation,
        Ioa::DecoyAccess,
        Ioa::MissingToken,
    ];

    /// Position in [`Ioa::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// ASE's attack type id.
    pub fn type_id(self) -> u16 {
        match self {
            Ioa::DataExfiltration => 1,
            Ioa::LoginAttack => 2,
            Ioa::MultiClientLoginAttack => 3,
            Ioa::StolenToken | Ioa::StolenCookie => 4,
            Ioa::ApiProbing => 8,
            Ioa::ExtremeClientActivity => 10,
            Ioa::StolenApiKey => 31,
            Ioa::PatternViolation | Ioa::DecoyAccess | Ioa::MissingToken => 101,
        }
    }

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Ioa::DataExfiltration => "data_exfiltration",
            Ioa::LoginAttack => "login_attack",
            Ioa::MultiClientLoginAttack => "multi_client_login_attack",
            Ioa::StolenToken => "stolen_token",
            Ioa::StolenCookie => "stolen_cookie",
            Ioa::ApiProbing => "api_probing",
            Ioa::ExtremeClientActivity => "extreme_client_activity",
            Ioa::StolenApiKey => "stolen_api_key",
            Ioa::PatternViolation => "pattern_violation",
            Ioa::DecoyAccess => "decoy_access",
            Ioa::MissingToken => "missing_token",
        }
    }
}

/// One raised IoA: which API, what, against which client identifier, when and why.
#[derive(Debug, Clone, PartialEq)]
pub struct IoaRecord {
    pub api: std::sync::Arc<str>,
    pub ioa: Ioa,
    pub client: super::client::ClientId,
    /// Unix seconds.
    pub at: i64,
    /// Unix milliseconds (when exactly: benchmarks count the requests before it).
    pub at_ms: i64,
    pub detail: String,
    /// Whether its identifier was deny-listed.
    pub deny_listed: bool,
}
