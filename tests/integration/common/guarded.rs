//! The two gateways the adversarial tests probe: `guarded_gateway` (keyed and open path
//! prefixes, routes opting out of the path and underscore checks) and `host_scoped_gateway`
//! (one host behind a key, every other host open, an admin token).

use super::{Gateway, Upstream};

pub const GUARDED_API_KEY: &str = "acme-key-7f3a";

/// `/api/` and `/docs/private` need a key; `/pub/` and `/docs/` do not; `/raw/` and
/// `/legacy/` opt out of the path and underscore checks.
pub fn guarded_gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"
upstreams:
  backend: {{ targets: ["{addr}"] }}
auth:
  api_keys:
    header: X-API-Key
    keys:
      - {{ consumer: acme, key: "{digest}", tier: enterprise }}
routes:
  - {{ name: pub, path_prefix: /pub/, upstream: backend, auth: none }}
  - {{ name: api, path_prefix: /api/, upstream: backend, auth: required }}
  - {{ name: docs, path_prefix: /docs/, upstream: backend, auth: none }}
  - {{ name: private, path_prefix: /docs/private, upstream: backend, auth: required }}
  - {{ name: raw, path_prefix: /raw/, upstream: backend, auth: none, allow_ambiguous_paths: true }}
  - {{ name: legacy, path_prefix: /legacy/, upstream: backend, auth: required, allow_underscore_headers: true }}
"#,
        addr = up.addr,
        digest = floodgate::auth::api_key::hash_key(GUARDED_API_KEY),
    ))
}

pub const HOST_SCOPED_API_KEY: &str = "host-key-5d1e";

pub const HOST_SCOPED_ADMIN_TOKEN: &str = "admin-token-0123456789";

/// `admin.internal` needs a key; every other host reaches the open route.
pub fn host_scoped_gateway(up: &Upstream) -> Gateway {
    Gateway::start_admin(
        &format!(
            r#"
upstreams:
  backend: {{ targets: ["{addr}"] }}
auth:
  api_keys:
    keys:
      - {{ consumer: acme, key: "{digest}", tier: enterprise }}
routes:
  - {{ name: admin, path_prefix: /, host: admin.internal, upstream: backend, auth: required }}
  - {{ name: legacy, path_prefix: /legacy/, upstream: backend, auth: none, allow_underscore_headers: true }}
  - {{ name: open, path_prefix: /, upstream: backend, auth: none }}
"#,
            addr = up.addr,
            digest = floodgate::auth::api_key::hash_key(HOST_SCOPED_API_KEY),
        ),
        &format!("token: \"{HOST_SCOPED_ADMIN_TOKEN}\""),
    )
}
