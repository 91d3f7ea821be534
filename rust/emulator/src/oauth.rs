//! `POST /services/oauth2/token`: the client-credentials and JWT-bearer flows, answering with
//! Salesforce's success and error bodies, plus access-token checks for API requests.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

use crate::state::{normalize_id, now_ms, user_id_for, Store, Token, ORG_ID};
use crate::validate::SfError;

const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Salesforce accepts a JWT whose `exp` is at most 3 minutes ahead; allow a little clock skew.
const MAX_EXP_AHEAD_SECS: u64 = 180 + 10;

fn oauth_error(error: &str, description: &str) -> (u16, Value) {
    (400, json!({"error": error, "error_description": description}))
}

/// Handles a token request. `base_url` is the emulator's own URL as the client reached it (the
/// `instance_url` of the answer).
pub fn token(store: &mut Store, body: &[u8], base_url: &str) -> (u16, Value) {
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    match grant {
        "client_credentials" => {
            let id = form.get("client_id").map(String::as_str).unwrap_or("");
            let Some(client) = store.clients.get(id) else {
                return oauth_error("invalid_client_id", "client identifier invalid");
            };
            let secret = form.get("client_secret").map(String::as_str);
            if client.client_secret.is_none() || client.client_secret.as_deref() != secret {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            let user = user_id_for(&client.username);
            (200, issue(store, base_url, user))
        }
        JWT_GRANT => match check_assertion(store, form.get("assertion").map(String::as_str).unwrap_or("")) {
            Ok(user) => (200, issue(store, base_url, user)),
            Err((e, d)) => oauth_error(e, d),
        },
        _ => oauth_error("unsupported_grant_type", "grant type not supported"),
    }
}

/// Checks a JWT bearer assertion; answers the Id of the user it names.
fn check_assertion(store: &Store, assertion: &str) -> Result<String, (&'static str, &'static str)> {
    const BAD: (&str, &str) = ("invalid_grant", "invalid assertion");
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| BAD)?;
    if header.alg != Algorithm::RS256 {
        return Err(BAD);
    }
    // Read the claims before verifying: `iss` says whose key verifies the signature.
    let payload = assertion.split('.').nth(1).ok_or(BAD)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| BAD)?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|_| BAD)?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let client = store.clients.get(iss).ok_or(("invalid_client_id", "client identifier invalid"))?;
    let pem = client.public_key_pem.as_deref().ok_or(BAD)?;
    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| BAD)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    jsonwebtoken::decode::<Value>(assertion, &key, &validation).map_err(|_| BAD)?;

    // Salesforce's documented audiences only: never the instance URL the request was sent to.
    let my_domain = store.my_domain_login_url.as_deref().map(|u| u.trim_end_matches('/'));
    let aud_ok = |a: &str| {
        let a = a.trim_end_matches('/');
        a == "https://login.salesforce.com" || a == "https://test.salesforce.com" || Some(a) == my_domain
    };
    let aud_valid = match claims.get("aud") {
        Some(Value::String(a)) => aud_ok(a),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    if !aud_valid {
        return Err(("invalid_grant", "audience is invalid"));
    }
    let now = now_ms() / 1000;
    let exp = claims.get("exp").and_then(Value::as_u64).ok_or(BAD)?;
    if exp < now || exp > now + MAX_EXP_AHEAD_SECS {
        return Err(BAD);
    }
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if !sub.eq_ignore_ascii_case(&client.username) {
        return Err(("invalid_grant", "user hasn't approved this consumer"));
    }
    Ok(user_id_for(&client.username))
}

fn random_chars(n: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect()
}

/// A new opaque session id shaped like Salesforce's (`00D…!AQ…`), valid for the session timeout.
fn issue(store: &mut Store, base_url: &str, user_id: String) -> Value {
    let token = format!(
        "{ORG_ID}!AQ{}",
        random_chars(96, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._")
    );
    let issued = now_ms();
    store.tokens.insert(token.clone(), Token { expires_at_ms: issued + store.session_timeout_secs * 1000, user_id: user_id.clone() });
    store.issued_tokens.push(token.clone());
    let mut sig = [0u8; 32];
    rand::thread_rng().fill(&mut sig);
    json!({
        "access_token": token,
        "signature": base64::engine::general_purpose::STANDARD.encode(sig),
        "scope": "api",
        "instance_url": base_url,
        "id": format!(
            "https://login.salesforce.com/id/{}/{}",
            normalize_id(ORG_ID).unwrap_or_default(),
            user_id
        ),
        "token_type": "Bearer",
        "issued_at": issued.to_string(),
    })
}

/// Checks `Authorization: Bearer <token>` (Salesforce also accepts the `OAuth` scheme); answers
/// the Id of the user the token acts as.
pub fn check_token(store: &mut Store, authorization: Option<&str>) -> Result<String, SfError> {
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("OAuth ")))
        .map(str::trim)
        .ok_or_else(SfError::invalid_session)?;
    match store.tokens.get(token) {
        Some(t) if t.expires_at_ms > now_ms() => Ok(t.user_id.clone()),
        Some(_) => {
            store.tokens.remove(token);
            Err(SfError::invalid_session())
        }
        None => Err(SfError::invalid_session()),
    }
}
