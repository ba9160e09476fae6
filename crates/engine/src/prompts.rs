//! Tenants' own prompts: a tenant's WAV replaces a built-in prompt by name.
//!
//! Every tenant's recordings are kept in memory, decoded (8 kHz mono PCM16
//! in a shared `Arc<[i16]>`), so a call's lookup is a read lock and a
//! reference count ([`Engine::prompt`]). The store holds the same samples;
//! memory changes only once a write is durable, and follows other nodes'
//! writes through [`Change::Prompts`](maskline_store::Change::Prompts).

use std::collections::HashMap;

use maskline_core::{TenantId, UnixTime};
use maskline_media::player::Prompt;
use maskline_media::prompts::{Language, PromptName, builtin};
use maskline_store::Write;

use crate::{Engine, Error, Result, now, settle};

/// What a prompt name plays for one tenant, as `GET /v1/prompts` lists it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PromptInfo {
    pub name: PromptName,
    pub source: PromptSource,
    pub duration_ms: u64,
    /// When the tenant's recording was put; `None` for a built-in one.
    pub updated_at: Option<UnixTime>,
}

/// Whose recording plays.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PromptSource {
    /// The tenant's own.
    Tenant,
    /// The one that ships with the binary.
    Builtin,
}

impl PromptSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptSource::Tenant => "tenant",
            PromptSource::Builtin => "builtin",
        }
    }
}

/// A tenant's recording in memory.
#[derive(Clone, Debug)]
pub(crate) struct TenantPrompt {
    prompt: Prompt,
    updated_at: UnixTime,
}

pub(crate) type PromptMap = HashMap<(TenantId, PromptName), TenantPrompt>;

fn duration_ms(prompt: &Prompt) -> u64 {
    u64::try_from(prompt.duration().as_millis()).unwrap_or(u64::MAX)
}

impl Engine {
    /// The tenant's own recording of `name`, if it put one; `None` means
    /// the built-in prompt plays. Cheap enough for the SIP thread: a read
    /// lock and a reference count, no I/O.
    pub fn prompt(&self, tenant: TenantId, name: PromptName) -> Option<Prompt> {
        self.prompts
            .read()
            .get(&(tenant, name))
            .map(|p| p.prompt.clone())
    }

    /// Replaces the built-in `name` with the tenant's WAV (8 kHz mono PCM16,
    /// A-law or μ-law), once it is durable. A WAV that is not one of those
    /// is [`Error::InvalidWav`] and changes nothing.
    pub async fn put_prompt(
        &self,
        tenant: TenantId,
        name: PromptName,
        wav: &[u8],
    ) -> Result<PromptInfo> {
        let samples = maskline_media::wav::read_prompt(wav).map_err(Error::InvalidWav)?;
        let prompt = Prompt::new(samples.as_slice());
        let updated_at = now();
        let info = PromptInfo {
            name,
            source: PromptSource::Tenant,
            duration_ms: duration_ms(&prompt),
            updated_at: Some(updated_at),
        };
        let serial = self.prompt_lock.clone().lock_owned().await;
        let ack = self.store.enqueue(Write::PutPrompt {
            tenant,
            name: name.as_str().to_owned(),
            samples,
            updated_at,
        });
        // Memory follows the store even if our caller goes away meanwhile.
        let memory = self.prompts.clone();
        settle(ack, move |outcome| {
            if outcome.is_ok() {
                memory
                    .write()
                    .insert((tenant, name), TenantPrompt { prompt, updated_at });
            }
            drop(serial);
        })
        .await?;
        tracing::info!(%tenant, prompt = %name, "prompt replaced");
        Ok(info)
    }

    /// Forgets the tenant's recording of `name`, so the built-in one plays
    /// again; `false` if it had none.
    pub async fn delete_prompt(&self, tenant: TenantId, name: PromptName) -> Result<bool> {
        let serial = self.prompt_lock.clone().lock_owned().await;
        if !self.prompts.read().contains_key(&(tenant, name)) {
            return Ok(false);
        }
        let ack = self.store.enqueue(Write::DeletePrompt {
            tenant,
            name: name.as_str().to_owned(),
        });
        let memory = self.prompts.clone();
        settle(ack, move |outcome| {
            if outcome.is_ok() {
                memory.write().remove(&(tenant, name));
            }
            drop(serial);
        })
        .await?;
        tracing::info!(%tenant, prompt = %name, "prompt reverted to the built-in one");
        Ok(true)
    }

    /// What every prompt name plays for the tenant, in [`PromptName::ALL`]
    /// order. A built-in prompt's duration is its Mandarin recording's.
    pub fn prompts(&self, tenant: TenantId) -> Vec<PromptInfo> {
        let own = self.prompts.read();
        PromptName::ALL
            .into_iter()
            .map(|name| match own.get(&(tenant, name)) {
                Some(p) => PromptInfo {
                    name,
                    source: PromptSource::Tenant,
                    duration_ms: duration_ms(&p.prompt),
                    updated_at: Some(p.updated_at),
                },
                None => PromptInfo {
                    name,
                    source: PromptSource::Builtin,
                    duration_ms: duration_ms(&builtin(name, Language::Zh)),
                    updated_at: None,
                },
            })
            .collect()
    }

    /// Reads every tenant's prompts again (another node changed one); not
    /// while a change here is being made, which it could undo.
    pub(crate) async fn reload_prompts(&self) -> Result<()> {
        let _serial = self.prompt_lock.lock().await;
        let all = load_prompts(&*self.store).await?;
        *self.prompts.write() = all;
        Ok(())
    }
}

/// Every tenant's prompts from the store. A name this build does not know
/// (a later build's) is left out: it has nothing to play it for.
pub(crate) async fn load_prompts(store: &dyn maskline_store::Store) -> Result<PromptMap> {
    let mut map = PromptMap::new();
    for p in store.prompts().await? {
        let Some(name) = PromptName::parse(&p.name) else {
            tracing::warn!(tenant = %p.tenant, prompt = %p.name, "stored prompt of a name this build does not know; ignored");
            continue;
        };
        map.insert(
            (p.tenant, name),
            TenantPrompt {
                prompt: Prompt::new(p.samples),
                updated_at: p.updated_at,
            },
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use maskline_store::{Change, SqliteStore, Store};

    use super::*;
    use crate::Config;

    /// A WAV header for `data_len` bytes of 8 kHz audio.
    fn wav(format: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let block = channels * bits / 8;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&format.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        out.extend_from_slice(&block.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn pcm(samples: &[i16]) -> Vec<u8> {
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        wav(1, 1, 8000, 16, &bytes)
    }

    async fn engine_on(store: Arc<dyn Store>) -> (Engine, TenantId) {
        let engine = Engine::open(store, Config::default()).await.unwrap();
        let tenants = engine.store.tenants().await.unwrap();
        let tenant = match tenants.first() {
            Some(t) => t.id,
            None => engine.create_tenant("t").await.unwrap().0.id,
        };
        (engine, tenant)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_put_prompt_replaces_the_builtin_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let (engine, tenant) = engine_on(store).await;
        let name = PromptName::Expired;
        assert_eq!(engine.prompt(tenant, name), None);
        assert!(
            engine
                .prompts(tenant)
                .iter()
                .all(|p| p.source == PromptSource::Builtin && p.duration_ms > 0)
        );

        // 0.5 s of PCM16.
        let samples: Vec<i16> = (0..4000).map(|i| (i % 100) as i16 * 100).collect();
        let info = engine
            .put_prompt(tenant, name, &pcm(&samples))
            .await
            .unwrap();
        assert_eq!(info.source, PromptSource::Tenant);
        assert_eq!(info.duration_ms, 500);
        assert!(info.updated_at.is_some());
        let played = engine.prompt(tenant, name).unwrap();
        assert_eq!(played.samples(), samples.as_slice());
        let listed = engine.prompts(tenant);
        assert_eq!(listed.len(), PromptName::ALL.len());
        assert_eq!(listed[2], info);
        assert_eq!(engine.prompt(tenant, PromptName::NoBinding), None);
        assert_eq!(engine.prompt(TenantId(tenant.0 + 1), name), None);

        // A-law decodes to linear samples.
        let alaw = wav(6, 1, 8000, 8, &[0xD5; 800]);
        let info = engine
            .put_prompt(tenant, PromptName::NoBinding, &alaw)
            .await
            .unwrap();
        assert_eq!(info.duration_ms, 100);
        let decoded = engine.prompt(tenant, PromptName::NoBinding).unwrap();
        assert_eq!(decoded.samples().len(), 800);

        assert!(engine.delete_prompt(tenant, name).await.unwrap());
        assert!(!engine.delete_prompt(tenant, name).await.unwrap());
        assert_eq!(engine.prompt(tenant, name), None);
        assert_eq!(engine.prompts(tenant)[2].source, PromptSource::Builtin);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unusable_wav_is_refused_with_its_fault_and_changes_nothing() {
        use maskline_media::wav::WavFault;

        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let (engine, tenant) = engine_on(store.clone()).await;
        let name = PromptName::Forbidden;
        let cases: [(Vec<u8>, WavFault); 4] = [
            (
                wav(1, 1, 16_000, 16, &[0; 64]),
                WavFault::UnsupportedSampleRate(16_000),
            ),
            (
                wav(1, 2, 8000, 16, &[0; 64]),
                WavFault::UnsupportedChannels(2),
            ),
            (b"not a wav at all".to_vec(), WavFault::NotRiff),
            (pcm(&[]), WavFault::Empty),
        ];
        for (bytes, expected) in cases {
            match engine.put_prompt(tenant, name, &bytes).await {
                Err(Error::InvalidWav(maskline_media::Error::Wav(f))) => assert_eq!(f, expected),
                other => panic!("{expected:?}: {other:?}"),
            }
        }
        assert!(matches!(
            engine.put_prompt(tenant, name, &[]).await,
            Err(Error::InvalidWav(maskline_media::Error::Wav(
                WavFault::Truncated { .. }
            )))
        ));
        assert_eq!(engine.prompt(tenant, name), None);
        assert!(store.prompts().await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn prompts_are_loaded_at_open_and_reloaded_on_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let (one, tenant) = engine_on(store.clone()).await;
        one.put_prompt(tenant, PromptName::PreConnect, &pcm(&[7; 160]))
            .await
            .unwrap();
        // A second engine over the same store stands for a restart, or for
        // another node.
        let (two, same) = engine_on(store.clone()).await;
        assert_eq!(same, tenant);
        let loaded = two.prompt(tenant, PromptName::PreConnect).unwrap();
        assert_eq!(loaded.samples(), [7; 160].as_slice());
        assert_eq!(
            two.prompts(tenant)[5].updated_at,
            one.prompts(tenant)[5].updated_at
        );

        one.put_prompt(tenant, PromptName::PreConnect, &pcm(&[9; 320]))
            .await
            .unwrap();
        one.put_prompt(tenant, PromptName::LastMinute, &pcm(&[1; 160]))
            .await
            .unwrap();
        assert_eq!(two.prompt(tenant, PromptName::PreConnect), Some(loaded));
        two.apply_change(Change::Prompts).await;
        let reloaded = two.prompt(tenant, PromptName::PreConnect).unwrap();
        assert_eq!(reloaded.samples(), [9; 320].as_slice());
        assert!(two.prompt(tenant, PromptName::LastMinute).is_some());

        assert!(
            one.delete_prompt(tenant, PromptName::LastMinute)
                .await
                .unwrap()
        );
        two.apply_change(Change::Prompts).await;
        assert_eq!(two.prompt(tenant, PromptName::LastMinute), None);
    }
}
