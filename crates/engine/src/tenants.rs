//! API keys and tenants. Keys are 256-bit random tokens, so a plain SHA-256
//! is a sufficient hash: nothing to brute-force.

use std::collections::HashMap;

use base64::Engine as _;
use maskline_core::TenantId;
use maskline_store::{Tenant, Write};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::{Engine, Result, now, settle};

const ADMIN_KEY_META: &str = "admin_key_sha256";

/// Who a request acts for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Principal {
    Admin,
    Tenant(TenantId),
}

#[derive(Default)]
pub(crate) struct Auth {
    keys: HashMap<[u8; 32], Principal>,
}

impl Auth {
    pub(crate) fn insert_tenant(&mut self, hash: [u8; 32], tenant: TenantId) {
        self.keys.insert(hash, Principal::Tenant(tenant));
    }
}

pub(crate) fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn new_key(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Engine {
    /// Installs the admin key: the configured one, else the stored hash, else
    /// a new key, returned so the caller can print it once.
    pub async fn ensure_admin_key(&self, configured: Option<&str>) -> Result<Option<String>> {
        if let Some(key) = configured {
            self.auth
                .write()
                .keys
                .insert(hash_key(key), Principal::Admin);
            return Ok(None);
        }
        if let Some(stored) = self.store.get_meta(ADMIN_KEY_META).await? {
            let hash = unhex(&stored).ok_or(maskline_store::Error::Corrupt("admin key hash"))?;
            self.auth.write().keys.insert(hash, Principal::Admin);
            return Ok(None);
        }
        let key = new_key("mla");
        let hash = hash_key(&key);
        self.store
            .enqueue(Write::PutMeta {
                key: ADMIN_KEY_META.to_owned(),
                value: hex(&hash),
            })
            .await?;
        self.auth.write().keys.insert(hash, Principal::Admin);
        Ok(Some(key))
    }

    pub fn authenticate(&self, key: &str) -> Option<Principal> {
        self.auth.read().keys.get(&hash_key(key)).copied()
    }

    pub fn tenant_exists(&self, tenant: TenantId) -> bool {
        self.auth
            .read()
            .keys
            .values()
            .any(|p| *p == Principal::Tenant(tenant))
    }

    /// Creates a tenant; its API key is returned here and never again.
    pub async fn create_tenant(&self, name: &str) -> Result<(Tenant, String)> {
        let key = new_key("mlk");
        let tenant = Tenant {
            id: TenantId(uuid::Uuid::now_v7().as_u128()),
            name: name.to_owned(),
            api_key_hash: hash_key(&key),
            created_at: now(),
        };
        let ack = self.store.enqueue(Write::CreateTenant(tenant.clone()));
        let (index, auth, id, hash) = (
            self.index.clone(),
            self.auth.clone(),
            tenant.id,
            tenant.api_key_hash,
        );
        settle(ack, move |outcome| {
            if outcome.is_ok() {
                index.write().add_tenant(id);
                auth.write().insert_tenant(hash, id);
            }
        })
        .await?;
        tracing::info!(tenant = %tenant.id, "tenant created");
        Ok((tenant, key))
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        Ok(self.store.tenants().await?)
    }
}
