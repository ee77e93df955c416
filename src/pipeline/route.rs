//! API matching: the first thing the pipeline does with a request, in both modes.
//!
//! An [`ApiTable`] is built once from the API definitions and swapped whole on reload:
//! per exact hostname and for `*`, a tree of base-path segments, so a lookup costs one hash
//! probe per path segment whatever the number of APIs.
//! A request matches by hostname (an exact name, port ignored, or `*`) and then by the
//! longest base path that is a prefix of the request path on segment boundaries: `/api`
//! matches `/api` and `/api/x`, never `/apix`. Empty segments are ignored on both sides,
//! so `//api//x` matches `/api`. At equal length an exact hostname beats `*`.
//!
//! A host with no API of its own and no `*` API is an unknown hostname; a known host whose
//! paths do not match is an unknown API. The caller turns either into ASE's 503.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use crate::backend::Server;
use crate::config::api::strip_port;
use crate::config::{ApiDef, HostMatch};
use arc_swap::ArcSwap;

use crate::enforce::{self, ApiRef, detect::ApiDetect, flow::ApiFlow};
use crate::metrics::prom::ApiProm;
use crate::metrics::{ApiRecorder, Handles, Metrics};

/// An origin-form path without dot segments, raw or percent-encoded: `..` must never reach
/// API matching, where it could climb out of one API's base path into another's.
pub fn well_formed_path(path: &str) -> bool {
    path.starts_with('/') && !path.as_bytes().split(|b| *b == b'/').any(is_dot_segment)
}

/// `.` or `..`, each dot also as `%2e` or `%2E`.
fn is_dot_segment(seg: &[u8]) -> bool {
    // A dot segment is at most six bytes (`%2e%2e`): longer ones are names.
    if seg.is_empty() || seg.len() > 6 {
        return false;
    }
    let mut dots = 0;
    let mut rest = seg;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots <= 2
}

/// Why no API matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("unknown hostname")]
    UnknownHostname,
    #[error("unknown API")]
    UnknownApi,
}

/// What building an API's runtime state needs: the components its handles point into.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub metrics: &'a Metrics,
    pub enforce: &'a enforce::Config,
}

/// An API definition with its runtime state.
#[derive(Debug)]
pub struct Api {
    pub def: ApiDef,
    pub servers: Vec<Arc<Server>>,
    /// Where this API's exchanges are recorded (kept across reloads).
    pub recorder: Arc<ApiRecorder>,
    /// Flow-control state (client and server limits, connection quotas).
    pub flow: ApiFlow,
    /// Real-time detection state.
    pub detect: ApiDetect,
    /// Prometheus handles, resolved once.
    pub prom: ApiProm,
    /// Base path split into segments (empty for `/`).
    segments: Vec<String>,
    next: AtomicUsize,
}

impl Api {
    pub fn new(def: ApiDef, ctx: &Context<'_>) -> Api {
        let servers = def
            .servers
            .iter()
            .map(|s| Arc::new(Server::new(&s.host, s.port)))
            .collect();
        let segments = def
            .url
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Api {
            recorder: ctx.metrics.recorder(&def),
            flow: ApiFlow::new(
                &def,
                ctx.enforce.flow_max_clients,
                ctx.enforce.connection_queue_timeout,
            ),
            detect: ApiDetect::new(ctx.enforce.detection_memory.clone()),
            prom: ctx.metrics.prom.api(&def.id),
            def,
            servers,
            segments,
            next: AtomicUsize::new(0),
        }
    }

    pub fn id(&self) -> &str {
        &self.def.id
    }

    /// This API as enforcement sees it.
    pub fn enforced(&self) -> ApiRef<'_> {
        ApiRef {
            def: &self.def,
            flow: &self.flow,
            detect: &self.detect,
        }
    }

    /// This API's handles into the metrics, for the sink.
    pub fn handles(&self) -> Handles<'_> {
        Handles {
            def: &self.def,
            recorder: &self.recorder,
            prom: &self.prom,
        }
    }

    /// The healthy servers in round-robin order (each request starts one further along),
    /// with their index in `servers`. Empty when every server is out.
    pub fn candidates(&self) -> Vec<(usize, Arc<Server>)> {
        let n = self.servers.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| start.wrapping_add(i) % n)
            .filter(|&i| self.servers[i].is_healthy())
            .map(|i| (i, self.servers[i].clone()))
            .collect()
    }

    /// `path` with this API's base path replaced by `api_mapping.internal_url`, if set.
    pub fn rewrite_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        let Some(internal) = &self.def.internal_url else {
            return path.into();
        };
        let mut rest = path;
        for seg in &self.segments {
            rest = rest.trim_start_matches('/');
            rest = rest.strip_prefix(seg.as_str()).unwrap_or(rest);
        }
        let base = internal.trim_end_matches('/');
        if rest.is_empty() {
            if base.is_empty() {
                "/".into()
            } else {
                base.to_string().into()
            }
        } else {
            format!("{base}{rest}").into()
        }
    }
}

/// The base paths of one hostname group as a tree of segments: matching walks the request
/// path once, remembering the deepest API on the way, instead of testing every API.
#[derive(Debug, Default)]
struct PathTree {
    api: Option<Arc<Api>>,
    children: HashMap<Box<str>, PathTree, foldhash::fast::RandomState>,
}

impl PathTree {
    /// Adds `api` at its base path; the first API at a path keeps it (file-name order).
    fn insert(&mut self, api: Arc<Api>) {
        let mut node = self;
        for seg in &api.segments {
            node = node.children.entry(seg.as_str().into()).or_default();
        }
        if node.api.is_none() {
            node.api = Some(api);
        }
    }

    /// The API with the longest base path that `path` lies under, and that base path's
    /// depth in segments.
    fn find(&self, path: &str) -> Option<(&Arc<Api>, usize)> {
        let mut best = self.api.as_ref().map(|a| (a, 0));
        let mut node = self;
        for (depth, seg) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
            match node.children.get(seg) {
                Some(next) => node = next,
                None => break,
            }
            if let Some(a) = &node.api {
                best = Some((a, depth + 1));
            }
        }
        best
    }
}

/// The API table in service, swapped whole when the definitions change: requests read it
/// with one atomic load; exchanges in flight keep the table they started with.
#[derive(Debug)]
pub struct Apis {
    table: ArcSwap<ApiTable>,
}

impl Apis {
    pub fn new(defs: Vec<ApiDef>, ctx: Context<'_>) -> Apis {
        Apis {
            table: ArcSwap::from_pointee(ApiTable::new(defs, &ctx)),
        }
    }

    /// The current table.
    pub fn load(&self) -> Arc<ApiTable> {
        self.table.load_full()
    }

    /// Matches a request to an API of the current table.
    pub fn route(&self, host: Option<&str>, path: &str) -> Result<Arc<Api>, RouteError> {
        self.table.load().route(host, path).cloned()
    }

    /// Swaps in a new set of API definitions. Every later request uses the new table.
    /// Recorders are kept by API id; flow-control and detection state start afresh.
    pub fn replace(&self, defs: Vec<ApiDef>, ctx: Context<'_>) -> Arc<ApiTable> {
        let table = Arc::new(ApiTable::new(defs, &ctx));
        self.table.store(table.clone());
        table
    }
}

/// All APIs, indexed for matching.
#[derive(Debug, Default)]
pub struct ApiTable {
    /// Exact hostnames → their APIs' base paths.
    by_host: HashMap<String, PathTree>,
    /// The `*` APIs' base paths.
    any: PathTree,
    any_count: usize,
    all: Vec<Arc<Api>>,
}

impl ApiTable {
    pub fn new(defs: Vec<ApiDef>, ctx: &Context<'_>) -> ApiTable {
        let mut table = ApiTable::default();
        for def in defs {
            let api = Arc::new(Api::new(def, ctx));
            match &api.def.hostname {
                HostMatch::Any => {
                    table.any.insert(api.clone());
                    table.any_count += 1;
                }
                HostMatch::Exact(h) => table
                    .by_host
                    .entry(h.clone())
                    .or_default()
                    .insert(api.clone()),
            }
            table.all.push(api);
        }
        table
    }

    /// Every API, in file-name order.
    pub fn all(&self) -> &[Arc<Api>] {
        &self.all
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Api>> {
        self.all.iter().find(|a| a.id() == id)
    }

    /// Matches a request's host (from `Host` or the URI authority; port ignored) and path.
    pub fn route(&self, host: Option<&str>, path: &str) -> Result<&Arc<Api>, RouteError> {
        let host = host.map(strip_port).unwrap_or_default();
        let exact = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_host.get(&host.to_ascii_lowercase())
        } else {
            self.by_host.get(host)
        };
        if exact.is_none() && self.any_count == 0 {
            return Err(RouteError::UnknownHostname);
        }
        let exact_hit = exact.and_then(|tree| tree.find(path));
        let any_hit = self.any.find(path);
        match (exact_hit, any_hit) {
            (Some((_, e)), Some((a, depth))) if depth > e => Ok(a),
            (Some((e, _)), _) => Ok(e),
            (None, Some((a, _))) => Ok(a),
            (None, None) => Err(RouteError::UnknownApi),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use std::path::Path;

    fn def(id: &str, host: &str, url: &str) -> ApiDef {
        let text = format!(
            r#"{{"api_metadata":{{"url":"{url}","hostname":"{host}","servers":[{{"host":"127.0.0.1","port":1}}]}}}}"#
        );
        ApiDef::parse(
            Path::new("t.json"),
            id,
            &text,
            Mode::Inline,
            &mut Vec::new(),
        )
        .unwrap()
    }

    fn table() -> ApiTable {
        ApiTable::new(
            vec![
                def("root", "*", "/"),
                def("api", "*", "/api"),
                def("v2", "*", "/api/v2"),
                def("shop", "shop.example.com", "/api"),
            ],
            &ctx(&metrics(), &cfg()),
        )
    }

    fn metrics() -> Metrics {
        Metrics::new(
            crate::metrics::Caps::default(),
            1 << 20,
            Default::default(),
            std::sync::Arc::new(crate::metrics::prom::Prom::new("inline").unwrap()),
        )
    }

    fn ctx<'a>(metrics: &'a Metrics, enforce: &'a enforce::Config) -> Context<'a> {
        Context { metrics, enforce }
    }

    fn cfg() -> enforce::Config {
        enforce::Config::from_settings(&crate::config::Settings::defaults(Path::new(".")))
    }

    fn route(t: &ApiTable, host: &str, path: &str) -> Result<String, RouteError> {
        t.route(Some(host), path).map(|a| a.id().to_string())
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = table();
        assert_eq!(route(&t, "x", "/api"), Ok("api".into()));
        assert_eq!(route(&t, "x", "/api/"), Ok("api".into()));
        assert_eq!(route(&t, "x", "/api/x"), Ok("api".into()));
        assert_eq!(route(&t, "x", "/api/v2/x"), Ok("v2".into()));
        assert_eq!(route(&t, "x", "/apix"), Ok("root".into()));
        assert_eq!(route(&t, "x", "//api//v2"), Ok("v2".into()));
    }

    #[test]
    fn exact_host_wins_ties_and_ignores_port_and_case() {
        let t = table();
        assert_eq!(
            route(&t, "shop.example.com:8443", "/api/a"),
            Ok("shop".into())
        );
        assert_eq!(route(&t, "SHOP.Example.com", "/api/a"), Ok("shop".into()));
        // A deeper `*` API still beats a shallower exact one.
        assert_eq!(route(&t, "shop.example.com", "/api/v2/a"), Ok("v2".into()));
    }

    #[test]
    fn unknown_host_and_unknown_api() {
        let t = ApiTable::new(
            vec![def("shop", "shop.example.com", "/api")],
            &ctx(&metrics(), &cfg()),
        );
        assert_eq!(
            route(&t, "other.example.com", "/api"),
            Err(RouteError::UnknownHostname)
        );
        assert_eq!(
            route(&t, "shop.example.com", "/apix"),
            Err(RouteError::UnknownApi)
        );
        assert_eq!(
            t.route(None, "/api").map(|_| ()),
            Err(RouteError::UnknownHostname)
        );
    }

    /// The rule the tree implements, written the slow and obvious way: among the APIs for
    /// the host (exact first) and `*`, the deepest base path that is a segment prefix;
    /// at equal depth exact beats `*`, then file order.
    fn naive(defs: &[(String, String, String)], host: &str, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let under = |url: &str| {
            let segs: Vec<&str> = url.split('/').filter(|s| !s.is_empty()).collect();
            (segs.len() <= parts.len() && segs[..] == parts[..segs.len()]).then_some(segs.len())
        };
        let mut best: Option<(usize, bool, &str)> = None;
        for (id, h, url) in defs {
            let exact = h == host;
            if !(exact || h == "*") {
                continue;
            }
            if let Some(depth) = under(url) {
                let better = match best {
                    None => true,
                    Some((d, e, _)) => depth > d || (depth == d && exact && !e),
                };
                if better {
                    best = Some((depth, exact, id));
                }
            }
        }
        best.map(|(_, _, id)| id.to_string())
    }

    proptest::proptest! {
        #[test]
        fn the_tree_routes_like_the_naive_rule(
            apis in proptest::collection::vec(
                (proptest::sample::select(vec!["*", "a.example", "b.example"]),
                 proptest::collection::vec(proptest::sample::select(vec!["x", "y", "z"]), 0..4)),
                1..12),
            host in proptest::sample::select(vec!["a.example", "b.example", "c.example"]),
            path in proptest::collection::vec(proptest::sample::select(vec!["x", "y", "z", ""]), 0..5),
        ) {
            let defs: Vec<(String, String, String)> = apis
                .iter()
                .enumerate()
                .map(|(i, (h, segs))| (format!("api{i:02}"), h.to_string(), format!("/{}", segs.join("/"))))
                .collect();
            let table = ApiTable::new(
                defs.iter().map(|(id, h, url)| def(id, h, url)).collect(),
                &ctx(&metrics(), &cfg()),
            );
            let path = format!("/{}", path.join("/"));
            let got = table.route(Some(host), &path).ok().map(|a| a.id().to_string());
            proptest::prop_assert_eq!(got, naive(&defs, host, &path), "{:?} {} {}", defs, host, path);
        }
    }

    #[test]
    fn internal_url_replaces_the_base_path() {
        let mut d = def("a", "*", "/shop");
        d.internal_url = Some("/internal/v1".into());
        let api = Api::new(d, &ctx(&metrics(), &cfg()));
        assert_eq!(api.rewrite_path("/shop/items/1"), "/internal/v1/items/1");
        assert_eq!(api.rewrite_path("/shop"), "/internal/v1");
        let mut d = def("b", "*", "/shop");
        d.internal_url = Some("/".into());
        assert_eq!(
            Api::new(d, &ctx(&metrics(), &cfg())).rewrite_path("/shop/x"),
            "/x"
        );
    }

    #[test]
    fn round_robin_skips_unhealthy_servers() {
        let text = r#"{"api_metadata":{"url":"/","hostname":"*","servers":[
            {"host":"a","port":1},{"host":"b","port":2},{"host":"c","port":3}]}}"#;
        let d = ApiDef::parse(
            Path::new("t.json"),
            "rr",
            text,
            Mode::Inline,
            &mut Vec::new(),
        )
        .unwrap();
        let api = Api::new(d, &ctx(&metrics(), &cfg()));
        let pick = |api: &Api| api.candidates().first().map(|(_, s)| s.addr.to_string());
        let picks: Vec<_> = (0..3).map(|_| pick(&api).unwrap()).collect();
        assert_eq!(picks, ["a:1", "b:2", "c:3"]);
        assert!(!api.servers[1].check_failed(2));
        assert!(api.servers[1].check_failed(2));
        let picks: Vec<_> = (0..4).map(|_| pick(&api).unwrap()).collect();
        assert!(picks.iter().all(|p| p != "b:2"), "{picks:?}");
        for s in &api.servers {
            s.check_failed(1);
        }
        assert!(pick(&api).is_none());
        assert!(api.servers[0].check_passed());
        assert_eq!(pick(&api).unwrap(), "a:1");
    }
}
