//! The tenants' webhook settings in memory: read on every event (does the
//! tenant want it?), every dispatcher pass and every intercepted call.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use maskline_core::{EventType, TenantId, selected};
use maskline_store::Webhook;
use parking_lot::RwLock;
use rand::Rng;

use crate::Error;

/// Longest URL accepted for a webhook or an intercept callback.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Default)]
pub struct Webhooks {
    by_tenant: RwLock<HashMap<TenantId, Arc<Webhook>>>,
}

impl Webhooks {
    pub fn new(all: Vec<Webhook>) -> Webhooks {
        Webhooks {
            by_tenant: RwLock::new(all.into_iter().map(|w| (w.tenant, Arc::new(w))).collect()),
        }
    }

    pub fn get(&self, tenant: TenantId) -> Option<Arc<Webhook>> {
        self.by_tenant.read().get(&tenant).cloned()
    }

    pub fn set(&self, webhook: Webhook) {
        self.by_tenant
            .write()
            .insert(webhook.tenant, Arc::new(webhook));
    }

    pub fn remove(&self, tenant: TenantId) {
        self.by_tenant.write().remove(&tenant);
    }

    pub fn all(&self) -> Vec<Arc<Webhook>> {
        self.by_tenant.read().values().cloned().collect()
    }

    /// Whether an event of this type, happening now, is to be delivered.
    pub fn wants(&self, tenant: TenantId, kind: EventType) -> bool {
        self.by_tenant
            .read()
            .get(&tenant)
            .is_some_and(|w| selected(&w.events, kind))
    }
}

/// A URL Maskline will POST to: absolute `http` or `https`, with a host, no
/// credentials and no fragment. Returns it normalised.
pub fn validate_url(s: &str) -> Result<String, Error> {
    let bad = |why: &'static str| Err(Error::InvalidUrl(why));
    if s.len() > MAX_URL_LEN {
        return bad("longer than 2048 characters");
    }
    let Ok(url) = url::Url::parse(s) else {
        return bad("not an absolute URL");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("the scheme must be http or https");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("credentials in the URL are not accepted; use a token in the path or query");
    }
    if url.fragment().is_some() {
        return bad("a fragment is never sent; remove it");
    }
    Ok(url.to_string())
}

/// A new signing secret: `whsec_` and 32 random bytes, base64url.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for ok in [
            "http://127.0.0.1:9000/hook",
            "https://hooks.example.com/maskline?token=abc",
            "http://[::1]:8080/",
        ] {
            assert!(validate_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/relative",
            "ftp://example.com/",
            "http://user:pw@example.com/",
            "http://example.com/#frag",
            "mailto:a@example.com",
            "http://",
            &format!("http://example.com/{}", "a".repeat(MAX_URL_LEN)),
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_fresh_and_long() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_") && a.len() == 6 + 43, "{a}");
    }
}
