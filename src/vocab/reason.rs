//! [`Reason`]: why enforcer stopped (or, with blocking off, would have stopped) a request.
//!
//! The one list of reasons: the Prometheus `reason` label, the verdict recorded with an
//! exchange and the tables in the docs all come from [`Reason::ALL`] and [`Reason::as_str`],
//! so a reason cannot be counted under a misspelt name.

/// Why a request was stopped. The order is the order of the Prometheus label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// An identifier of the client is on the deny list.
    DenyList,
    /// The client touched a decoy earlier and then called a real API.
    DecoyFollower,
    /// No OAuth token where the API makes one mandatory.
    MissingToken,
    /// The request was for a decoy path (answered with the decoy's response).
    Decoy,
    /// An API pattern rule (method, content type) was broken.
    Pattern,
    /// The API's protocol rule sends the client elsewhere (http → https).
    Redirect,
    /// A flow-control limit (client or server spike threshold, connection quota).
    FlowControl,
    /// An identifier given twice with different values (a deny-list bypass attempt).
    Ambiguous,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::DenyList,
        Reason::DecoyFollower,
        Reason::MissingToken,
        Reason::Decoy,
        Reason::Pattern,
        Reason::Redirect,
        Reason::FlowControl,
        Reason::Ambiguous,
    ];

    /// The stable name (Prometheus label, logs, records).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::DenyList => "deny_list",
            Reason::DecoyFollower => "decoy_follower",
            Reason::MissingToken => "missing_token",
            Reason::Decoy => "decoy",
            Reason::Pattern => "pattern",
            Reason::Redirect => "redirect",
            Reason::FlowControl => "flow_control",
            Reason::Ambiguous => "ambiguous",
        }
    }

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_in_order() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
