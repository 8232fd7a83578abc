//! The consumers API (admin token required for all of it): runtime API keys
//! (`POST`, `GET /admin/consumers/{id}/keys`, `DELETE .../keys/{key_id}`), the tier
//! override (`GET`, `PUT`, `DELETE /admin/consumers/{id}/tier`) and the paged list
//! (`GET /admin/consumers`, consumer_list.rs). A write is made durable first and refused (503) when
//! it cannot be: with Redis it goes there and every instance picks it up within
//! one sync; without, to `state_file` when one is set.
//! A key is shown once, when created; only its digest is kept anywhere.

use super::consumer_list::{Listed, Names};
use super::{error, Admin, MAX_BODY_BYTES};
use crate::config::Auth;
use crate::consumers::durability::Durability;
use crate::consumers::keys::{RuntimeKey, RuntimeKeys};
use crate::consumers::stored::{Change, StoredKey};
use crate::services::json_response;
use crate::services::redis_sync::consumers::ConsumerStore;
use crate::services::state_file::StateFileWriter;
use crate::vocab::clock::unix_now;
use crate::vocab::ids::{Id, TierId};
use http::{Method, Response};
use pingora_core::protocols::http::ServerSession;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Consumers per page of `GET /admin/consumers` at most.
const MAX_PAGE: usize = 500;

/// What the consumers API manages and reads.
pub struct Consumers {
    /// Where a write is made durable before it applies: without Redis, it applies
    /// to this instance alone.
    pub durability: Durability<ConsumerStore, Arc<StateFileWriter>>,
    pub runtime_keys: Arc<RuntimeKeys>,
    /// The tiers of the config's API-key consumers.
    pub key_tiers: HashMap<String, TierId>,
    /// Their names in order, for the list.
    pub configured: BTreeSet<Arc<str>>,
    /// The tier of a runtime key created without one (`None` without `auth.api_keys`).
    pub default_tier: Option<TierId>,
}

impl Consumers {
    /// The consumers API over `runtime_keys`, beside the config's API-key consumers.
    pub fn new(
        auth: Option<&Auth>,
        runtime_keys: Arc<RuntimeKeys>,
        durability: Durability<ConsumerStore, Arc<StateFileWriter>>,
    ) -> Self {
        let api_keys = auth.and_then(|a| Some((a.api_keys.as_ref()?, a.default_tier)));
        let key_tiers: HashMap<String, TierId> = api_keys
            .map(|(k, _)| k.keys.iter().map(|k| (k.consumer.clone(), k.tier)).collect())
            .unwrap_or_default();
        Consumers {
            durability,
            runtime_keys,
            configured: key_tiers.keys().map(|c| Arc::from(c.as_str())).collect(),
            key_tiers,
            // Runtime keys need `auth.api_keys` (its header; its keys may be none).
            default_tier: api_keys.map(|(_, default_tier)| default_tier),
        }
    }
}

type Answer = Response<Vec<u8>>;

fn unavailable(why: &str) -> Answer {
    error(503, "unavailable", &format!("not written: {why}"))
}

impl Admin {
    /// Makes a write durable where this instance keeps them; `Err` is a 503's reason.
    async fn persist(&self, change: &Change) -> Result<(), String> {
        match &self.consumers.durability {
            Durability::Redis(store) => store.apply(change).await,
            Durability::StateFile(file) => file.save(change),
            Durability::Memory => Ok(()),
        }
    }

    /// Answers the consumers API's paths; `None` for any other path.
    pub(super) async fn consumers_api(
        &self,
        session: &mut ServerSession,
        method: &Method,
        path: &str,
    ) -> Option<Answer> {
        let rest = path.strip_prefix("/admin/consumers")?;
        if let Err(denied) = self.authorized(session) {
            return Some(*denied);
        }
        let segments: Vec<&str> = rest.split('/').skip(1).collect();
        let consumer = match segments.first() {
            None if rest.is_empty() => return Some(self.list(session, method)),
            Some(segment) => match super::consumer_id::consumer_id(segment) {
                Ok(id) => id,
                Err(why) => return Some(error(400, "bad_request", why)),
            },
            None => return None,
        };
        // Who wrote, for the log: the admin token is shared, so the client's address.
        let who = session.client_addr().map(|a| a.to_string()).unwrap_or_default();
        let who = who.as_str();
        let answer = match (method.clone(), &segments[1..]) {
            (Method::GET, []) => match self.consumer_view(&consumer).await {
                Some(view) => json_response(200, view.to_string()),
                None => error(404, "not_found", "no such consumer here or in redis"),
            },
            (Method::GET, ["tier"]) => self.get_tier(&consumer),
            (Method::PUT, ["tier"]) => self.set_tier(session, &consumer, who).await,
            (Method::DELETE, ["tier"]) => self.delete_tier(&consumer, who).await,
            (Method::GET, ["keys"]) => self.list_keys(&consumer),
            (Method::POST, ["keys"]) => self.create_key(session, &consumer, who).await,
            (Method::DELETE, ["keys", key_id]) => self.revoke_key(&consumer, key_id, who).await,
            (_, [] | ["tier"] | ["keys"] | ["keys", _]) => {
                error(405, "method_not_allowed", "not a method of this endpoint")
            }
            _ => error(404, "no_route", "no admin endpoint here"),
        };
        Some(answer)
    }

    fn written(&self, action: &str, consumer: &str, detail: &str, who: &str) {
        log::info!("admin: {action} for consumer {consumer:?}{detail} by {who}");
        self.telemetry
            .state
            .admin_writes
            .with_label_values(&[action])
            .inc();
    }

    fn tier_name(&self, tier: Option<TierId>) -> Option<&str> {
        tier.or(self.consumers.default_tier)
            .and_then(|t| t.of(&self.tier_names))
            .map(String::as_str)
    }

    fn tier_id(&self, name: &str) -> Result<TierId, Box<Answer>> {
        self.tier_names
            .iter()
            .position(|t| t == name)
            .map(TierId)
            .ok_or_else(|| Box::new(error(400, "bad_request", &format!("no tier named \"{name}\""))))
    }

    fn get_tier(&self, consumer: &str) -> Answer {
        match self.overrides.get(consumer) {
            Some(t) => json_response(
                200,
                json!({"consumer": consumer, "tier": self.tier_name(Some(t))}).to_string(),
            ),
            None => error(404, "not_found", "no tier override for this consumer"),
        }
    }

    async fn set_tier(&self, session: &mut ServerSession, consumer: &str, who: &str) -> Answer {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TierBody {
            tier: String,
        }
        let body = match read_body(session).await {
            Ok(body) => body,
            Err(answer) => return *answer,
        };
        let Ok(TierBody { tier }) = serde_json::from_slice::<TierBody>(&body) else {
            return error(400, "bad_request", "body must be {\"tier\": \"<name>\"}");
        };
        let id = match self.tier_id(&tier) {
            Ok(id) => id,
            Err(answer) => return *answer,
        };
        let change = Change::SetTier {
            consumer: consumer.to_string(),
            tier: tier.clone(),
        };
        if let Err(why) = self.persist(&change).await {
            return unavailable(&why);
        }
        self.overrides.set(consumer, id);
        self.written("set_tier", consumer, &format!(" to {tier}"), who);
        json_response(200, json!({"consumer": consumer, "tier": tier}).to_string())
    }

    async fn delete_tier(&self, consumer: &str, who: &str) -> Answer {
        if self.overrides.get(consumer).is_none() {
            return error(404, "not_found", "no tier override for this consumer");
        }
        let change = Change::ClearTier {
            consumer: consumer.to_string(),
        };
        if let Err(why) = self.persist(&change).await {
            return unavailable(&why);
        }
        self.overrides.remove(consumer);
        self.written("delete_tier", consumer, "", who);
        Response::builder()
            .status(204)
            .body(Vec::new())
            .unwrap_or_default()
    }

    pub(super) fn key_json(&self, key: &RuntimeKey) -> serde_json::Value {
        let last_used = key.last_used_s.load(Ordering::Relaxed);
        json!({
            "key_id": key.key_id,
            "tier": self.tier_name(key.tier()),
            "created_at": key.created_at_s,
            "expires_at": key.expires_at_s(),
            "last_used_at": (last_used > 0).then_some(last_used),
        })
    }

    fn list_keys(&self, consumer: &str) -> Answer {
        let keys: Vec<_> = self
            .consumers
            .runtime_keys
            .of_consumer(consumer)
            .iter()
            .map(|k| self.key_json(k))
            .collect();
        json_response(200, json!({"consumer": consumer, "keys": keys}).to_string())
    }

    async fn create_key(&self, session: &mut ServerSession, consumer: &str, who: &str) -> Answer {
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct KeyBody {
            tier: Option<String>,
            /// Seconds from now.
            expires_in_s: Option<u64>,
        }
        let body = match read_body(session).await {
            Ok(body) => body,
            Err(answer) => return *answer,
        };
        let spec = if body.iter().all(u8::is_ascii_whitespace) {
            KeyBody::default()
        } else {
            match serde_json::from_slice::<KeyBody>(&body) {
                Ok(spec) => spec,
                Err(e) => return error(400, "bad_request", &format!("body: {e}")),
            }
        };
        let tier = match spec.tier.as_deref().map(|t| self.tier_id(t)).transpose() {
            Ok(tier) => tier,
            Err(answer) => return *answer,
        };
        if self.consumers.default_tier.is_none() {
            return error(
                409,
                "conflict",
                "runtime keys need auth.api_keys in the config (its keys may be none)",
            );
        }
        let Some(key) = new_secret() else {
            return unavailable("no randomness from the operating system");
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let Some(key_id) = new_key_id() else {
            return unavailable("no randomness from the operating system");
        };
        let now = unix_now().as_secs();
        let expires_at_s = spec.expires_in_s.map(|s| now.saturating_add(s));
        let change = Change::AddKey(StoredKey {
            key_id: key_id.clone(),
            consumer: consumer.to_string(),
            digest: hex::encode(digest),
            tier: spec.tier.clone(),
            created_at_s: now,
            expires_at_s,
        });
        if let Err(why) = self.persist(&change).await {
            return unavailable(&why);
        }
        self.consumers.runtime_keys.insert(RuntimeKey::new(
            key_id.clone(),
            Arc::from(consumer),
            digest,
            tier,
            now,
            expires_at_s,
        ));
        self.written("create_key", consumer, &format!(", key id {key_id}"), who);
        json_response(
            201,
            json!({
                "consumer": consumer,
                "key_id": key_id,
                "key": key,
                "tier": self.tier_name(tier),
                "expires_at": expires_at_s,
            })
            .to_string(),
        )
    }

    async fn revoke_key(&self, consumer: &str, key_id: &str, who: &str) -> Answer {
        let exists = self
            .consumers
            .runtime_keys
            .of_consumer(consumer)
            .iter()
            .any(|k| &*k.key_id == key_id);
        if exists {
            let change = Change::RevokeKey {
                key_id: key_id.to_string(),
            };
            if let Err(why) = self.persist(&change).await {
                return unavailable(&why);
            }
        } else {
            // Not held here, which with Redis may only mean loading or behind the
            // log: Redis says whether there is such a key.
            let Durability::Redis(store) = &self.consumers.durability else {
                return error(404, "not_found", "no such key for this consumer");
            };
            match store.revoke_held(consumer, key_id).await {
                Ok(true) => {}
                Ok(false) => return error(404, "not_found", "no such key for this consumer"),
                Err(why) => return unavailable(&why),
            }
        }
        self.consumers.runtime_keys.remove(consumer, key_id);
        self.written("revoke_key", consumer, &format!(", key id {key_id}"), who);
        Response::builder()
            .status(204)
            .body(Vec::new())
            .unwrap_or_default()
    }

    /// Every consumer this instance knows by name (config keys, runtime keys,
    /// overrides), sorted, a page at a time: after a cursor (`?after=<id>&limit=100`,
    /// answering the `next` cursor) or by number (`?page=1&per_page=100`).
    fn list(&self, session: &ServerSession, method: &Method) -> Answer {
        if method != Method::GET {
            return error(405, "method_not_allowed", "use GET");
        }
        let query = session.req_header().uri.query().unwrap_or("");
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        };
        let number = |name: &str, default: usize| match param(name).map(str::parse::<usize>) {
            None => Some(default),
            Some(Ok(n)) if n >= 1 => Some(n),
            Some(_) => None,
        };
        let names = Names {
            runtime_keys: &self.consumers.runtime_keys,
            configured: &self.consumers.configured,
            overrides: &self.overrides,
        };
        let by_cursor = param("after").is_some() || param("limit").is_some();
        if by_cursor {
            if param("page").is_some() || param("per_page").is_some() {
                return error(
                    400,
                    "bad_request",
                    "after and limit, or page and per_page, not both",
                );
            }
            let Some(limit) = number("limit", 100).filter(|n| *n <= MAX_PAGE) else {
                return error(400, "bad_request", "limit from 1 to 500");
            };
            let after = match param("after").map(super::consumer_id::consumer_id).transpose() {
                Ok(after) => after,
                Err(why) => return error(400, "bad_request", &format!("after: {why}")),
            };
            let listed = names.after(after.as_deref(), limit);
            // A full page may have more after it: its last name is the next cursor.
            let next = listed.last().filter(|_| listed.len() == limit).map(|(c, _)| &**c);
            return json_response(
                200,
                json!({"after": after, "limit": limit, "next": next, "consumers": shown(&listed)})
                    .to_string(),
            );
        }
        let (Some(page), Some(per_page)) = (
            number("page", 1),
            number("per_page", 100).filter(|n| *n <= MAX_PAGE),
        ) else {
            return error(400, "bad_request", "page ≥ 1 and per_page from 1 to 500");
        };
        let (total, listed) = names.numbered(page, per_page);
        json_response(
            200,
            json!({"page": page, "per_page": per_page, "total": total, "consumers": shown(&listed)})
                .to_string(),
        )
    }
}

fn shown(listed: &[Listed]) -> Vec<serde_json::Value> {
    listed
        .iter()
        .map(|(c, keys)| json!({"consumer": &**c, "runtime_keys": keys}))
        .collect()
}

/// A new secret: 32 bytes from the operating system, base64url, prefixed so that
/// leaked keys are recognisable by scanners.
fn new_secret() -> Option<String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(format!(
        "fg_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A key's id: 48 random bits in hex, which no shell or CLI takes for a flag (a
/// base64url id may start with `-`).
fn new_key_id() -> Option<String> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// The request body, refused with 413 past the limit.
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Box<Answer>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY_BYTES {
                    return Err(Box::new(error(
                        413,
                        "body_too_large",
                        "admin bodies are at most 64 KiB",
                    )));
                }
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(Box::new(error(400, "bad_request", "could not read the body"))),
        }
    }
}
