//! Encryption at rest: every party number, message text, webhook secret,
//! stored response and event body goes into the database sealed.
//!
//! - The **master key** (32 random bytes, hex in a 0600 file,
//!   `MASKLINE_MASTER_KEY_FILE`) never reaches the database. It wraps:
//! - **data keys** (`meta` rows `seal.key.<id>`), one of which is current
//!   (`seal.current`: `<id> <from>`, sealing with it starts at `from`, a few
//!   seconds after a rotation wrote it, so that every node has read the key
//!   before any value sealed with it reaches them). Old keys stay readable.
//! - **blind keys**: the HMAC-SHA256 keys of the blind index, the
//!   deterministic token stored where a party number is looked up or kept
//!   unique. The first (`seal.blind`) makes untagged tokens (`~<base64>`);
//!   a rotation to data key `n` adds `seal.blind.<n>`, whose tokens are
//!   tagged (`~<n>:<base64>`) and which takes over with that data key. The
//!   background reseal rewrites every token with the values it reseals;
//!   until it has, lookups ask for a number's token under both the current
//!   and the previous blind key ([`Keyring::lookup_tokens`]), which is why
//!   a rotation waits for the previous one's reseal to finish.
//!
//! A sealed value is text, `ml1:<key id>:<base64url(nonce ‖ ciphertext)>`,
//! XChaCha20-Poly1305 with a random 192-bit nonce, the column's name as
//! associated data (a value copied into another column does not open). A
//! column that held clear text before this build reads a value without the
//! prefix as clear (rows an older node wrote); [`Column`] says which may.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use rand::Rng;
use sha2::Sha256;

use crate::{Error, Result};

/// The prefix of every sealed value.
const PREFIX: &str = "ml1:";
/// The prefix of every blind token (never a digit or `+`, so a token is never
/// mistaken for a number written before sealing).
const BLIND_PREFIX: char = '~';
const NONCE_LEN: usize = 24;
/// Bytes [`Keyring::seal_bytes`] adds: key id, nonce, tag.
pub const BYTES_OVERHEAD: usize = 4 + NONCE_LEN + 16;

/// Where a sealed value lives: its name is the associated data, so a value
/// opens only in the column it was sealed for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Column {
    BindingA,
    BindingB,
    CallCaller,
    CallCallee,
    MessageSender,
    MessageRecipient,
    MessageBody,
    PartSender,
    PartBytes,
    EventBody,
    IdempotencyBody,
    WebhookSecret,
    Recording,
}

impl Column {
    pub const fn name(self) -> &'static str {
        match self {
            Column::BindingA => "bindings.a",
            Column::BindingB => "bindings.b",
            Column::CallCaller => "calls.caller",
            Column::CallCallee => "calls.callee",
            Column::MessageSender => "messages.sender",
            Column::MessageRecipient => "messages.recipient",
            Column::MessageBody => "messages.body",
            Column::PartSender => "message_parts.sender",
            Column::PartBytes => "message_parts.bytes",
            Column::EventBody => "events.body",
            Column::IdempotencyBody => "idempotency.body",
            Column::WebhookSecret => "webhooks.secret",
            Column::Recording => "recording",
        }
    }
}

/// The key that wraps the data keys, read from (or generated into) a file
/// that only its owner may read.
#[derive(Clone)]
pub struct MasterKey(XChaCha20Poly1305);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// A fresh random key that lives only in memory (tests, throwaway
    /// stores).
    pub fn ephemeral() -> MasterKey {
        MasterKey(XChaCha20Poly1305::new(&XChaCha20Poly1305::generate_key(
            &mut OsRng,
        )))
    }

    /// Reads the key at `path`, or creates it (mode 0600) when there is
    /// none. Written whole to a file of its own and then linked into place,
    /// so that nodes starting at once never read a half-written key and all
    /// end up with the one that was linked first.
    pub fn load_or_create(path: &Path) -> Result<MasterKey> {
        match fs::read_to_string(path) {
            Ok(text) => MasterKey::from_text(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                let cannot = |what: &str, e: std::io::Error| {
                    Error::Keys(format!("cannot {what} {}: {e}", path.display()))
                };
                let tmp = path.with_extension(format!("new-{}", std::process::id()));
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| cannot("create", e))?;
                file.write_all(hex(&key).as_bytes())
                    .and_then(|()| file.write_all(b"\n"))
                    .and_then(|()| file.sync_all())
                    .map_err(|e| cannot("write", e))?;
                let linked = fs::hard_link(&tmp, path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(MasterKey(XChaCha20Poly1305::new(&key))),
                    // Another process made it first: theirs it is.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        MasterKey::load_or_create(path)
                    }
                    Err(e) => Err(cannot("create", e)),
                }
            }
            Err(e) => Err(Error::Keys(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Reads the key at `path`, which must exist.
    pub fn load(path: &Path) -> Result<MasterKey> {
        let text = fs::read_to_string(path)
            .map_err(|e| Error::Keys(format!("cannot read {}: {e}", path.display())))?;
        MasterKey::from_text(path, &text)
    }

    /// The key in `text`, the contents of `path`.
    fn from_text(path: &Path, text: &str) -> Result<MasterKey> {
        unhex(text.trim())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(|key| MasterKey(XChaCha20Poly1305::new(&key.into())))
            .ok_or_else(|| {
                Error::Keys(format!(
                    "{} does not hold a master key (64 hex digits)",
                    path.display()
                ))
            })
    }

    fn wrap(&self, name: &str, key: &[u8]) -> String {
        seal_with(&self.0, name, key)
    }

    fn unwrap(&self, name: &str, wrapped: &str) -> Result<Vec<u8>> {
        open_with(&self.0, name, wrapped).ok_or_else(|| {
            Error::Keys(format!(
                "the master key does not open `{name}`: this database was sealed under \
                 another master key (MASKLINE_MASTER_KEY_FILE)"
            ))
        })
    }
}

/// Seconds between `maskline keys rotate` and the new key sealing: every
/// node reads the keyring every 2 s, so each knows the key before any value
/// sealed with it reaches it.
pub const ROTATION_DELAY_SECS: i64 = 10;

/// The statements of a rotation, for either back end: the new key's rows
/// (data and blind key, inserted, failing if another rotation took its id)
/// and the new
/// `seal.current` (set only where it still holds what was read).
pub struct Rotation {
    pub id: u32,
    pub key_row: (String, String),
    /// The blind key that takes over with the data key.
    pub blind_row: (String, String),
    pub current: String,
    pub was_current: String,
    pub from: i64,
}

impl Rotation {
    /// The rotation of the keyring `rows` describe (which `master` must
    /// open): the next data key, sealing [`ROTATION_DELAY_SECS`] after `now`.
    pub fn plan(master: &MasterKey, rows: &MetaRows, now: i64) -> Result<Rotation> {
        let was_current = rows
            .iter()
            .find(|(k, _)| k == META_CURRENT)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                Error::Keys("the database has no keys yet: start the server on it once".into())
            })?;
        let ring = Keyring::from_meta(master.clone(), rows)?;
        let current = ring.current.read().id;
        let sealed_under = rows
            .iter()
            .find(|(k, _)| k == crate::reseal::META_SEALED_UNDER)
            .and_then(|(_, v)| v.parse::<u32>().ok());
        if sealed_under != Some(current) {
            // Lookups ask for a number's token under two blind keys, the
            // current and the previous: a third could hide rows from them.
            return Err(Error::Keys(format!(
                "the values sealed before key {current} are still being resealed under it \
                 (a running server does that within a minute or so of the last rotation, \
                 or of its start); rotate again once it has finished"
            )));
        }
        let id = ring.keys.read().keys().max().copied().unwrap_or(0) + 1;
        let sealing = ring.sealing_key(now);
        let from = now + ROTATION_DELAY_SECS;
        let data = XChaCha20Poly1305::generate_key(&mut OsRng);
        let blind = XChaCha20Poly1305::generate_key(&mut OsRng);
        Ok(Rotation {
            id,
            key_row: (meta_key(id), master.wrap(&meta_key(id), &data)),
            blind_row: (blind_key(id), master.wrap(&blind_key(id), &blind)),
            current: format!("{id} {from} {sealing}"),
            was_current,
            from,
        })
    }
}

/// The `meta` rows a keyring is made of, as (key, value).
pub type MetaRows = Vec<(String, String)>;

/// The data keys, which one seals, and the blind keys. Shared by a store's
/// writer and readers; [`Keyring::refresh`] learns keys another process
/// added.
pub struct Keyring {
    master: MasterKey,
    keys: RwLock<HashMap<u32, XChaCha20Poly1305>>,
    current: RwLock<Current>,
    /// By id: 0 is `seal.blind`, `n` came with data key `n`.
    blinds: RwLock<HashMap<u32, Hmac<Sha256>>>,
}

/// A blind key and its id (which tags its tokens unless it is 0).
#[derive(Clone)]
struct Blind {
    id: u32,
    mac: Hmac<Sha256>,
}

impl Blind {
    fn token(&self, clear: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(clear.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(28);
        out.push(BLIND_PREFIX);
        if self.id != 0 {
            out.push_str(&self.id.to_string());
            out.push(':');
        }
        B64.encode_string(&tag[..16], &mut out);
        out
    }
}

#[derive(Clone)]
struct Current {
    id: u32,
    from: i64,
    /// The key sealing before `from`.
    previous: u32,
    /// The ciphers of `id` and `previous`, kept here so that sealing never
    /// looks a key up.
    ciphers: Option<(XChaCha20Poly1305, XChaCha20Poly1305)>,
    /// The blind keys that go with `id` and with `previous`.
    blinds: Option<(Blind, Blind)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.current.read();
        f.debug_struct("Keyring")
            .field("current", &c.id)
            .field("from", &c.from)
            .finish_non_exhaustive()
    }
}

/// What a keyring's `meta` rows are named.
pub const META_PREFIX: &str = "seal.";
const META_BLIND: &str = "seal.blind";
const META_CURRENT: &str = "seal.current";

fn meta_key(id: u32) -> String {
    format!("seal.key.{id}")
}

fn blind_key(id: u32) -> String {
    format!("{META_BLIND}.{id}")
}

impl Keyring {
    /// The rows a new database starts with: data key 1, current from the
    /// beginning, the first blind key, and "everything (nothing yet) is
    /// sealed under key 1".
    pub fn genesis(master: &MasterKey) -> MetaRows {
        let data = XChaCha20Poly1305::generate_key(&mut OsRng);
        let blind = XChaCha20Poly1305::generate_key(&mut OsRng);
        vec![
            (meta_key(1), master.wrap(&meta_key(1), &data)),
            (META_BLIND.to_owned(), master.wrap(META_BLIND, &blind)),
            (META_CURRENT.to_owned(), "1 0 1".to_owned()),
            (crate::reseal::META_SEALED_UNDER.to_owned(), "1".to_owned()),
        ]
    }

    /// The keyring the `meta` rows describe (every row whose key starts with
    /// [`META_PREFIX`]).
    pub fn from_meta(master: MasterKey, rows: &MetaRows) -> Result<Keyring> {
        if !rows.iter().any(|(k, _)| k == META_BLIND) {
            return Err(Error::Keys("the database has no blind-index key".into()));
        }
        let ring = Keyring {
            master,
            keys: RwLock::new(HashMap::new()),
            current: RwLock::new(Current {
                id: 0,
                from: 0,
                previous: 0,
                ciphers: None,
                blinds: None,
            }),
            blinds: RwLock::new(HashMap::new()),
        };
        ring.refresh(rows)?;
        Ok(ring)
    }

    /// Learns the data keys, blind keys and current key in `rows` (keys
    /// are only ever added).
    pub fn refresh(&self, rows: &MetaRows) -> Result<()> {
        let mut current = None;
        for (k, v) in rows {
            let blind_id = if k == META_BLIND {
                Some(0)
            } else {
                k.strip_prefix("seal.blind.")
                    .map(|id| {
                        id.parse::<u32>()
                            .map_err(|_| Error::Keys(format!("bad key row `{k}`")))
                    })
                    .transpose()?
            };
            if let Some(id) = blind_id {
                if self.blinds.read().contains_key(&id) {
                    continue;
                }
                let key = self.master.unwrap(k, v)?;
                let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
                    .map_err(|_| Error::Keys(format!("`{k}` is not a blind-index key")))?;
                self.blinds.write().insert(id, mac);
            } else if let Some(id) = k.strip_prefix("seal.key.") {
                let id: u32 = id
                    .parse()
                    .map_err(|_| Error::Keys(format!("bad key row `{k}`")))?;
                if self.keys.read().contains_key(&id) {
                    continue;
                }
                let key = self.master.unwrap(k, v)?;
                let key: [u8; 32] = key
                    .try_into()
                    .map_err(|_| Error::Keys(format!("`{k}` is not a 256-bit key")))?;
                self.keys
                    .write()
                    .insert(id, XChaCha20Poly1305::new(&key.into()));
            } else if k == META_CURRENT {
                let mut parts = v.split(' ').map(str::parse::<i64>);
                let (Some(Ok(id)), Some(Ok(from)), Some(Ok(previous))) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(Error::Keys(format!("bad `{META_CURRENT}` row `{v}`")));
                };
                current = Some((id as u32, from, previous as u32));
            }
        }
        let (id, from, previous) =
            current.ok_or_else(|| Error::Keys("no current data key".into()))?;
        let keys = self.keys.read();
        let (Some(key), Some(previous_key)) = (keys.get(&id), keys.get(&previous)) else {
            return Err(Error::Keys(format!(
                "the current data key {id} is not in the database"
            )));
        };
        let ciphers = Some((key.clone(), previous_key.clone()));
        drop(keys);
        let blinds = Some((self.blind_for(id)?, self.blind_for(previous)?));
        *self.current.write() = Current {
            id,
            from,
            previous,
            ciphers,
            blinds,
        };
        Ok(())
    }

    /// The blind key that goes with data key `id`: the newest one not
    /// newer than it (keys rotated before blind keys were rotated share
    /// the first).
    fn blind_for(&self, id: u32) -> Result<Blind> {
        let blinds = self.blinds.read();
        blinds
            .iter()
            .filter(|(b, _)| **b <= id)
            .max_by_key(|(b, _)| **b)
            .map(|(b, mac)| Blind {
                id: *b,
                mac: mac.clone(),
            })
            .ok_or_else(|| Error::Keys("the database has no blind-index key".into()))
    }

    /// The id of the key that seals at `now`.
    pub fn sealing_key(&self, now: i64) -> u32 {
        let c = self.current.read();
        if now >= c.from { c.id } else { c.previous }
    }

    /// The key that seals now, and its id.
    fn sealing_cipher(&self) -> (u32, XChaCha20Poly1305) {
        let c = self.current.read();
        // A keyring exists only once `refresh` has set the ciphers.
        let Some((current, previous)) = &c.ciphers else {
            unreachable!("a keyring is built with its current key")
        };
        if now() >= c.from {
            (c.id, current.clone())
        } else {
            (c.previous, previous.clone())
        }
    }

    /// The id of the key sealing now.
    pub fn current_key(&self) -> u32 {
        self.sealing_key(now())
    }

    /// The key ids this keyring reads.
    pub fn key_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.keys.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// `clear` sealed for `column` under the current key.
    pub fn seal(&self, column: Column, clear: &[u8]) -> String {
        let (id, key) = self.sealing_cipher();
        let mut out = format!("{PREFIX}{id}:");
        out.push_str(&seal_with(&key, column.name(), clear));
        out
    }

    pub fn seal_str(&self, column: Column, clear: &str) -> String {
        self.seal(column, clear.as_bytes())
    }

    /// Opens a value of `column`. A value without the sealed prefix is one
    /// written in clear before sealing (by an older build): it is returned
    /// as it is.
    pub fn open(&self, column: Column, stored: &str) -> Result<Vec<u8>> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.as_bytes().to_vec());
        };
        let (id, body) = rest.split_once(':').ok_or(Error::Corrupt(column.name()))?;
        let id: u32 = id.parse().map_err(|_| Error::Corrupt(column.name()))?;
        let keys = self.keys.read();
        let key = keys.get(&id).ok_or(Error::UnknownKey(id))?;
        open_with(key, column.name(), body).ok_or(Error::Corrupt(column.name()))
    }

    pub fn open_string(&self, column: Column, stored: &str) -> Result<String> {
        String::from_utf8(self.open(column, stored)?).map_err(|_| Error::Corrupt(column.name()))
    }

    /// `clear` sealed as bytes (for files: recordings) under the current
    /// key: its id (`u32` big-endian), the nonce, the ciphertext. `context`
    /// joins the column's name as associated data.
    pub fn seal_bytes(&self, column: Column, context: &[u8], clear: &[u8]) -> Vec<u8> {
        let (id, key) = self.sealing_cipher();
        let nonce = nonce();
        let aad = [column.name().as_bytes(), b"/", context].concat();
        let Ok(ct) = key.encrypt(
            &nonce,
            Payload {
                msg: clear,
                aad: &aad,
            },
        ) else {
            unreachable!("XChaCha20-Poly1305 seals any length this store writes")
        };
        let mut out = Vec::with_capacity(BYTES_OVERHEAD + clear.len());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// What [`Keyring::seal_bytes`] sealed, if it opens.
    pub fn open_bytes(&self, column: Column, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let corrupt = Error::Corrupt(column.name());
        if sealed.len() < BYTES_OVERHEAD {
            return Err(corrupt);
        }
        let (id, rest) = sealed.split_at(4);
        let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| Error::Corrupt(column.name()))?;
        let keys = self.keys.read();
        let key = keys.get(&id).ok_or(Error::UnknownKey(id))?;
        let aad = [column.name().as_bytes(), b"/", context].concat();
        key.decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| corrupt)
    }

    /// The blind token of `clear` (a party number in E.164, or a sender's
    /// name) to store now: equal values give equal tokens, and nothing else
    /// can be read from one without the blind key.
    pub fn blind(&self, clear: &str) -> String {
        let c = self.current.read();
        let Some((current, previous)) = &c.blinds else {
            unreachable!("a keyring is built with its current key")
        };
        if now() >= c.from {
            current.token(clear)
        } else {
            previous.token(clear)
        }
    }

    /// The tokens a lookup of `clear` asks for: under the current blind
    /// key and under the previous one (equal when a rotation brought no
    /// new blind key), so that rows not yet resealed are found.
    pub fn lookup_tokens(&self, clear: &str) -> [String; 2] {
        let c = self.current.read();
        let Some((current, previous)) = &c.blinds else {
            unreachable!("a keyring is built with its current key")
        };
        [current.token(clear), previous.token(clear)]
    }

    /// The SQL `LIKE` pattern of values sealed under key `id`.
    pub fn like_key(id: u32) -> String {
        format!("{PREFIX}{id}:%")
    }

    /// The tag of the tokens of the blind key that goes with data key `id`;
    /// `None` for the first blind key, whose tokens carry none (and no
    /// other kind can exist while it is current).
    pub fn blind_tag(&self, id: u32) -> Result<Option<u32>> {
        let blind = self.blind_for(id)?;
        Ok((blind.id != 0).then_some(blind.id))
    }

    /// The SQL `LIKE` pattern of the tokens tagged `tag`.
    pub fn like_blind(tag: u32) -> String {
        format!("{BLIND_PREFIX}{tag}:%")
    }
}

/// Whether `stored` is a blind token rather than a clear value.
pub fn is_blind(stored: &str) -> bool {
    stored.starts_with(BLIND_PREFIX)
}

/// A random 192-bit nonce from the thread's CSPRNG (ChaCha, seeded from the
/// OS and reseeded by it): no system call per value, and at 192 bits random
/// nonces never repeat in practice.
fn nonce() -> XNonce {
    let mut bytes = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut bytes);
    XNonce::from(bytes)
}

fn seal_with(key: &XChaCha20Poly1305, aad: &str, clear: &[u8]) -> String {
    let nonce = nonce();
    let payload = Payload {
        msg: clear,
        aad: aad.as_bytes(),
    };
    // Encryption fails only past 256 GiB; nothing stored comes near.
    let Ok(ct) = key.encrypt(&nonce, payload) else {
        unreachable!("XChaCha20-Poly1305 seals any length this store writes")
    };
    let mut raw = Vec::with_capacity(NONCE_LEN + ct.len());
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&ct);
    B64.encode(raw)
}

fn open_with(key: &XChaCha20Poly1305, aad: &str, text: &str) -> Option<Vec<u8>> {
    let raw = B64.decode(text).ok()?;
    if raw.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    key.decrypt(
        &XNonce::from(nonce),
        Payload {
            msg: ct,
            aad: aad.as_bytes(),
        },
    )
    .ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> (MasterKey, MetaRows, Keyring) {
        let master = MasterKey::ephemeral();
        let rows = Keyring::genesis(&master);
        let ring = Keyring::from_meta(master.clone(), &rows).unwrap();
        (master, rows, ring)
    }

    #[test]
    fn sealed_values_open_in_their_column_only() {
        let (_, _, ring) = ring();
        let sealed = ring.seal_str(Column::BindingA, "+8613800000000");
        assert!(sealed.starts_with("ml1:1:"));
        assert!(!sealed.contains("13800000000"));
        assert_eq!(
            ring.open_string(Column::BindingA, &sealed).unwrap(),
            "+8613800000000"
        );
        assert!(matches!(
            ring.open(Column::BindingB, &sealed),
            Err(Error::Corrupt("bindings.b"))
        ));
        // Two seals of one value differ (random nonces); blind tokens agree.
        assert_ne!(sealed, ring.seal_str(Column::BindingA, "+8613800000000"));
        assert_eq!(ring.blind("+8613800000000"), ring.blind("+8613800000000"));
        assert_ne!(ring.blind("+8613800000000"), ring.blind("+8613800000001"));
        assert!(is_blind(&ring.blind("+8613800000000")));
    }

    #[test]
    fn clear_values_from_before_sealing_read_as_they_are() {
        let (_, _, ring) = ring();
        assert_eq!(
            ring.open_string(Column::EventBody, "{\"a\":1}").unwrap(),
            "{\"a\":1}"
        );
    }

    #[test]
    fn a_tampered_value_is_corrupt_not_garbage() {
        let (_, _, ring) = ring();
        let sealed = ring.seal_str(Column::MessageBody, "hello");
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(ring.open(Column::MessageBody, &tampered).is_err());
        assert!(matches!(
            ring.open(Column::MessageBody, "ml1:9:AAAA"),
            Err(Error::UnknownKey(9))
        ));
    }

    #[test]
    fn another_master_key_opens_nothing() {
        let (_, rows, _) = ring();
        let err = Keyring::from_meta(MasterKey::ephemeral(), &rows).unwrap_err();
        assert!(err.to_string().contains("another master key"), "{err}");
    }

    #[test]
    fn rotation_seals_with_the_new_key_from_its_time_and_reads_both() {
        let (master, mut rows, ring) = ring();
        let old = ring.seal_str(Column::EventBody, "old");
        let plan = Rotation::plan(&master, &rows, 1_000).unwrap();
        assert_eq!(plan.id, 2);
        let token = ring.blind("+12025550100");
        rows.retain(|(k, _)| k != META_CURRENT);
        rows.extend([
            plan.key_row,
            plan.blind_row,
            (META_CURRENT.to_owned(), plan.current),
        ]);
        ring.refresh(&rows).unwrap();
        assert_eq!(ring.sealing_key(1_000 + ROTATION_DELAY_SECS - 1), 1);
        assert_eq!(ring.sealing_key(1_000 + ROTATION_DELAY_SECS), 2);
        assert_eq!(ring.key_ids(), [1, 2]);
        let new = ring.seal_str(Column::EventBody, "new");
        assert!(new.starts_with("ml1:2:") && old.starts_with("ml1:1:"));
        assert_eq!(ring.open_string(Column::EventBody, &old).unwrap(), "old");
        assert_eq!(ring.open_string(Column::EventBody, &new).unwrap(), "new");
        let again = Keyring::from_meta(master.clone(), &rows).unwrap();
        assert_eq!(again.open_string(Column::EventBody, &old).unwrap(), "old");
        // The blind key turned with the data key (this clock is long past
        // `from`): new tokens are tagged, lookups ask for both.
        let new_token = ring.blind("+12025550100");
        assert!(token.starts_with('~') && !token.contains(':'));
        assert!(new_token.starts_with("~2:") && is_blind(&new_token));
        assert_ne!(new_token[3..], token[1..]);
        assert_eq!(
            ring.lookup_tokens("+12025550100"),
            [new_token.clone(), token]
        );
        assert_eq!(again.blind("+12025550100"), new_token);
        assert_eq!(ring.blind_tag(1).unwrap(), None);
        assert_eq!(ring.blind_tag(2).unwrap(), Some(2));
        assert_eq!(Keyring::like_blind(2), "~2:%");
        // Until a pass has found everything under key 2, another rotation
        // would leave tokens no lookup asks for: it is refused.
        let err = Rotation::plan(&master, &rows, 2_000).err().unwrap();
        assert!(err.to_string().contains("still being resealed"), "{err}");
        rows.retain(|(k, _)| k != crate::reseal::META_SEALED_UNDER);
        rows.push((crate::reseal::META_SEALED_UNDER.to_owned(), "2".to_owned()));
        let third = Rotation::plan(&master, &rows, 2_000).unwrap();
        assert_eq!((third.id, third.blind_row.0.as_str()), (3, "seal.blind.3"));
    }

    #[test]
    fn data_keys_rotated_before_blind_keys_were_share_the_first() {
        let (master, mut rows, _) = ring();
        let data = XChaCha20Poly1305::generate_key(&mut OsRng);
        rows.retain(|(k, _)| k != META_CURRENT);
        rows.push((meta_key(2), master.wrap(&meta_key(2), &data)));
        rows.push((META_CURRENT.to_owned(), "2 0 1".to_owned()));
        let ring = Keyring::from_meta(master, &rows).unwrap();
        let [current, previous] = ring.lookup_tokens("+12025550100");
        assert_eq!(current, previous);
        assert!(!current.contains(':'));
        assert_eq!(ring.blind_tag(2).unwrap(), None);
    }

    #[test]
    fn the_master_key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let a = MasterKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = MasterKey::load_or_create(&path).unwrap();
        let rows = Keyring::genesis(&a);
        Keyring::from_meta(b, &rows).unwrap();
        fs::write(&path, "not a key").unwrap();
        assert!(MasterKey::load_or_create(&path).is_err());
    }

    #[test]
    fn sealed_bytes_name_their_key_and_context() {
        let (_, _, ring) = ring();
        let sealed = ring.seal_bytes(Column::Recording, b"t/c/0", b"audio");
        assert_eq!(sealed.len(), BYTES_OVERHEAD + 5);
        assert_eq!(&sealed[..4], &1u32.to_be_bytes());
        assert_eq!(
            ring.open_bytes(Column::Recording, b"t/c/0", &sealed)
                .unwrap(),
            b"audio"
        );
        assert!(
            ring.open_bytes(Column::Recording, b"t/c/1", &sealed)
                .is_err()
        );
        assert!(
            ring.open_bytes(Column::Recording, b"t/c/0", &sealed[..20])
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn anything_sealed_opens_to_itself(clear in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (_, _, ring) = ring();
            let sealed = ring.seal(Column::PartBytes, &clear);
            prop_assert_eq!(ring.open(Column::PartBytes, &sealed).unwrap(), clear);
        }
    }
}
