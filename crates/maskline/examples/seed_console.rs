//! Fills a stopped server's embedded store with a tenant's history for
//! `bench/console_pages.sh`: N ended bindings, N CDRs, N texts, N events
//! (each call's `call.ended`) and N audit entries spread over the last 180
//! days, written through the store (sealed as the server writes them), in
//! the tenant and pool the script made over the API.
//!
//!   cargo run --release -p maskline --example seed_console -- DATA_DIR TENANT_ID N POOL
//!
//! POOL is how many numbers the script imported: `x(i)` for i in 1..=POOL.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use maskline_core::sms::{Message, Sender};
use maskline_core::{
    Binding, BindingId, CallId, CallRecord, Controls, Direction, EndReason, EventId, EventType,
    MessageId, MessageStatus, Mode, Number, Region, ReleaseReason, ReleasedBy, TenantId,
};
use maskline_events::payload;
use maskline_store::{AuditEntry, NewEvent, SqliteStore, Store, Write};

fn number(s: &str) -> Number {
    Number::parse(s, Region::default()).expect("a valid number")
}

/// A UUIDv7-shaped id: `ms` in the first 48 bits, `n` below.
fn v7(ms: i64, n: u64) -> u128 {
    (u128::from(ms as u64) << 80) | (0x7 << 76) | u128::from(n)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, tenant, n, pool] = &args[..] else {
        eprintln!("usage: seed_console DATA_DIR TENANT_ID N POOL");
        std::process::exit(64);
    };
    let dir = PathBuf::from(dir);
    let tenant = TenantId(
        uuid::Uuid::parse_str(tenant)
            .expect("a tenant id")
            .as_u128(),
    );
    let n: u64 = n.parse().expect("N");
    let pool: u64 = pool.parse().expect("POOL");
    let store = SqliteStore::open(&dir).await.expect("the data directory");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let span_ms = 180 * 86_400_000i64;
    let started = Instant::now();
    let mut acks = Vec::with_capacity(20_000);
    for i in 0..n {
        // Oldest first, evenly over 180 days, ending a minute ago.
        let at = now_ms - 60_000 - span_ms + (span_ms / n as i64) * i as i64;
        let secs = at / 1000;
        let x = number(&format!("+86571{:08}", i % pool + 1));
        let a = number(&format!("+86138{:08}", i));
        let b = number(&format!("+86139{:08}", i));
        let binding_id = BindingId(v7(at, i));
        let binding = Binding {
            id: binding_id,
            tenant,
            mode: Mode::Axb,
            x,
            extension: None,
            a,
            b: Some(b),
            area: None,
            external_ref: Some(format!("order-{i}")),
            controls: Controls::default(),
            created_at: secs,
            updated_at: secs + 1800,
            expires_at: secs + 3600,
            ended_at: Some(secs + 1800),
            end_reason: Some(EndReason::Unbound),
        };
        let call = CallRecord {
            id: CallId(v7(at + 60_000, i)),
            tenant: Some(tenant),
            binding: Some(binding_id),
            direction: Some(Direction::AToB),
            x: Some(x),
            caller: Some(a),
            callee: Some(b),
            invited_at: at + 60_000,
            ringing_at: Some(at + 61_000),
            answered_at: Some(at + 65_000),
            ended_at: at + 125_000,
            final_status: 200,
            released_by: ReleasedBy::Caller,
            release_reason: ReleaseReason::Normal,
            refusal: None,
            erased: Default::default(),
        };
        let held = i % 10 == 0;
        let text = Message {
            id: MessageId(v7(at + 120_000, i)),
            tenant: Some(tenant),
            binding: Some(binding_id),
            direction: Some(Direction::BToA),
            x,
            from: Sender::Number(b),
            to: (!held).then_some(a),
            text: format!(
                "【菜鸟驿站】您有包裹待取，取件码{}-3-{:04}，21:00关门。",
                i % 30,
                i % 10_000
            ),
            pickup_code: Some(format!("{}-3-{:04}", i % 30, i % 10_000)),
            status: if held {
                MessageStatus::Held
            } else {
                MessageStatus::Relayed
            },
            reason: held.then_some(maskline_core::MessageReason::ExtensionUnknown),
            parts: u8::from(!held),
            ingress: "smpp:seed".to_owned(),
            created_at: at + 120_000,
            updated_at: at + 120_000,
            ends_at: secs + 1800,
        };
        acks.push(store.enqueue(Write::CreateBinding {
            binding,
            idempotency: None,
            events: Vec::new(),
        }));
        let event_id = EventId(v7(at + 125_000, i));
        let ended = NewEvent {
            id: event_id,
            tenant,
            kind: EventType::CallEnded,
            subject: binding_id.0,
            created_at: at + 125_000,
            body: payload::call_event(event_id, EventType::CallEnded, at + 125_000, &call),
            // No webhook was set: kept, not delivered.
            deliver: false,
        };
        acks.push(store.enqueue(Write::RecordCall {
            record: call,
            events: vec![ended],
        }));
        acks.push(store.enqueue(Write::Audit(AuditEntry {
            tenant,
            key: None,
            user: None,
            action: "POST /v1/bindings".to_owned(),
            object: binding_id.to_string(),
            status: 201,
            at,
            source: Some("127.0.0.1".to_owned()),
        })));
        acks.push(store.enqueue(Write::RecordMessage {
            message: text,
            relay_due: None,
            assembled_from: None,
            events: Vec::new(),
        }));
        if acks.len() >= 15_000 {
            for ack in acks.drain(..) {
                ack.await.expect("a seed write");
            }
            eprintln!(
                "seed_console: {} of {n} in {:.0} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    for ack in acks {
        ack.await.expect("a seed write");
    }
    eprintln!(
        "seed_console: {n} bindings, CDRs, texts, events and audit entries in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
