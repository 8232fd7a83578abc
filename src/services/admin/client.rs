//! `floodgate consumer …`: the consumers API from the command line, so an operator
//! need not hand-craft curl. The admin token is read from an environment variable,
//! never an argument (arguments are visible to every user of the machine).

use clap::Subcommand;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum ConsumerAction {
    /// The consumers this instance knows, a page at a time.
    List {
        #[arg(long, default_value_t = 1)]
        page: usize,
        #[arg(long, default_value_t = 100)]
        per_page: usize,
        /// Instead of --page: the consumers after this one (a page's `next`), as
        /// cheap however deep.
        #[arg(long, conflicts_with = "page")]
        after: Option<String>,
    },
    /// A consumer's tier, keys and budget.
    Show { consumer: String },
    /// A consumer's runtime keys (never the keys themselves).
    Keys { consumer: String },
    /// Create an API key; it is printed once and never again.
    CreateKey {
        consumer: String,
        #[arg(long)]
        tier: Option<String>,
        /// Seconds until the key stops working.
        #[arg(long)]
        expires_in_s: Option<u64>,
    },
    /// Revoke one of a consumer's keys.
    Revoke { consumer: String, key_id: String },
    /// Override a consumer's tier.
    SetTier { consumer: String, tier: String },
    /// Remove a consumer's tier override.
    ClearTier { consumer: String },
}

/// A consumer id as a path segment or a query's value: everything but unreserved
/// characters escaped.
pub fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The method, path and JSON body an action sends.
fn request(action: &ConsumerAction) -> (&'static str, String, Option<serde_json::Value>) {
    use serde_json::json;
    match action {
        ConsumerAction::List {
            page,
            per_page,
            after: None,
        } => (
            "GET",
            format!("/admin/consumers?page={page}&per_page={per_page}"),
            None,
        ),
        ConsumerAction::List {
            per_page,
            after: Some(after),
            ..
        } => (
            "GET",
            format!("/admin/consumers?after={}&limit={per_page}", segment(after)),
            None,
        ),
        ConsumerAction::Show { consumer } => ("GET", format!("/admin/consumers/{}", segment(consumer)), None),
        ConsumerAction::Keys { consumer } => (
            "GET",
            format!("/admin/consumers/{}/keys", segment(consumer)),
            None,
        ),
        ConsumerAction::CreateKey {
            consumer,
            tier,
            expires_in_s,
        } => {
            let mut body = json!({});
            if let Some(tier) = tier {
                body["tier"] = json!(tier);
            }
            if let Some(s) = expires_in_s {
                body["expires_in_s"] = json!(s);
            }
            (
                "POST",
                format!("/admin/consumers/{}/keys", segment(consumer)),
                Some(body),
            )
        }
        ConsumerAction::Revoke { consumer, key_id } => (
            "DELETE",
            format!("/admin/consumers/{}/keys/{}", segment(consumer), segment(key_id)),
            None,
        ),
        ConsumerAction::SetTier { consumer, tier } => (
            "PUT",
            format!("/admin/consumers/{}/tier", segment(consumer)),
            Some(json!({ "tier": tier })),
        ),
        ConsumerAction::ClearTier { consumer } => (
            "DELETE",
            format!("/admin/consumers/{}/tier", segment(consumer)),
            None,
        ),
    }
}

/// Sends the action to the admin listener at `admin` (e.g. `http://127.0.0.1:9091`);
/// `Ok(answer)` for a 2xx, `Err(why)` otherwise.
pub fn run(admin: &str, token: &str, action: &ConsumerAction) -> Result<String, String> {
    let (method, path, body) = request(action);
    let url = format!("{}{path}", admin.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let auth = format!("Bearer {token}");
    let sent = match (method, body) {
        ("POST", Some(body)) => agent
            .post(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(body.to_string()),
        ("PUT", Some(body)) => agent
            .put(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(body.to_string()),
        ("DELETE", _) => agent.delete(&url).header("authorization", &auth).call(),
        _ => agent.get(&url).header("authorization", &auth).call(),
    };
    let mut response = sent.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        Err(format!("{method} {url}: {status} {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_escaped_and_bodies_carry_only_what_was_given() {
        assert_eq!(segment("auth0|abc def"), "auth0%7Cabc%20def");
        let create = ConsumerAction::CreateKey {
            consumer: "a/b".into(),
            tier: Some("gold".into()),
            expires_in_s: None,
        };
        let (method, path, body) = request(&create);
        assert_eq!((method, path.as_str()), ("POST", "/admin/consumers/a%2Fb/keys"));
        assert_eq!(body, Some(serde_json::json!({"tier": "gold"})));
    }
}
