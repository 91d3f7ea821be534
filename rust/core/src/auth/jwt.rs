//! The RFC 7523 assertion: RS256, `iss` = consumer key, `sub` = user, `aud` = login host, `exp`
//! within Salesforce's three-minute window.

use crate::config::Secret;
use crate::error::SalesforceError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
}

/// Keys pasted into JSON configs often carry literal `\n` escapes instead of line breaks.
pub fn normalize_pem(pem: &str) -> String {
    pem.replace("\\n", "\n").replace("\\r", "").trim().to_owned()
}

pub fn assertion(client_id: &str, username: &str, audience: &str, key: &Secret) -> Result<String, SalesforceError> {
    let key = EncodingKey::from_rsa_pem(normalize_pem(key.expose()).as_bytes()).map_err(|e| {
        SalesforceError::TokenRefused {
            status: 0,
            error: "invalid_private_key".into(),
            // The key itself never goes into a message.
            description: format!("salesforce.jwt.private.key is not a PEM RSA private key ({e})"),
        }
    })?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = Claims { iss: client_id, sub: username, aud: audience, exp: now + 150 };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).map_err(|e| SalesforceError::TokenRefused {
        status: 0,
        error: "jwt_signing_failed".into(),
        description: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_newlines_are_restored() {
        assert_eq!(normalize_pem("-----BEGIN PRIVATE KEY-----\\nAB\\n-----END PRIVATE KEY-----\\n"),
            "-----BEGIN PRIVATE KEY-----\nAB\n-----END PRIVATE KEY-----");
    }

    #[test]
    fn bad_key_is_a_clear_error_without_the_key() {
        let e = assertion("cid", "u", "https://login.salesforce.com", &Secret::new("not-a-key-SECRET")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("salesforce.jwt.private.key"), "{text}");
        assert!(!text.contains("SECRET"));
    }
}
