//! API keys and tenants. Keys are 256-bit random tokens, so a plain SHA-256
//! is a sufficient hash: nothing to brute-force.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use maskline_core::TenantId;
use maskline_store::{ApiKey, KeyId, Tenant, Write};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::{Engine, Error, Result, now, settle};

const ADMIN_KEY_META: &str = "admin_key_sha256";

/// Who a request acts for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Principal {
    Admin,
    Tenant(TenantId),
}

/// Who a request acts for, and by which key (`None`: the admin key).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub key: Option<KeyId>,
}

#[derive(Default)]
pub(crate) struct Auth {
    keys: HashMap<[u8; 32], Caller>,
    tenants: HashSet<TenantId>,
}

impl Auth {
    pub(crate) fn add_tenant(&mut self, tenant: TenantId) {
        self.tenants.insert(tenant);
    }

    /// Installs `key` if it works, forgets it if revoked.
    pub(crate) fn apply_key(&mut self, key: &ApiKey) {
        if key.revoked_at.is_some() {
            self.keys.remove(&key.hash);
            return;
        }
        self.tenants.insert(key.tenant);
        self.keys.insert(
            key.hash,
            Caller {
                principal: Principal::Tenant(key.tenant),
                key: Some(key.id),
            },
        );
    }

    /// Makes the tenant keys exactly `all`'s working ones (the admin key
    /// stays).
    pub(crate) fn replace_keys(&mut self, all: &[ApiKey]) {
        self.keys.retain(|_, c| c.principal == Principal::Admin);
        for key in all {
            self.apply_key(key);
        }
    }
}

/// Keys recently looked up in the database and not found: not looked up
/// again for a second, so a client retrying a wrong key costs one query a
/// second, not one a request.
#[derive(Default)]
pub(crate) struct Misses {
    at: HashMap<[u8; 32], Instant>,
}

const MISS_TTL: Duration = Duration::from_secs(1);
const MAX_MISSES: usize = 10_000;

impl Misses {
    fn recent(&self, hash: &[u8; 32]) -> bool {
        self.at.get(hash).is_some_and(|t| t.elapsed() < MISS_TTL)
    }

    fn add(&mut self, hash: [u8; 32]) {
        if self.at.len() >= MAX_MISSES {
            self.at.retain(|_, t| t.elapsed() < MISS_TTL);
            if self.at.len() >= MAX_MISSES {
                self.at.clear();
            }
        }
        self.at.insert(hash, Instant::now());
    }
}

/// The first characters of a key, shown in lists to tell keys apart.
fn prefix_of(key: &str) -> String {
    key.chars().take(12).collect()
}

pub(crate) fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub(crate) fn new_key(prefix: &str) -> String {
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

/// Longest tenant name, in characters.
pub const MAX_TENANT_NAME_CHARS: usize = 200;
/// Highest API rate (requests a second) a tenant or the server may have.
pub const MAX_RATE_LIMIT: u32 = 10_000_000;

impl Engine {
    /// Installs the admin key: the configured one, else the stored hash, else
    /// a new key, returned so the caller can print it once.
    pub async fn ensure_admin_key(&self, configured: Option<&str>) -> Result<Option<String>> {
        let admin = Caller {
            principal: Principal::Admin,
            key: None,
        };
        if let Some(key) = configured {
            self.auth.write().keys.insert(hash_key(key), admin);
            return Ok(None);
        }
        if let Some(stored) = self.store.get_meta(ADMIN_KEY_META).await? {
            let hash = unhex(&stored).ok_or(maskline_store::Error::Corrupt("admin key hash"))?;
            self.auth.write().keys.insert(hash, admin);
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
        self.auth.write().keys.insert(hash, admin);
        Ok(Some(key))
    }

    /// Who `key` acts for, from memory.
    pub fn authenticate(&self, key: &str) -> Option<Principal> {
        self.auth
            .read()
            .keys
            .get(&hash_key(key))
            .map(|c| c.principal)
    }

    /// Who `key` acts for. A key this node does not know yet is looked up
    /// in the database, so that a key works on every node as soon as the
    /// node that created it answered `201` (its change notice may still be
    /// on its way).
    pub async fn authenticate_fresh(&self, key: &str) -> Option<Caller> {
        let hash = hash_key(key);
        if let Some(caller) = self.auth.read().keys.get(&hash).copied() {
            return Some(caller);
        }
        if self.misses.lock().recent(&hash) {
            return None;
        }
        match self.store.api_key(hash).await {
            Ok(Some(found)) if found.revoked_at.is_none() => {
                self.auth.write().apply_key(&found);
                Some(Caller {
                    principal: Principal::Tenant(found.tenant),
                    key: Some(found.id),
                })
            }
            Ok(_) => {
                self.misses.lock().add(hash);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "looking up an API key failed");
                None
            }
        }
    }

    pub fn tenant_exists(&self, tenant: TenantId) -> bool {
        self.auth.read().tenants.contains(&tenant)
    }

    /// A new key for `tenant`; the key itself is returned here and never
    /// again. Its `Ok` means it is durable, so it works on every node.
    pub async fn create_key(&self, tenant: TenantId) -> Result<(ApiKey, String)> {
        let secret = new_key("mlk");
        let key = ApiKey {
            id: KeyId(uuid::Uuid::now_v7().as_u128()),
            tenant,
            prefix: prefix_of(&secret),
            hash: hash_key(&secret),
            created_at: now(),
            revoked_at: None,
        };
        let ack = self.store.enqueue(Write::CreateKey(key.clone()));
        let (auth, installed) = (self.auth.clone(), key.clone());
        settle(ack, move |outcome| {
            if outcome.is_ok() {
                auth.write().apply_key(&installed);
            }
        })
        .await?;
        tracing::info!(%tenant, key = %key.id, "API key created");
        Ok((key, secret))
    }

    /// `tenant`'s keys, revoked ones included, oldest first.
    pub async fn keys(&self, tenant: TenantId) -> Result<Vec<ApiKey>> {
        let all = self.store.api_keys().await?;
        Ok(all.into_iter().filter(|k| k.tenant == tenant).collect())
    }

    /// Revokes `tenant`'s key `id`: `false` when it has no such working key.
    pub async fn revoke_key(&self, tenant: TenantId, id: KeyId) -> Result<bool> {
        let Some(key) = self
            .keys(tenant)
            .await?
            .into_iter()
            .find(|k| k.id == id && k.revoked_at.is_none())
        else {
            return Ok(false);
        };
        let at = now();
        let ack = self.store.enqueue(Write::RevokeKey { tenant, id, at });
        let auth = self.auth.clone();
        let revoked = ApiKey {
            revoked_at: Some(at),
            ..key
        };
        settle(ack, move |outcome| {
            if outcome.is_ok() {
                auth.write().apply_key(&revoked);
            }
        })
        .await?;
        tracing::info!(%tenant, key = %id, "API key revoked");
        Ok(true)
    }

    /// Creates a tenant; its API key is returned here and never again.
    /// The caller checks the name: 1 to [`MAX_TENANT_NAME_CHARS`].
    pub async fn create_tenant(&self, name: &str) -> Result<(Tenant, String)> {
        let key = new_key("mlk");
        let tenant = Tenant {
            id: TenantId(uuid::Uuid::now_v7().as_u128()),
            name: name.to_owned(),
            api_key_hash: hash_key(&key),
            created_at: now(),
        };
        let first = tenant.first_key(&prefix_of(&key));
        let ack = self
            .store
            .enqueue(Write::CreateTenant(tenant.clone(), first.clone()));
        let (index, auth, id) = (self.index.clone(), self.auth.clone(), tenant.id);
        settle(ack, move |outcome| {
            if outcome.is_ok() {
                index.write().add_tenant(id);
                let mut auth = auth.write();
                auth.add_tenant(id);
                auth.apply_key(&first);
            }
        })
        .await?;
        tracing::info!(tenant = %tenant.id, "tenant created");
        Ok((tenant, key))
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        Ok(self.store.tenants().await?)
    }

    /// The tenant's own API rate (requests a second, `0` for none);
    /// `None`: the server's applies. A read lock: cheap enough for every
    /// request.
    pub fn rate_limit(&self, tenant: TenantId) -> Option<u32> {
        self.rate_limits.read().get(&tenant).copied()
    }

    /// Gives the tenant its own API rate, or with `None` the server's
    /// again; every node applies it once it is durable (others on their
    /// next change notice).
    pub async fn set_rate_limit(&self, tenant: TenantId, rate_limit: Option<u32>) -> Result<()> {
        if !self.tenant_exists(tenant) {
            return Err(Error::TenantNotFound);
        }
        let serial = self.rate_limit_lock.clone().lock_owned().await;
        let ack = self.store.enqueue(Write::PutTenantLimit {
            tenant,
            rate_limit,
            updated_at: now(),
        });
        let memory = self.rate_limits.clone();
        settle(ack, move |outcome| {
            if outcome.is_ok() {
                let mut limits = memory.write();
                match rate_limit {
                    Some(r) => limits.insert(tenant, r),
                    None => limits.remove(&tenant),
                };
            }
            drop(serial);
        })
        .await?;
        tracing::info!(%tenant, ?rate_limit, "tenant's API rate set");
        Ok(())
    }

    /// Reads every tenant's own rate again (another node changed one).
    pub(crate) async fn reload_rate_limits(&self) -> Result<()> {
        let _serial = self.rate_limit_lock.lock().await;
        let limits = self.store.tenant_limits().await?.into_iter().collect();
        *self.rate_limits.write() = limits;
        Ok(())
    }
}

impl Engine {
    /// Queues an entry of the audit log. Not waited for: the request it
    /// records has already been answered, and the entry commits with the
    /// writer's next batch.
    pub fn record_audit(&self, entry: maskline_store::AuditEntry) {
        drop(self.store.enqueue(Write::Audit(entry)));
    }

    /// `tenant`'s audit log, newest first, before sequence number `before`.
    pub async fn audit(
        &self,
        tenant: TenantId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, maskline_store::AuditEntry)>> {
        Ok(self
            .store
            .audit(
                tenant,
                maskline_store::Page {
                    after: before,
                    limit,
                },
            )
            .await?)
    }
}
