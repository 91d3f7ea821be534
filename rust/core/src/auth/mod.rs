//! OAuth 2.0 access tokens (SPEC §5): client credentials or JWT bearer, fetched from
//! `{instance}/services/oauth2/token`, refreshed two minutes before their expected expiry and
//! whenever Salesforce says the session is gone. Tasks of one connector share one token.

mod jwt;

use crate::config::{Auth, Config, Secret};
use crate::error::SalesforceError;
use crate::http::{read_capped, redirect_location, transport_error};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Salesforce sends no `expires_in`; the session timeout of an org defaults to two hours.
const ASSUMED_SESSION_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// Refresh this long before the expected expiry, as the seed promises.
const REFRESH_AHEAD: Duration = Duration::from_secs(2 * 60);
/// A token answer is a few hundred bytes (token, instance URL, id, signature); more is not Salesforce.
const MAX_TOKEN_ANSWER_BYTES: usize = 64 << 10;
/// The `error` of a token request answered with a redirect (never followed, SPEC §5).
const REDIRECTED: &str = "redirected";
/// The `error` of a token answer that cannot be Salesforce's (too large).
const UNUSABLE: &str = "unusable answer";

#[derive(Clone)]
pub struct AccessToken {
    pub value: Secret,
    /// The user the token acts for: the last segment of the answer's identity URL `id`
    /// (`https://login.salesforce.com/id/<org Id>/<user Id>`), when it has one.
    pub user_id: Option<String>,
    fetched_at: Instant,
}

impl AccessToken {
    fn is_fresh(&self) -> bool {
        self.fetched_at.elapsed() + REFRESH_AHEAD < ASSUMED_SESSION_LIFETIME
    }
}

pub struct TokenProvider {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    auth: Auth,
    current: tokio::sync::Mutex<Option<AccessToken>>,
}

/// One provider per connector and credentials in this class loader, shared by its tasks; the map
/// holds weak references so a stopped connector leaves nothing behind.
static SHARED: Lazy<Mutex<HashMap<u64, Weak<TokenProvider>>>> = Lazy::new(Default::default);

impl TokenProvider {
    pub fn shared(cfg: &Config, http: reqwest::Client) -> Arc<TokenProvider> {
        let mut h = DefaultHasher::new();
        (&cfg.connector_name, &cfg.instance_url, &cfg.client_id).hash(&mut h);
        match &cfg.auth {
            Auth::ClientCredentials { client_secret } => ("cc", client_secret.expose()).hash(&mut h),
            Auth::JwtBearer { private_key_pem, username, audience } => {
                ("jwt", private_key_pem.expose(), username, audience).hash(&mut h)
            }
        }
        let id = h.finish();
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = shared.get(&id).and_then(Weak::upgrade) {
            return existing;
        }
        let provider = Arc::new(TokenProvider {
            http,
            token_url: format!("{}/services/oauth2/token", cfg.instance_url),
            client_id: cfg.client_id.clone(),
            auth: cfg.auth.clone(),
            current: tokio::sync::Mutex::new(None),
        });
        shared.insert(id, Arc::downgrade(&provider));
        provider
    }

    /// A token that is not about to expire; fetches one when needed. Concurrent callers wait for
    /// one fetch instead of each asking Salesforce.
    pub async fn token(&self) -> Result<AccessToken, SalesforceError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| t.is_fresh()) {
            return Ok(token.clone());
        }
        let token = self.fetch().await?;
        *current = Some(token.clone());
        Ok(token)
    }

    /// [`token`](Self::token), counting a token request in `metrics` when one was fetched.
    pub async fn token_counted(&self, metrics: &crate::metrics::Metrics) -> Result<AccessToken, SalesforceError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| t.is_fresh()) {
            return Ok(token.clone());
        }
        metrics.count_request(crate::metrics::RequestKind::Token);
        let token = self.fetch().await?;
        *current = Some(token.clone());
        Ok(token)
    }

    /// Forgets `stale` after Salesforce refused it, unless another task already replaced it.
    pub async fn invalidate(&self, stale: &AccessToken) {
        let mut current = self.current.lock().await;
        if current.as_ref().map(|t| t.value == stale.value).unwrap_or(false) {
            *current = None;
        }
    }

    async fn fetch(&self) -> Result<AccessToken, SalesforceError> {
        let form: Vec<(&str, String)> = match &self.auth {
            Auth::ClientCredentials { client_secret } => vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", self.client_id.clone()),
                ("client_secret", client_secret.expose().to_owned()),
            ],
            Auth::JwtBearer { private_key_pem, username, audience } => vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()),
                ("assertion", jwt::assertion(&self.client_id, username, audience, private_key_pem)?),
            ],
        };
        let body = form_urlencode(&form);
        let response = self
            .http
            .post(&self.token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| match transport_error(e) {
                SalesforceError::Unexpected { status: 407, snippet } => {
                    SalesforceError::TokenRefused { status: 407, error: "proxy".into(), description: snippet }
                }
                other => other,
            })?;
        let status = response.status().as_u16();
        if let Some(location) = redirect_location(&response) {
            return Err(SalesforceError::TokenRefused { status, error: REDIRECTED.into(), description: format!("to '{location}'") });
        }
        let bytes = match read_capped(response, MAX_TOKEN_ANSWER_BYTES, transport_error).await {
            Err(SalesforceError::BadAnswer(too_large)) => {
                return Err(SalesforceError::TokenRefused { status, error: UNUSABLE.into(), description: too_large })
            }
            read => read?,
        };
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if status == 200 {
            if let Some(token) = json.get("access_token").and_then(|t| t.as_str()) {
                let user_id = json.get("id").and_then(|v| v.as_str()).and_then(|url| url.rsplit('/').next()).filter(|id| !id.is_empty());
                return Ok(AccessToken { value: Secret::new(token), user_id: user_id.map(str::to_owned), fetched_at: Instant::now() });
            }
        }
        let text = |k: &str| json.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        Err(SalesforceError::TokenRefused {
            status,
            error: if json.is_null() { format!("non-JSON answer of {} bytes", bytes.len()) } else { text("error") },
            description: text("error_description"),
        })
    }
}

fn form_urlencode(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", crate::http::percent_encode(k), crate::http::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What an operator must fix when Salesforce refuses to issue a token.
pub fn token_advice(error: &str, auth: &Auth) -> &'static str {
    match (error, auth) {
        (REDIRECTED, _) => {
            "set salesforce.instance.url to the org's My Domain URL (https://<domain>.my.salesforce.com), the host that answers the token request itself: the connector never follows redirects"
        }
        (UNUSABLE, _) => "check salesforce.instance.url and salesforce.proxy.url: something other than Salesforce answered the token request",
        ("invalid_client_id", _) => "check salesforce.client.id (the Connected App's consumer key)",
        ("invalid_client", Auth::ClientCredentials { .. }) => "check salesforce.client.secret (the consumer secret)",
        ("invalid_grant", Auth::ClientCredentials { .. }) => {
            "enable the Client Credentials flow and assign a Run As user on the Connected App, and use the org's My Domain URL"
        }
        ("invalid_grant", Auth::JwtBearer { .. }) => {
            "check salesforce.jwt.username, salesforce.jwt.audience, that the certificate of salesforce.jwt.private.key is uploaded to the Connected App, and that the user is pre-authorized"
        }
        _ => "check the Connected App settings and the salesforce.* credentials",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_fetched(ago: Duration) -> AccessToken {
        AccessToken { value: Secret::new("t"), user_id: None, fetched_at: Instant::now() - ago }
    }

    #[test]
    fn refreshed_two_minutes_before_the_assumed_expiry() {
        assert!(token_fetched(Duration::ZERO).is_fresh());
        assert!(token_fetched(ASSUMED_SESSION_LIFETIME - REFRESH_AHEAD - Duration::from_secs(5)).is_fresh());
        assert!(!token_fetched(ASSUMED_SESSION_LIFETIME - REFRESH_AHEAD + Duration::from_secs(5)).is_fresh());
    }
}
