//! Rows into domain values, once for every back end. A back end only says
//! how it stores ids, integers, text and flags ([`Cells`]); what a row
//! means, and what makes one corrupt, is decided here.

use std::str::FromStr;

use maskline_core::sms::{Filter, FilterMode, Message, Rule, RuleAction, Sender, Settings};
use maskline_core::{
    Area, Binding, BindingId, CallId, CallRecord, Controls, Direction, EndReason, Erased, EventId,
    EventType, Extension, MessageId, MessageReason, MessageStatus, Mode, Number, Refusal,
    ReleaseReason, ReleasedBy, TenantId,
};
use sqlx::Row;

use crate::seal::{Column, Keyring, is_blind};
use crate::{
    ApiKey, AuditEntry, ConsoleSession, DeliveryState, Error, Fallback, IdempotencyRecord,
    Intercept, KeyId, Part, PartsKey, PoolNumber, Result, Role, StoredEvent, StoredPrompt,
    StoredSmsSettings, Tenant, User, UserId, Webhook,
};

/// One column of a row, as the back end stores it; `None` is SQL NULL.
pub(crate) trait Cells {
    fn id(&self, col: &'static str) -> Result<Option<u128>>;
    fn int(&self, col: &'static str) -> Result<Option<i64>>;
    fn text(&self, col: &'static str) -> Result<Option<&str>>;
    fn flag(&self, col: &'static str) -> Result<bool>;
    fn bytes(&self, col: &'static str) -> Result<Vec<u8>>;
}

impl Cells for sqlx::sqlite::SqliteRow {
    fn id(&self, col: &'static str) -> Result<Option<u128>> {
        // 16-byte big-endian BLOBs, so that BLOB order is id order.
        self.try_get::<Option<Vec<u8>>, _>(col)?
            .map(|b| {
                <[u8; 16]>::try_from(b)
                    .map(u128::from_be_bytes)
                    .map_err(|_| Error::Corrupt("id"))
            })
            .transpose()
    }

    fn int(&self, col: &'static str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }

    fn text(&self, col: &'static str) -> Result<Option<&str>> {
        Ok(self.try_get(col)?)
    }

    fn flag(&self, col: &'static str) -> Result<bool> {
        Ok(self.try_get(col)?)
    }

    fn bytes(&self, col: &'static str) -> Result<Vec<u8>> {
        Ok(self.try_get(col)?)
    }
}

impl Cells for sqlx::postgres::PgRow {
    fn id(&self, col: &'static str) -> Result<Option<u128>> {
        Ok(self
            .try_get::<Option<uuid::Uuid>, _>(col)?
            .map(|u| u.as_u128()))
    }

    fn int(&self, col: &'static str) -> Result<Option<i64>> {
        // BIGINT for times and ids, INTEGER for statuses and counts.
        match self.try_get::<Option<i64>, _>(col) {
            Ok(v) => Ok(v),
            Err(_) => Ok(self.try_get::<Option<i32>, _>(col)?.map(i64::from)),
        }
    }

    fn text(&self, col: &'static str) -> Result<Option<&str>> {
        Ok(self.try_get(col)?)
    }

    fn flag(&self, col: &'static str) -> Result<bool> {
        Ok(self.try_get(col)?)
    }

    fn bytes(&self, col: &'static str) -> Result<Vec<u8>> {
        Ok(self.try_get(col)?)
    }
}

// Required columns: NULL where the schema forbids it is a corrupt row.

fn id(r: &impl Cells, col: &'static str) -> Result<u128> {
    r.id(col)?.ok_or(Error::Corrupt(col))
}

fn int(r: &impl Cells, col: &'static str) -> Result<i64> {
    r.int(col)?.ok_or(Error::Corrupt(col))
}

fn text<'r>(r: &'r impl Cells, col: &'static str) -> Result<&'r str> {
    r.text(col)?.ok_or(Error::Corrupt(col))
}

/// A column that must fit a narrower integer type.
fn narrow<T: TryFrom<i64>>(v: i64, col: &'static str) -> Result<T> {
    T::try_from(v).map_err(|_| Error::Corrupt(col))
}

fn hash(r: &impl Cells, col: &'static str) -> Result<[u8; 32]> {
    r.bytes(col)?.try_into().map_err(|_| Error::Corrupt(col))
}

fn number(s: &str, col: &'static str) -> Result<Number> {
    Number::from_e164(s).map_err(|_| Error::Corrupt(col))
}

fn opt_number(r: &impl Cells, col: &'static str) -> Result<Option<Number>> {
    r.text(col)?.map(|s| number(s, col)).transpose()
}

/// A party's number or sender's name: opened from `sealed` (`<col>_sealed`),
/// or, in a row written before sealing, `col` itself in clear. `col` holding
/// a blind token without its sealed value is a corrupt row.
fn party_text(
    r: &impl Cells,
    keys: &Keyring,
    col: &'static str,
    sealed: &'static str,
    column: Column,
) -> Result<Option<String>> {
    match r.text(sealed)? {
        Some(s) => keys.open_string(column, s).map(Some),
        None => match r.text(col)? {
            Some(c) if is_blind(c) => Err(Error::Corrupt(sealed)),
            c => Ok(c.map(str::to_owned)),
        },
    }
}

fn party(
    r: &impl Cells,
    keys: &Keyring,
    col: &'static str,
    sealed: &'static str,
    column: Column,
) -> Result<Option<Number>> {
    party_text(r, keys, col, sealed, column)?
        .map(|s| number(&s, col))
        .transpose()
}

/// What an erased party's sealed column holds before its mask.
pub(crate) const ERASED_MARK: &str = "*";

/// A CDR's party: its number, or the mask an erasure left.
fn call_party(
    r: &impl Cells,
    keys: &Keyring,
    col: &'static str,
    sealed: &'static str,
    column: Column,
) -> Result<(Option<Number>, Option<String>)> {
    match party_text(r, keys, col, sealed, column)? {
        Some(t) => match t.strip_prefix(ERASED_MARK) {
            Some(mask) => Ok((None, Some(mask.to_owned()))),
            None => Ok((Some(number(&t, col)?), None)),
        },
        None => Ok((None, None)),
    }
}

/// What a statement of an erasure binds, in order.
#[derive(Clone, Copy, Debug)]
pub(crate) enum EraseArg {
    Tenant,
    /// The party's token under the current blind key.
    Token,
    /// Under the previous one (rows the reseal has not reached).
    PreviousToken,
    EndedBefore,
    /// The sealed mask for this column.
    Mask(Column),
}

/// One statement of an erasure: SQL with `{}` where each argument goes.
pub(crate) struct EraseStatement {
    sql: &'static str,
    pub args: &'static [EraseArg],
    /// Only PostgreSQL has the table (`slots`).
    pub postgres_only: bool,
}

impl EraseStatement {
    /// The SQL with `?` placeholders (`'?'`) or `$1`, `$2`, … (`'$'`).
    pub fn text(&self, style: char) -> String {
        let mut out = String::with_capacity(self.sql.len() + 16);
        let mut n = 0;
        for (i, part) in self.sql.split("{}").enumerate() {
            if i > 0 {
                n += 1;
                match style {
                    '$' => out.push_str(&format!("${n}")),
                    _ => out.push('?'),
                }
            }
            out.push_str(part);
        }
        out
    }
}

use EraseArg::{EndedBefore, Mask, PreviousToken, Token};

/// A tenant's ended records naming the party as either of two columns.
const ENDED_OF_PARTY: &[EraseArg] = &[
    EraseArg::Tenant,
    Token,
    PreviousToken,
    Token,
    PreviousToken,
    EndedBefore,
];

/// Erasing a party (`Write::EraseParty`), the same SQL on both back ends, in
/// order: what refers to a record goes before the record. Bindings are those
/// whose cool-down is over; texts those whose binding's is; every CDR naming
/// the party keeps only its mask. The second value seals a column's mask;
/// the third is the party's tokens, current and previous: each statement
/// asks for both at once (rows the reseal after a rotation has not reached
/// hold the previous one; one statement, so that a reseal committing
/// between two passes could not hide a row from both).
pub(crate) fn erasure(
    keys: &Keyring,
    party: Number,
) -> (
    &'static [EraseStatement],
    impl Fn(Column) -> String + '_,
    [String; 2],
) {
    static STATEMENTS: &[EraseStatement] = &[
        EraseStatement {
            sql: "DELETE FROM events WHERE subject IN (SELECT id FROM bindings WHERE \
                  tenant_id = {} AND (a IN ({}, {}) OR b IN ({}, {})) AND ends_at <= {})",
            args: ENDED_OF_PARTY,
            postgres_only: false,
        },
        EraseStatement {
            sql: "DELETE FROM slots WHERE binding_id IN (SELECT id FROM bindings WHERE \
                  tenant_id = {} AND (a IN ({}, {}) OR b IN ({}, {})) AND ends_at <= {})",
            args: ENDED_OF_PARTY,
            postgres_only: true,
        },
        EraseStatement {
            sql: "DELETE FROM idempotency WHERE binding_id IN (SELECT id FROM bindings WHERE \
                  tenant_id = {} AND (a IN ({}, {}) OR b IN ({}, {})) AND ends_at <= {})",
            args: ENDED_OF_PARTY,
            postgres_only: false,
        },
        EraseStatement {
            sql: "DELETE FROM bindings WHERE tenant_id = {} AND (a IN ({}, {}) OR b IN ({}, {})) \
                  AND ends_at <= {}",
            args: ENDED_OF_PARTY,
            postgres_only: false,
        },
        EraseStatement {
            sql: "DELETE FROM relays WHERE message_id IN (SELECT id FROM messages WHERE \
                  tenant_id = {} AND (sender IN ({}, {}) OR recipient IN ({}, {})) AND ends_at <= {})",
            args: ENDED_OF_PARTY,
            postgres_only: false,
        },
        EraseStatement {
            sql: "DELETE FROM message_submits WHERE message_id IN (SELECT id FROM messages \
                  WHERE tenant_id = {} AND (sender IN ({}, {}) OR recipient IN ({}, {})) AND ends_at <= {})",
            args: ENDED_OF_PARTY,
            postgres_only: false,
        },
        EraseStatement {
            sql: "DELETE FROM messages WHERE tenant_id = {} AND (sender IN ({}, {}) OR recipient IN ({}, {})) \
                  AND ends_at <= {}",
            args: ENDED_OF_PARTY,
            postgres_only: false,
        },
        EraseStatement {
            sql: "DELETE FROM events WHERE subject IN (SELECT id FROM calls WHERE \
                  tenant_id = {} AND (caller IN ({}, {}) OR callee IN ({}, {})) AND binding_id IS NULL)",
            args: &[EraseArg::Tenant, Token, PreviousToken, Token, PreviousToken],
            postgres_only: false,
        },
        EraseStatement {
            sql: "UPDATE calls SET caller = NULL, caller_sealed = {} \
                  WHERE tenant_id = {} AND caller IN ({}, {})",
            args: &[
                Mask(Column::CallCaller),
                EraseArg::Tenant,
                Token,
                PreviousToken,
            ],
            postgres_only: false,
        },
        EraseStatement {
            sql: "UPDATE calls SET callee = NULL, callee_sealed = {} \
                  WHERE tenant_id = {} AND callee IN ({}, {})",
            args: &[
                Mask(Column::CallCallee),
                EraseArg::Tenant,
                Token,
                PreviousToken,
            ],
            postgres_only: false,
        },
    ];
    let mask =
        move |column: Column| keys.seal_str(column, &format!("{ERASED_MARK}{}", party.masked()));
    (STATEMENTS, mask, keys.lookup_tokens(&party.to_string()))
}

/// A column sealed in place (a clear value is one written before sealing).
fn opened(r: &impl Cells, keys: &Keyring, col: &'static str, column: Column) -> Result<String> {
    keys.open_string(column, text(r, col)?)
}

fn area(r: &impl Cells) -> Result<Option<Area>> {
    r.text("area")?
        .map(|a| Area::new(a).map_err(|_| Error::Corrupt("area")))
        .transpose()
}

/// An unknown name is a row this build cannot read, not a default.
fn name<T>(s: &str, parse: fn(&str) -> Option<T>, col: &'static str) -> Result<T> {
    parse(s).ok_or(Error::Corrupt(col))
}

pub(crate) fn tenant(r: &impl Cells) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId(id(r, "id")?),
        name: text(r, "name")?.to_owned(),
        api_key_hash: hash(r, "api_key_hash")?,
        created_at: int(r, "created_at")?,
    })
}

pub(crate) fn audit_entry(r: &impl Cells) -> Result<(i64, AuditEntry)> {
    Ok((
        int(r, "seq")?,
        AuditEntry {
            tenant: TenantId(id(r, "tenant_id")?),
            key: r.id("key_id")?.map(KeyId),
            action: text(r, "action")?.to_owned(),
            object: text(r, "object")?.to_owned(),
            status: u16::try_from(int(r, "status")?).map_err(|_| Error::Corrupt("status"))?,
            at: int(r, "at")?,
            source: r.text("source")?.map(str::to_owned),
            user: r.id("user_id")?.map(UserId),
        },
    ))
}

pub(crate) fn api_key(r: &impl Cells) -> Result<ApiKey> {
    Ok(ApiKey {
        id: KeyId(id(r, "id")?),
        tenant: TenantId(id(r, "tenant_id")?),
        prefix: text(r, "prefix")?.to_owned(),
        hash: hash(r, "hash")?,
        created_at: int(r, "created_at")?,
        revoked_at: r.int("revoked_at")?,
    })
}

pub(crate) const USER_COLUMNS: &str =
    "id, email, password_hash, role, tenant_id, created_at, failed_signins, locked_until";

pub(crate) fn user(r: &impl Cells) -> Result<User> {
    Ok(User {
        id: UserId(id(r, "id")?),
        email: text(r, "email")?.to_owned(),
        password_hash: text(r, "password_hash")?.to_owned(),
        role: name(text(r, "role")?, Role::parse, "role")?,
        tenant: r.id("tenant_id")?.map(TenantId),
        created_at: int(r, "created_at")?,
        failed_signins: u32::try_from(int(r, "failed_signins")?)
            .map_err(|_| Error::Corrupt("failed_signins"))?,
        locked_until: r.int("locked_until")?,
    })
}

/// A session joined with its user: the user's columns as in
/// [`USER_COLUMNS`], the session's as `token_hash`, `opened_at`,
/// `session_expires_at`.
pub(crate) fn console_session(r: &impl Cells) -> Result<(ConsoleSession, User)> {
    let user = user(r)?;
    Ok((
        ConsoleSession {
            token_hash: hash(r, "token_hash")?,
            user: user.id,
            created_at: int(r, "opened_at")?,
            expires_at: int(r, "session_expires_at")?,
        },
        user,
    ))
}

pub(crate) fn pool_number(r: &impl Cells) -> Result<PoolNumber> {
    Ok(PoolNumber {
        tenant: TenantId(id(r, "tenant_id")?),
        number: number(text(r, "number")?, "number")?,
        area: area(r)?,
        created_at: int(r, "created_at")?,
    })
}

pub(crate) fn idempotency(
    r: &impl Cells,
    keys: &Keyring,
    tenant: TenantId,
    key: &str,
) -> Result<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        tenant,
        key: key.to_owned(),
        request_hash: hash(r, "request_hash")?,
        status: narrow(int(r, "status")?, "status")?,
        body: opened(r, keys, "body", Column::IdempotencyBody)?,
        created_at: int(r, "created_at")?,
    })
}

/// `bindings.call_prompts` bits.
const PROMPT_PRE_CONNECT: i64 = 1;
const PROMPT_CALLEE_WHISPER: i64 = 2;

/// A binding's call prompts as its `call_prompts` column holds them.
pub(crate) fn call_prompts(c: &Controls) -> i32 {
    let mut bits = 0;
    if c.pre_connect {
        bits |= PROMPT_PRE_CONNECT;
    }
    if c.callee_whisper {
        bits |= PROMPT_CALLEE_WHISPER;
    }
    bits as i32
}

pub(crate) fn binding(r: &impl Cells, keys: &Keyring) -> Result<Binding> {
    Ok(Binding {
        id: BindingId(id(r, "id")?),
        tenant: TenantId(id(r, "tenant_id")?),
        mode: Mode::from_str(text(r, "mode")?).map_err(|_| Error::Corrupt("mode"))?,
        x: number(text(r, "x")?, "x")?,
        extension: r
            .text("extension")?
            .map(|e| Extension::from_str(e).map_err(|_| Error::Corrupt("extension")))
            .transpose()?,
        a: party(r, keys, "a", "a_sealed", Column::BindingA)?.ok_or(Error::Corrupt("a"))?,
        b: party(r, keys, "b", "b_sealed", Column::BindingB)?,
        area: area(r)?,
        external_ref: r.text("external_ref")?.map(str::to_owned),
        controls: Controls {
            a_to_b: r.flag("a_to_b")?,
            b_to_a: r.flag("b_to_a")?,
            max_call_seconds: r
                .int("max_call_seconds")?
                .map(|s| narrow(s, "max_call_seconds"))
                .transpose()?,
            record: r.flag("record")?,
            sms: r.flag("sms")?,
            pre_connect: r.int("call_prompts")?.unwrap_or(0) & PROMPT_PRE_CONNECT != 0,
            callee_whisper: r.int("call_prompts")?.unwrap_or(0) & PROMPT_CALLEE_WHISPER != 0,
            warn_before_end_seconds: r
                .int("warn_before_end_seconds")?
                .map(|s| narrow(s, "warn_before_end_seconds"))
                .transpose()?,
        },
        created_at: int(r, "created_at")?,
        updated_at: int(r, "updated_at")?,
        expires_at: int(r, "expires_at")?,
        ended_at: r.int("ended_at")?,
        end_reason: r
            .text("end_reason")?
            .map(|e| EndReason::from_str(e).map_err(|_| Error::Corrupt("end_reason")))
            .transpose()?,
    })
}

pub(crate) fn call_record(r: &impl Cells, keys: &Keyring) -> Result<CallRecord> {
    let (caller, caller_mask) = call_party(r, keys, "caller", "caller_sealed", Column::CallCaller)?;
    let (callee, callee_mask) = call_party(r, keys, "callee", "callee_sealed", Column::CallCallee)?;
    Ok(CallRecord {
        id: CallId(id(r, "id")?),
        tenant: r.id("tenant_id")?.map(TenantId),
        binding: r.id("binding_id")?.map(BindingId),
        direction: r
            .text("direction")?
            .map(|d| name(d, Direction::parse, "direction"))
            .transpose()?,
        x: opt_number(r, "x")?,
        caller,
        callee,
        invited_at: int(r, "invited_at")?,
        ringing_at: r.int("ringing_at")?,
        answered_at: r.int("answered_at")?,
        ended_at: int(r, "ended_at")?,
        final_status: narrow(int(r, "final_status")?, "final_status")?,
        released_by: name(text(r, "released_by")?, ReleasedBy::parse, "released_by")?,
        release_reason: name(
            text(r, "release_reason")?,
            ReleaseReason::parse,
            "release_reason",
        )?,
        refusal: r
            .text("refusal")?
            .map(|f| name(f, Refusal::parse, "refusal"))
            .transpose()?,
        erased: Erased {
            caller: caller_mask,
            callee: callee_mask,
        },
    })
}

pub(crate) fn webhook(r: &impl Cells, keys: &Keyring) -> Result<Webhook> {
    let intercept = match r.text("intercept_url")? {
        None => None,
        Some(url) => Some(Intercept {
            url: url.to_owned(),
            fallback: match r.text("intercept_fallback")? {
                Some("deny") => Fallback::Deny,
                Some("allow") => Fallback::Allow,
                _ => return Err(Error::Corrupt("intercept_fallback")),
            },
            timeout_ms: narrow(int(r, "intercept_timeout_ms")?, "intercept_timeout_ms")?,
        }),
    };
    Ok(Webhook {
        tenant: TenantId(id(r, "tenant_id")?),
        url: text(r, "url")?.to_owned(),
        events: text(r, "events")?
            .split_whitespace()
            .map(|p| p.parse().map_err(|_| Error::Corrupt("events")))
            .collect::<Result<_>>()?,
        secret: opened(r, keys, "secret", Column::WebhookSecret)?,
        intercept,
        updated_at: int(r, "updated_at")?,
    })
}

pub(crate) fn stored_event(r: &impl Cells, keys: &Keyring) -> Result<StoredEvent> {
    Ok(StoredEvent {
        seq: int(r, "seq")?,
        id: EventId(id(r, "id")?),
        tenant: TenantId(id(r, "tenant_id")?),
        kind: EventType::parse(text(r, "type")?).ok_or(Error::Corrupt("type"))?,
        subject: id(r, "subject")?,
        created_at: int(r, "created_at")?,
        body: opened(r, keys, "body", Column::EventBody)?,
        state: DeliveryState::parse(text(r, "state")?).ok_or(Error::Corrupt("state"))?,
        attempts: narrow(int(r, "attempts")?, "attempts")?,
        next_attempt_at: r.int("next_attempt_at")?,
        retry_from: int(r, "retry_from")?,
        last_status: r
            .int("last_status")?
            .map(|s| narrow(s, "last_status"))
            .transpose()?,
        last_error: r.text("last_error")?.map(str::to_owned),
        delivered_at: r.int("delivered_at")?,
    })
}

/// The `messages` columns, in the order both back ends bind them.
pub(crate) const MESSAGE_COLUMNS: &str = "id, tenant_id, binding_id, direction, x, sender, \
     recipient, body, pickup_code, status, reason, parts, ingress, created_at, updated_at, \
     ends_at, sender_sealed, recipient_sealed";

pub(crate) fn message(r: &impl Cells, keys: &Keyring) -> Result<Message> {
    Ok(Message {
        id: MessageId(id(r, "id")?),
        tenant: r.id("tenant_id")?.map(TenantId),
        binding: r.id("binding_id")?.map(BindingId),
        direction: r
            .text("direction")?
            .map(|d| name(d, Direction::parse, "direction"))
            .transpose()?,
        x: number(text(r, "x")?, "x")?,
        from: sender(
            &party_text(r, keys, "sender", "sender_sealed", Column::MessageSender)?
                .ok_or(Error::Corrupt("sender"))?,
        )?,
        to: party(
            r,
            keys,
            "recipient",
            "recipient_sealed",
            Column::MessageRecipient,
        )?,
        text: opened(r, keys, "body", Column::MessageBody)?,
        pickup_code: r.text("pickup_code")?.map(str::to_owned),
        status: name(text(r, "status")?, MessageStatus::parse, "status")?,
        reason: r
            .text("reason")?
            .map(|x| name(x, MessageReason::parse, "reason"))
            .transpose()?,
        parts: narrow(int(r, "parts")?, "parts")?,
        ingress: text(r, "ingress")?.to_owned(),
        created_at: int(r, "created_at")?,
        updated_at: int(r, "updated_at")?,
        ends_at: int(r, "ends_at")?,
    })
}

fn sender(s: &str) -> Result<Sender> {
    Sender::parse_stored(s).map_err(|_| Error::Corrupt("sender"))
}

pub(crate) const PART_COLUMNS: &str = "x, sender, reference, seq, total, coding, bytes, \
     received_at, ingress, sender_sealed, bytes_sealed";

pub(crate) fn part(r: &impl Cells, keys: &Keyring) -> Result<Part> {
    Ok(Part {
        key: parts_key(r, keys)?,
        seq: narrow(int(r, "seq")?, "seq")?,
        total: narrow(int(r, "total")?, "total")?,
        coding: narrow(int(r, "coding")?, "coding")?,
        bytes: match r.text("bytes_sealed")? {
            Some(s) => keys.open(Column::PartBytes, s)?,
            None => r.bytes("bytes")?,
        },
        received_at: int(r, "received_at")?,
        ingress: text(r, "ingress")?.to_owned(),
    })
}

/// A part's key; `sender_sealed` must be among the columns read.
pub(crate) fn parts_key(r: &impl Cells, keys: &Keyring) -> Result<PartsKey> {
    Ok(PartsKey {
        x: number(text(r, "x")?, "x")?,
        from: sender(
            &party_text(r, keys, "sender", "sender_sealed", Column::PartSender)?
                .ok_or(Error::Corrupt("sender"))?,
        )?,
        reference: narrow(int(r, "reference")?, "reference")?,
    })
}

/// A tenant's settings row; `rules` are its (pattern, action) rows in
/// order.
pub(crate) fn sms_settings(
    r: &impl Cells,
    rules: impl IntoIterator<Item = (String, String)>,
) -> Result<StoredSmsSettings> {
    let rules = rules
        .into_iter()
        .map(|(pattern, action)| {
            let action = name(&action, RuleAction::parse, "action")?;
            Rule::new(&pattern, action).map_err(|_| Error::Corrupt("pattern"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(StoredSmsSettings {
        tenant: TenantId(id(r, "tenant_id")?),
        settings: Settings {
            prefix: r.text("prefix")?.map(str::to_owned),
            filter: Filter {
                mode: name(text(r, "filter")?, FilterMode::parse, "filter")?,
                rules,
            },
        },
        updated_at: int(r, "updated_at")?,
    })
}

/// A tenant's call rules row: prefixes space-separated.
pub(crate) fn call_rules(r: &impl Cells) -> Result<crate::StoredCallRules> {
    let list = |col: &'static str| -> Result<Vec<String>> {
        Ok(text(r, col)?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    };
    Ok(crate::StoredCallRules {
        tenant: TenantId(id(r, "tenant_id")?),
        rules: maskline_core::CallRules::new(&list("allow_prefixes")?, &list("deny_prefixes")?)
            .map_err(|_| Error::Corrupt("allow_prefixes"))?
            .with_caps(maskline_core::CallCaps {
                max_concurrent_calls: cap(r, "max_concurrent_calls")?,
                max_calls_per_second: cap(r, "max_calls_per_second")?,
            }),
        updated_at: int(r, "updated_at")?,
    })
}

/// A tenant's own API rate (`tenant_limits`).
pub(crate) fn tenant_limit(r: &impl Cells) -> Result<(TenantId, u32)> {
    Ok((
        TenantId(id(r, "tenant_id")?),
        narrow(int(r, "rate_limit")?, "rate_limit")?,
    ))
}

fn cap(r: &impl Cells, col: &'static str) -> Result<Option<u32>> {
    r.int(col)?.map(|v| narrow(v, col)).transpose()
}

/// One node's report of a tenant's calls (`call_load`, summed).
pub(crate) fn tenant_load(r: &impl Cells) -> Result<maskline_core::TenantLoad> {
    Ok(maskline_core::TenantLoad {
        tenant: TenantId(id(r, "tenant_id")?),
        active: narrow(int(r, "active")?, "active")?,
        per_second: narrow(int(r, "per_second")?, "per_second")?,
    })
}

/// The call rules' two lists as both back ends store them.
pub(crate) fn prefix_list(prefixes: &[maskline_core::Prefix]) -> String {
    prefixes
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A prompt's samples as both back ends store them: PCM16 little-endian.
pub(crate) fn pcm16_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

pub(crate) fn prompt(r: &impl Cells) -> Result<StoredPrompt> {
    let bytes = r.bytes("samples")?;
    if bytes.len() % 2 != 0 {
        return Err(Error::Corrupt("samples"));
    }
    Ok(StoredPrompt {
        tenant: TenantId(id(r, "tenant_id")?),
        name: text(r, "name")?.to_owned(),
        samples: bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
        updated_at: int(r, "updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_stored_little_endian() {
        assert_eq!(
            pcm16_bytes(&[1, -2, 0x1234]),
            [1, 0, 0xFE, 0xFF, 0x34, 0x12]
        );
    }

    #[test]
    fn every_erasure_statement_binds_one_argument_a_placeholder() {
        let master = crate::seal::MasterKey::ephemeral();
        let keys = Keyring::from_meta(master.clone(), &Keyring::genesis(&master)).expect("keyring");
        let party = Number::from_digits(8_613_800_000_000).expect("number");
        let (statements, _, _) = erasure(&keys, party);
        for s in statements {
            assert_eq!(s.sql.matches("{}").count(), s.args.len(), "{}", s.sql);
            let tokens = s
                .args
                .iter()
                .filter(|a| matches!(a, EraseArg::Token | EraseArg::PreviousToken))
                .count();
            assert!(tokens >= 2 && tokens % 2 == 0, "{}", s.sql);
        }
    }
}
