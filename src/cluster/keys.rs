//! The cluster's Redis key names, all under `enforcer:{<cluster_id>}` (the braces make
//! every key hash to one Redis Cluster slot, so a commit can be one `MULTI`).
//!
//! Where it sits: the bottom of `cluster/`; every file that talks to Redis names its keys
//! here, so the layout in [`super::store`]'s table is spelled in one place.

/// The cluster's Redis keys.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(cluster_id: &str) -> Keys {
        Keys {
            prefix: format!("enforcer:{{{cluster_id}}}"),
        }
    }
    pub fn lists(&self) -> String {
        format!("{}:lists", self.prefix)
    }
    pub fn meta(&self) -> String {
        format!("{}:meta", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    /// Set when a node has written its whole state: its absence means Redis lost (some
    /// of) what that node wrote, so it must write everything again before merging.
    pub fn marker(&self, node: &str) -> String {
        format!("{}:marker:{node}", self.prefix)
    }
    pub fn apis(&self) -> String {
        format!("{}:apis", self.prefix)
    }
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }
    pub fn bucket_apis(&self, node: &str) -> String {
        format!("{}:bapis:{node}", self.prefix)
    }
    pub fn buckets(&self, node: &str, api: &str) -> String {
        format!("{}:b:{node}:{api}", self.prefix)
    }
    pub fn spike(&self, what: &str) -> String {
        format!("{}:spike:{what}", self.prefix)
    }
}
