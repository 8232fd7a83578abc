//! The validated configuration: runtime-ready values (socket addresses,
//! durations, tier ids, key digests, parsed and self-tested keys, header names)
//! that components take as they are. Nothing here can be invalid; constructors
//! that take these values cannot fail on config content.
//!
//! The small enums below are plain runtime values; they derive `Deserialize` only
//! so that the serde mirror (`schema`) can name them without a copy.

use super::verify_key::VerifyKey;
use crate::vocab::client_addr::TrustedProxies;
use crate::vocab::ids::{TierId, UpstreamId};
use http::{HeaderName, Method};
use pingora_core::server::configuration::ServerConf;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole validated configuration: Pingora's server keys and the gateway's.
pub struct Config {
    pub server: ServerConf,
    pub listen: Vec<Listener>,
    pub admin: Admin,
    pub client: ClientLimits,
    /// An upstream's id is its index here.
    pub upstreams: Vec<Upstream>,
    pub dns: Dns,
    /// A route's id is its index here.
    pub routes: Vec<Route>,
    pub auth: Option<Auth>,
    /// Tier names and buckets; a tier's id is its index here.
    pub tiers: Vec<Tier>,
    /// Bucket for callers without credentials, keyed by client address; none = unlimited.
    pub anonymous: Option<Bucket>,
    pub trusted_proxies: TrustedProxies,
    pub redis: Option<Redis>,
    pub access_log: AccessLogTarget,
    /// Where a single instance (no `redis`) keeps its runtime consumers.
    pub state_file: Option<PathBuf>,
    /// OpenTelemetry spans exported over OTLP; none = traceparent passed through untouched.
    pub tracing: Option<Tracing>,
}

impl Config {
    pub fn tier_names(&self) -> Vec<String> {
        self.tiers.iter().map(|t| t.name.clone()).collect()
    }
}

pub struct Admin {
    pub listen: SocketAddr,
    /// Bearer token for admin writes; absent, writes are refused.
    pub token: Option<String>,
    /// `/admin/stats` and `/admin/circuit-breakers` readable without the token.
    pub public_stats: bool,
}

/// Limits on what a client may send and how long it may take.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Time allowed for a request head to arrive whole, from its first byte (from
    /// the accept, for a connection's first head).
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection is kept open (Pingora counts seconds).
    pub keepalive_timeout_s: u64,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// A write to a client that makes no progress for this long ends the connection.
    pub send_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: Option<u32>,
    /// Bytes per second below which a response is cut (HTTP/1.1 per write, HTTP/2 per chunk).
    pub min_send_rate_bps: Option<u64>,
    /// Bytes per second below which a request body is answered 408.
    pub min_receive_rate_bps: Option<u64>,
}

/// `tracing`: spans for every request, sampled and exported over OTLP.
#[derive(Debug, Clone)]
pub struct Tracing {
    /// Where spans go: `<endpoint>/v1/traces` over HTTP, the endpoint itself over gRPC.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Sent with every export (HTTP headers or gRPC metadata).
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub tls: Option<OtlpTls>,
    pub service_name: String,
    /// Share of new traces recorded, 0..=1.
    pub sample_ratio: f64,
    /// Follow an incoming traceparent's sampled flag.
    pub parent_based: bool,
    /// Spans waiting for export; beyond it they are dropped and counted.
    pub max_queue: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    Grpc,
}

/// The collector's TLS, as PEM read and checked at load.
#[derive(Debug, Clone, Default)]
pub struct OtlpTls {
    /// Trust only these CAs; `None`: the bundled web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its key.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where access-log lines go: `stdout` (default), `off`, or a file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
    File(PathBuf),
}

/// A token bucket: `rate` tokens per second, `burst` tokens at most.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub rate: f64,
    pub burst: f64,
}

impl Bucket {
    /// Seconds for an empty bucket to fill: the `w` of RateLimit-Policy.
    pub fn window_s(&self) -> u64 {
        (self.burst / self.rate).ceil() as u64
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub name: String,
    pub bucket: Bucket,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    #[default]
    Http,
    /// Served in-process on a loopback port.
    Echo,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Random,
    ConsistentHash,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    Http,
    Tcp,
}

#[derive(Clone, Debug)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub path: http::Uri,
    /// Host header of the probe; the first target as configured when absent.
    pub host: Option<String>,
    pub interval: Duration,
    pub consecutive_success: usize,
    pub consecutive_failure: usize,
}

/// `failures` failures (connect errors, timeouts, 5xx) within `window` open a
/// target's breaker for `open`; then `half_open_requests` probes decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failures: u32,
    pub window: Duration,
    pub open: Duration,
    pub half_open_requests: u32,
}

/// A configured target: an address as it is, or a name whose addresses are all
/// targets, looked up again every `resolve_interval` off the request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    Addr(SocketAddr),
    Name { host: String, port: u16 },
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Addr(addr) => addr.fmt(f),
            TargetSpec::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// The resolver upstream names are looked up with.
#[derive(Clone, Debug, Default)]
pub struct Dns {
    /// Empty: the system's nameservers (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
}

/// A proxy listen address and how its connections start.
#[derive(Clone, Debug)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: Option<ListenerTls>,
    /// HTTP/2 in the clear, told apart from HTTP/1.1 by its preface.
    pub h2c: bool,
    /// A PROXY header (v1 or v2) from a trusted proxy gives the client's address.
    pub proxy_protocol: bool,
}

#[derive(Clone, Debug)]
pub struct ListenerTls {
    /// The first is served to clients whose SNI no certificate names.
    pub certs: Vec<crate::tls::certs::CertPair>,
    /// ALPN offers `h2` as well as `http/1.1`.
    pub h2: bool,
}

#[derive(Clone, Debug)]
pub struct Upstream {
    pub name: String,
    pub kind: UpstreamKind,
    pub targets: Vec<TargetSpec>,
    /// TLS or not, HTTP/2 or HTTP/1.1, for requests and health checks alike.
    pub transport: crate::tls::upstream::Transport,
    pub resolve_interval: Duration,
    /// Addresses in DNS answers that are loopback, private, link-local, multicast,
    /// unspecified or the gateway's own listeners are dropped.
    pub refuse_private_answers: bool,
    pub balance: Balance,
    pub health_check: Option<HealthCheck>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub retries: u32,
    pub breaker: Option<BreakerSettings>,
}

/// Whether a route wants to know its caller.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthPolicy {
    /// Credentials needed: 401 without them.
    Required,
    /// Callers who present credentials are identified (bad ones are still a 401);
    /// the rest pass as anonymous.
    Optional,
    /// Credentials are not looked at.
    None,
}

/// What a route does with the requests it matches.
#[derive(Debug)]
pub enum RouteAction {
    Proxy(ProxyAction),
    Respond(StaticAnswer),
}

/// A proxied route's upstream and what applies to proxied requests alone.
#[derive(Debug)]
pub struct ProxyAction {
    pub upstream: UpstreamId,
    pub strip_prefix: bool,
    pub max_body_bytes: Option<u64>,
    /// WebSocket upgrades on this route stay open while idle up to this long
    /// (instead of the upstream's `read_ms`); `None`: upgrades use `read_ms`.
    pub websocket_idle: Option<Duration>,
    /// A response not delivered whole this long after its request head is cut.
    pub response_timeout: Option<Duration>,
}

/// The gateway's own answer on a `respond` route.
#[derive(Debug)]
pub struct StaticAnswer {
    pub status: u16,
    pub body: String,
    pub content_type: String,
}

/// Requests admitted per `per` across all instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalLimit {
    pub rate: u64,
    pub per: Duration,
    /// Whose traffic the limit counts: this region's or every region's.
    pub scope: GlobalScope,
}

/// A `global_limit`'s reach when there are several regions (`redis.region`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalScope {
    /// The instances sharing this region's Redis.
    #[default]
    Region,
    /// Every region's instances; needs `redis.region`.
    World,
}

/// A route; its id ([`RouteId`](crate::vocab::ids::RouteId)) is its position in
/// the config's `routes`.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub matching: RouteMatch,
    pub action: RouteAction,
    pub access: RouteAccess,
    pub limits: RouteLimits,
    /// Address rules, compression, header rules, CORS: in the order each phase runs them.
    pub policies: crate::policy::Policies,
}

/// Which requests a route takes.
#[derive(Debug)]
pub struct RouteMatch {
    pub path_prefix: String,
    /// Lower-case host without port.
    pub host: Option<String>,
    pub methods: Option<Vec<Method>>,
}

/// Who may call a route, and which requests it lets through as they are.
#[derive(Debug)]
pub struct RouteAccess {
    pub auth: AuthPolicy,
    /// Tier ids allowed on this route; `None` allows every tier and anonymous callers.
    pub tiers: Option<Vec<TierId>>,
    /// Paths upstreams may decode differently are forwarded as routed, not refused.
    pub allow_ambiguous_paths: bool,
    /// Header names with `_` are forwarded, not dropped.
    pub allow_underscore_headers: bool,
}

/// What a request on a route costs and the route's own limits.
#[derive(Debug)]
pub struct RouteLimits {
    pub cost: u32,
    pub global_limit: Option<GlobalLimit>,
    /// The route's own bucket for each tier (indexed by tier id), if any.
    pub tier_limits: Option<Vec<Option<Bucket>>>,
    pub quota: Option<super::quota::Quota>,
}

impl Route {
    pub fn upstream(&self) -> Option<UpstreamId> {
        match &self.action {
            RouteAction::Proxy(proxy) => Some(proxy.upstream),
            RouteAction::Respond(_) => None,
        }
    }

    /// What applies to the route's proxied requests; `None` on a `respond` route.
    pub fn proxy(&self) -> Option<&ProxyAction> {
        match &self.action {
            RouteAction::Proxy(proxy) => Some(proxy),
            RouteAction::Respond(_) => None,
        }
    }
}

pub struct Auth {
    pub jwt: Option<Jwt>,
    pub api_keys: Option<ApiKeys>,
    /// The tier of a consumer whose token or key names none.
    pub default_tier: TierId,
}

pub struct Jwt {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_s: u64,
    pub consumer_claim: String,
    pub tier_claim: String,
    /// The config's own keys, loaded and self-tested.
    pub keys: Vec<VerifyKey>,
    pub jwks: Option<Jwks>,
    /// Claim → upstream header, never one the gateway sets itself.
    pub claims_to_headers: Vec<(String, HeaderName)>,
    /// Whether the upstream receives the `Authorization` header of a verified token.
    pub forward_token: bool,
    /// Verified tokens kept so a hot token is not verified again.
    pub cache_entries: usize,
}

pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

pub struct Jwks {
    pub source: JwksSource,
    /// A file's keys as read at load (a URL's come with the first fetch).
    pub initial: Vec<VerifyKey>,
    /// How often the source is read again.
    pub refresh: Duration,
    /// Least time between two refreshes woken by an unknown `kid`.
    pub cooldown: Duration,
}

pub struct ApiKeys {
    pub header: HeaderName,
    pub keys: Vec<ApiKey>,
}

pub struct ApiKey {
    pub consumer: String,
    /// SHA-256 of the key; the key itself is never in the config.
    pub digest: [u8; 32],
    pub tier: TierId,
}

/// What to do with limits shared through Redis while Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Enforce limit ÷ instances last seen alive, on this instance's own counts.
    LocalShare,
    /// Drop the global check.
    Allow,
    /// Refuse every request of the route.
    Deny,
}

pub struct Redis {
    /// Where the background sync connects; connections are made by it alone.
    pub target: RedisTarget,
    pub sync_interval: Duration,
    pub key_prefix: String,
    pub on_unavailable: OnUnavailable,
    /// Bucket keys settled per sync round at most; the rest wait for the next.
    pub max_keys_per_sync: usize,
    /// Entries the runtime consumers' change log keeps: an instance further behind
    /// reloads them in full.
    pub consumers_log_entries: usize,
    /// This region and its peers' Redis, when there are several regions.
    pub region: Option<Region>,
}

/// Several regions, each with its own Redis, exchanging in the background.
pub struct Region {
    /// This instance's region.
    pub name: String,
    /// Every other region's Redis, sorted by name.
    pub peers: Vec<Peer>,
    pub sync_interval: Duration,
    pub on_partition: OnPartition,
}

/// Another region's Redis.
pub struct Peer {
    pub name: String,
    pub target: RedisTarget,
}

/// What a `world` limit does while a peer region cannot be reached (README,
/// *Several regions*, says what each enforces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPartition {
    SafeShare,
    LastShare,
    Allow,
    Deny,
}

/// A single server (TCP, TLS or Unix socket), a Redis Cluster, or the master a
/// set of Sentinels names.
pub enum RedisTarget {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    Sentinel(redis::sentinel::SentinelClient),
}
