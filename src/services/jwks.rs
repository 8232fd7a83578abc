//! Keeps the JWT key set fresh from a JWKS file or URL, off the request path: on
//! a timer, and when a request met an unknown `kid` (woken at most once per
//! cooldown, single-flight). A failed read keeps the last good key set.

use crate::auth::jwt::JwtVerifier;
use crate::config::verify_key;
use crate::config::JwksSource;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// A JWKS document bigger than this is refused (it would be a misconfiguration or an attack).
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// How long one read of a JWKS URL may take; `/ready` waits at most this long for the first.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

pub struct JwksRefresher {
    pub verifier: Arc<JwtVerifier>,
}

impl JwksRefresher {
    async fn fetch(source: &JwksSource) -> Result<Vec<u8>, String> {
        match source {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            JwksSource::Url(url) => {
                let url = url.clone();
                // ureq is blocking; a blocking-pool thread keeps it away from request workers.
                tokio::task::spawn_blocking(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .timeout_global(Some(FETCH_TIMEOUT))
                        .build()
                        .into();
                    agent
                        .get(&url)
                        .call()
                        .map_err(|e| format!("GET {url}: {e}"))?
                        .into_body()
                        .with_config()
                        .limit(MAX_JWKS_BYTES)
                        .read_to_vec()
                        .map_err(|e| format!("GET {url}: {e}"))
                })
                .await
                .map_err(|e| format!("fetch task failed: {e}"))?
            }
        }
    }
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(refresh) = self.verifier.refresh().cloned() else {
            return;
        };
        let mut last_good: Option<Vec<u8>> = None;
        let mut failing = false;
        // A URL is read at once; a file was already read at start-up.
        let mut due_now = matches!(refresh.source, JwksSource::Url(_));
        loop {
            if !due_now {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(refresh.interval) => {}
                    _ = refresh.wake.notified() => log::info!("JWKS refresh: a token named an unknown kid"),
                }
            }
            due_now = false;
            let outcome = Self::fetch(&refresh.source).await.and_then(|text| {
                if last_good.as_ref() == Some(&text) {
                    return Ok(None);
                }
                verify_key::from_jwks(&text).map(|parsed| Some((text, parsed)))
            });
            match outcome {
                Ok(None) => failing = false,
                Ok(Some((text, (keys, skipped)))) => {
                    for s in skipped {
                        log::warn!("JWKS: skipped key {s}");
                    }
                    log::info!("JWKS: {} keys in force", keys.len());
                    self.verifier.install(keys);
                    last_good = Some(text);
                    failing = false;
                }
                Err(e) => {
                    // Once per outage, not per attempt.
                    if !failing {
                        log::warn!("JWKS refresh failed, keeping the last good key set: {e}");
                    }
                    failing = true;
                }
            }
            refresh.first_attempt_done();
        }
    }
}
