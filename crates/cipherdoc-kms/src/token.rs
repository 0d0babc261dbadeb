//! OAuth2 access tokens (Azure client credentials, GCP JWT bearer), cached
//! until shortly before they expire.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::http::{HttpResponse, clip};
use crate::secret::Secret;
use crate::{KmsError, ProviderName};

/// Refresh this long before the announced expiry, so that a token is not
/// used as it expires in flight.
const EARLY: Duration = Duration::from_secs(60);

/// The longest a token is kept, whatever the endpoint announces: real
/// tokens live an hour or so, and an absurd `expires_in` must neither
/// overflow an `Instant` nor pin a token for years.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    slot: Mutex<Option<(Secret, Instant)>>,
}

impl TokenCache {
    /// The cached token, or a new one from `fetch` (which returns the token
    /// and its lifetime). The lock is held while fetching so that concurrent
    /// callers wait for one exchange instead of each making one.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<Secret, KmsError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(Secret, Duration), KmsError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((tok, until)) = slot.as_ref() {
            if Instant::now() < *until {
                return Ok(tok.clone());
            }
        }
        let (tok, lifetime) = fetch().await?;
        let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
        let keep = if lifetime > EARLY * 2 {
            lifetime.saturating_sub(EARLY)
        } else {
            lifetime / 2
        };
        let now = Instant::now();
        // `keep` is capped above, so this cannot overflow; if it ever did,
        // the token is simply not cached.
        if let Some(until) = now.checked_add(keep) {
            *slot = Some((tok.clone(), until));
        }
        Ok(tok)
    }

    /// Forgets the token (after the service rejected it).
    pub(crate) async fn clear(&self) {
        *self.slot.lock().await = None;
    }
}

/// Parses a token endpoint answer (`access_token`, `expires_in`) or its
/// OAuth2 error (`error`, `error_description`).
pub(crate) fn parse_token_response(
    provider: &ProviderName,
    resp: &HttpResponse,
) -> Result<(Secret, Duration), KmsError> {
    let mut v: Value = serde_json::from_slice(&resp.body).map_err(|_| KmsError::Service {
        provider: provider.to_string(),
        status: resp.status,
        code: "token endpoint".into(),
        message: "answer is not JSON".into(),
        attempts: resp.attempts,
    })?;
    if resp.status != 200 {
        let code = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let message = clip(
            v.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        return Err(if (400..500).contains(&resp.status) {
            KmsError::Auth {
                provider: provider.to_string(),
                status: resp.status,
                code,
                message,
            }
        } else {
            KmsError::Service {
                provider: provider.to_string(),
                status: resp.status,
                code,
                message,
                attempts: resp.attempts,
            }
        });
    }
    // Moved out of the `Value`, so that the only copy is zeroized on drop.
    let token = crate::http::take_str(provider, &mut v, "access_token")
        .map_err(|_| KmsError::protocol(provider, "token answer lacks access_token"))?;
    // Azure sends expires_in as a number, some endpoints as a string.
    let secs = match v.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| KmsError::protocol(provider, "token answer lacks expires_in"))?;
    let secs = secs.min(MAX_TOKEN_LIFETIME.as_secs());
    Ok((Secret::new(token.as_str()), Duration::from_secs(secs)))
}
