//! One conformance suite for every `Store` back end. Each case is a plain
//! async function over `&dyn Store`; `conformance!` instantiates all of them
//! for a back end (a PostgreSQL back end adds one invocation).

use std::sync::Arc;

use maskline_store::testing as pg;

use maskline_core::sms::{
    Filter, FilterMode, Message, Rule, RuleAction, Sender, SenderId, Settings,
};
use maskline_core::{
    Area, Binding, BindingId, BindingStatus, CallId, CallRecord, Controls, Direction, EndReason,
    Extension, Mode, Number, Refusal, ReleaseReason, ReleasedBy, TenantId,
};
use maskline_core::{EventId, EventType};
use maskline_core::{MessageId, MessageReason, MessageStatus};
use maskline_store::{
    ApiKey, AuditEntry, BindingFilter, CallFilter, ConsoleSession, DeliveryOutcome, DeliveryState,
    Error, ExpiredBinding, Fallback, IdempotencyRecord, Intercept, KeyId, MessageFilter, NewEvent,
    NextStep, Page, Part, PartsKey, PoolNumber, Receipt, Role, SqliteStore, Store, StoredEvent,
    Submit, Tenant, User, UserId, Webhook, Write,
};

fn tenant(n: u128) -> Tenant {
    Tenant {
        id: TenantId(n),
        name: format!("tenant-{n}"),
        api_key_hash: [n as u8; 32],
        created_at: 1_000,
    }
}

fn num(n: u64) -> Number {
    Number::from_digits(8_657_100_000_000 + n).unwrap()
}

fn party(n: u64) -> Number {
    Number::from_digits(8_613_800_000_000 + n).unwrap()
}

fn pool(t: u128, n: u64) -> PoolNumber {
    PoolNumber {
        tenant: TenantId(t),
        number: num(n),
        area: Some(Area::new("0571").unwrap()),
        created_at: 1_000,
    }
}

fn binding(id: u128, t: u128, a: u64, b: u64, expires_at: i64) -> Binding {
    Binding {
        id: BindingId(id),
        tenant: TenantId(t),
        mode: Mode::Axb,
        // Each tenant's own X.
        x: num(if t == 1 { 1 } else { 10 * t as u64 + 1 }),
        extension: None,
        a: party(a),
        b: Some(party(b)),
        area: Some(Area::new("0571").unwrap()),
        external_ref: Some(format!("order-{}", id % 2)),
        controls: Controls {
            max_call_seconds: Some(600),
            // Odd bindings carry the call prompts, so both forms round-trip.
            pre_connect: id % 2 == 1,
            callee_whisper: id % 2 == 1,
            warn_before_end_seconds: (id % 2 == 1).then_some(60),
            ..Controls::default()
        },
        created_at: 1_000,
        updated_at: 1_000,
        expires_at,
        ended_at: None,
        end_reason: None,
    }
}

/// An answered A-to-B call on binding 10 of tenant 1, invited at `invited_at`.
fn call(id: u128, t: u128, invited_at: i64) -> CallRecord {
    CallRecord {
        id: CallId(id),
        tenant: Some(TenantId(t)),
        binding: Some(BindingId(10)),
        direction: Some(Direction::AToB),
        x: Some(num(1)),
        caller: Some(party(1)),
        callee: Some(party(2)),
        invited_at,
        ringing_at: Some(invited_at + 300),
        answered_at: Some(invited_at + 2_500),
        ended_at: invited_at + 62_501,
        final_status: 200,
        released_by: ReleasedBy::Callee,
        release_reason: ReleaseReason::Normal,
        refusal: None,
        erased: Default::default(),
    }
}

async fn setup(s: &dyn Store) {
    s.enqueue(Write::CreateTenant(tenant(1), tenant(1).first_key("mlk_")))
        .await
        .unwrap();
    s.enqueue(Write::CreateTenant(tenant(2), tenant(2).first_key("mlk_")))
        .await
        .unwrap();
    s.enqueue(Write::ImportNumbers(vec![pool(1, 1), pool(1, 2)]))
        .await
        .unwrap();
}

fn expired(id: u128, at: i64, event: Option<NewEvent>) -> ExpiredBinding {
    ExpiredBinding {
        id: BindingId(id),
        ended_at: at,
        event,
    }
}

fn page<C>(limit: u32) -> Page<C> {
    Page { after: None, limit }
}

// === the cases ===

// === events ===

fn event(id: u128, t: u128, kind: EventType, subject: u128, deliver: bool) -> NewEvent {
    NewEvent {
        id: EventId(id),
        tenant: TenantId(t),
        kind,
        subject,
        created_at: 1_000_000 + id as i64,
        body: format!(r#"{{"id":"{id}","type":"{}"}}"#, kind.as_str()),
        deliver,
    }
}

fn outcome(id: u128, at: i64, next: NextStep) -> DeliveryOutcome {
    DeliveryOutcome {
        event: EventId(id),
        at,
        status: Some(if next == NextStep::Delivered {
            200
        } else {
            500
        }),
        error: (next != NextStep::Delivered).then(|| "HTTP 500".to_owned()),
        next,
    }
}

async fn ids(s: &dyn Store, t: u128, types: &[EventType]) -> Vec<u128> {
    s.events(TenantId(t), types, page(100))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect()
}

/// Claims what is due at `now` without a lease (so a later call at the same
/// `now` sees the same events).
async fn due(s: &dyn Store, t: u128, now: i64) -> Vec<u128> {
    s.claim_due_events(TenantId(t), now, now, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect()
}

async fn events_are_recorded_with_their_change(s: Arc<dyn Store>) {
    setup(&*s).await;
    let b = binding(1, 1, 1, 2, 5_000);
    s.enqueue(Write::CreateBinding {
        binding: b.clone(),
        idempotency: None,
        events: vec![event(10, 1, EventType::BindingCreated, 1, true)],
    })
    .await
    .unwrap();
    s.enqueue(Write::UpdateBinding {
        binding: b.clone(),
        events: vec![event(11, 1, EventType::BindingUpdated, 1, false)],
    })
    .await
    .unwrap();
    let mut cdr = call(20, 1, 2_000);
    cdr.binding = Some(BindingId(1));
    s.enqueue(Write::RecordEvents(vec![event(
        12,
        1,
        EventType::CallStarted,
        1,
        true,
    )]))
    .await
    .unwrap();
    s.enqueue(Write::RecordCall {
        record: cdr,
        events: vec![event(13, 1, EventType::CallEnded, 1, true)],
    })
    .await
    .unwrap();
    // Another tenant's event, and a refused change: its event is not kept.
    s.enqueue(Write::RecordEvents(vec![event(
        30,
        2,
        EventType::CallRefused,
        99,
        true,
    )]))
    .await
    .unwrap();
    let refused = s
        .enqueue(Write::CreateBinding {
            binding: b.clone(),
            idempotency: None,
            events: vec![event(14, 1, EventType::BindingCreated, 1, true)],
        })
        .await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");

    assert_eq!(ids(&*s, 1, &[]).await, vec![10, 11, 12, 13]);
    assert_eq!(ids(&*s, 2, &[]).await, vec![30]);
    let all = s.events(TenantId(1), &[], page(100)).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let created = &all[0];
    assert_eq!(created.kind, EventType::BindingCreated);
    assert_eq!(created.subject, 1);
    assert_eq!(created.created_at, 1_000_010);
    assert_eq!(created.body, r#"{"id":"10","type":"binding.created"}"#);
    assert_eq!(
        (created.state, created.attempts, created.next_attempt_at),
        (DeliveryState::Pending, 0, Some(1_000_010))
    );
    assert_eq!(all[1].state, DeliveryState::None);
    assert_eq!(all[1].next_attempt_at, None);
    assert_eq!(
        s.event(TenantId(1), EventId(11)).await.unwrap(),
        Some(all[1].clone())
    );
    assert_eq!(s.event(TenantId(2), EventId(11)).await.unwrap(), None);
    assert_eq!(s.pending_events().await.unwrap(), 4);
}

async fn event_lists_filter_by_type_and_page_in_order(s: Arc<dyn Store>) {
    setup(&*s).await;
    let kinds = [
        EventType::BindingCreated,
        EventType::CallStarted,
        EventType::CallEnded,
        EventType::BindingEnded,
    ];
    // Ids deliberately out of order: lists follow apply order.
    for (i, id) in [5u128, 3, 9, 1, 7, 2].into_iter().enumerate() {
        s.enqueue(Write::RecordEvents(vec![event(
            id,
            1,
            kinds[i % kinds.len()],
            1,
            false,
        )]))
        .await
        .unwrap();
    }
    assert_eq!(ids(&*s, 1, &[]).await, vec![5, 3, 9, 1, 7, 2]);
    assert_eq!(
        ids(&*s, 1, &[EventType::CallStarted, EventType::CallEnded]).await,
        vec![3, 9, 2]
    );
    let first = s.events(TenantId(1), &[], page(2)).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = s
        .events(
            TenantId(1),
            &[],
            Page {
                after: Some(first[1].seq),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|e| e.id.0).collect::<Vec<_>>(),
        vec![9, 1, 7, 2]
    );
    // Newest first, a page back at a time, and only the tenant's.
    let ids_of = |v: Vec<StoredEvent>| v.iter().map(|e| e.id.0).collect::<Vec<_>>();
    let newest = s.recent_events(TenantId(1), page(4)).await.unwrap();
    assert!(newest.windows(2).all(|w| w[0].seq > w[1].seq));
    let last = newest[3].seq;
    assert_eq!(ids_of(newest), vec![2, 7, 1, 9]);
    let older = s
        .recent_events(
            TenantId(1),
            Page {
                after: Some(last),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids_of(older), vec![3, 5]);
    assert!(
        s.recent_events(TenantId(2), page(10))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn expiry_event_only_for_the_write_that_ends_it(s: Arc<dyn Store>) {
    setup(&*s).await;
    s.enqueue(Write::CreateBinding {
        binding: binding(1, 1, 1, 2, 900),
        idempotency: None,
        events: Vec::new(),
    })
    .await
    .unwrap();
    for id in [40, 41] {
        s.enqueue(Write::ExpireBindings {
            ended: vec![expired(
                1,
                900,
                Some(event(id, 1, EventType::BindingEnded, 1, true)),
            )],
            at: 1_000,
        })
        .await
        .unwrap();
    }
    assert_eq!(ids(&*s, 1, &[]).await, vec![40]);
}

async fn due_events_keep_each_subject_in_order(s: Arc<dyn Store>) {
    setup(&*s).await;
    // Subject 1: 1, 2; subject 2: 3; subject 3: 4 (not for delivery), 5.
    s.enqueue(Write::RecordEvents(vec![
        event(1, 1, EventType::BindingCreated, 1, true),
        event(2, 1, EventType::BindingEnded, 1, true),
        event(3, 1, EventType::BindingCreated, 2, true),
        event(4, 1, EventType::BindingCreated, 3, false),
        event(5, 1, EventType::BindingEnded, 3, true),
        event(6, 2, EventType::BindingCreated, 9, true),
    ]))
    .await
    .unwrap();
    let now = 2_000_000;
    // Not yet due before their creation time.
    assert_eq!(due(&*s, 1, 1_000_002).await, vec![1]);
    assert_eq!(due(&*s, 1, now).await, vec![1, 3, 5]);
    assert_eq!(due(&*s, 2, now).await, vec![6]);

    // 1 fails and waits: 2 stays behind it.
    s.enqueue(Write::DeliveryOutcomes(vec![
        outcome(1, now, NextStep::RetryAt(now + 5_000)),
        outcome(3, now, NextStep::Delivered),
    ]))
    .await
    .unwrap();
    assert_eq!(due(&*s, 1, now + 1).await, vec![5]);
    assert_eq!(due(&*s, 1, now + 5_000).await, vec![5, 1]);
    let one = s.event(TenantId(1), EventId(1)).await.unwrap().unwrap();
    assert_eq!(
        (
            one.state,
            one.attempts,
            one.last_status,
            one.last_error.as_deref()
        ),
        (DeliveryState::Pending, 1, Some(500), Some("HTTP 500"))
    );
    let three = s.event(TenantId(1), EventId(3)).await.unwrap().unwrap();
    assert_eq!(
        (three.state, three.attempts, three.delivered_at),
        (DeliveryState::Delivered, 1, Some(now))
    );
    // A failed event no longer holds its subject back.
    s.enqueue(Write::DeliveryOutcomes(vec![outcome(
        1,
        now,
        NextStep::Failed,
    )]))
    .await
    .unwrap();
    assert_eq!(due(&*s, 1, now + 5_000).await, vec![2, 5]);
    assert_eq!(
        s.event(TenantId(1), EventId(1))
            .await
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Failed
    );
    assert_eq!(s.pending_events().await.unwrap(), 3);
}

async fn claimed_events_wait_for_their_lease(s: Arc<dyn Store>) {
    setup(&*s).await;
    s.enqueue(Write::RecordEvents(vec![
        event(1, 1, EventType::BindingCreated, 1, true),
        event(2, 1, EventType::BindingCreated, 2, true),
    ]))
    .await
    .unwrap();
    let now = 2_000_000;
    let claim = |now: i64, lease: i64, limit: u32| {
        let s = s.clone();
        async move {
            s.claim_due_events(TenantId(1), now, lease, limit)
                .await
                .unwrap()
                .iter()
                .map(|e| e.id.0)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(claim(now, now + 30_000, 1).await, vec![1]);
    // Claimed: not offered again until the lease ends.
    assert_eq!(claim(now, now + 30_000, 10).await, vec![2]);
    assert_eq!(claim(now + 1, now + 30_000, 10).await, Vec::<u128>::new());
    // An outcome replaces the lease; a claimer that died leaves the event
    // due again when its lease ends.
    s.enqueue(Write::DeliveryOutcomes(vec![outcome(
        1,
        now + 10,
        NextStep::RetryAt(now + 20),
    )]))
    .await
    .unwrap();
    assert_eq!(claim(now + 20, now + 40_000, 10).await, vec![1]);
    assert_eq!(claim(now + 30_000, now + 60_000, 10).await, vec![2]);
}

async fn bindings_changed_since_and_on_a_number(s: Arc<dyn Store>) {
    setup(&*s).await;
    for (id, a, b, exp) in [(1u128, 1, 2, 5_000), (2, 3, 4, 1_500), (3, 5, 6, 5_000)] {
        s.enqueue(Write::CreateBinding {
            binding: binding(id, 1, a, b, exp),
            idempotency: None,
            events: Vec::new(),
        })
        .await
        .unwrap();
    }
    let mut third = binding(3, 1, 5, 6, 5_000);
    third.ended_at = Some(2_000);
    third.end_reason = Some(EndReason::Unbound);
    third.updated_at = 2_000;
    s.enqueue(Write::UpdateBinding {
        binding: third,
        events: Vec::new(),
    })
    .await
    .unwrap();
    let ids = |v: Vec<Binding>| v.into_iter().map(|b| b.id.0).collect::<Vec<_>>();
    assert_eq!(ids(s.changed_bindings(1_000).await.unwrap()), vec![1, 2, 3]);
    assert_eq!(ids(s.changed_bindings(1_001).await.unwrap()), vec![3]);
    let mut on = ids(s.bindings_on(num(1), 1_900).await.unwrap());
    on.sort();
    assert_eq!(on, vec![1, 3]);
    assert!(s.bindings_on(num(2), 0).await.unwrap().is_empty());
}

async fn redelivery_requeues_with_a_fresh_window(s: Arc<dyn Store>) {
    setup(&*s).await;
    s.enqueue(Write::RecordEvents(vec![event(
        1,
        1,
        EventType::CallEnded,
        1,
        true,
    )]))
    .await
    .unwrap();
    s.enqueue(Write::DeliveryOutcomes(vec![outcome(
        1,
        3_000_000,
        NextStep::Delivered,
    )]))
    .await
    .unwrap();
    // An outcome for an event no longer pending changes nothing.
    s.enqueue(Write::DeliveryOutcomes(vec![outcome(
        1,
        3_000_001,
        NextStep::Failed,
    )]))
    .await
    .unwrap();
    assert!(due(&*s, 1, 4_000_000).await.is_empty());
    s.enqueue(Write::Redeliver {
        tenant: TenantId(1),
        event: EventId(1),
        at: 4_000_000,
    })
    .await
    .unwrap();
    let e = s.event(TenantId(1), EventId(1)).await.unwrap().unwrap();
    assert_eq!(
        (e.state, e.attempts, e.next_attempt_at, e.retry_from),
        (DeliveryState::Pending, 1, Some(4_000_000), 4_000_000)
    );
    assert_eq!(due(&*s, 1, 4_000_000).await, vec![1]);
    for (t, id) in [(2, 1), (1, 77)] {
        let r = s
            .enqueue(Write::Redeliver {
                tenant: TenantId(t),
                event: EventId(id),
                at: 1,
            })
            .await;
        assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    }
}

async fn webhooks_round_trip(s: Arc<dyn Store>) {
    setup(&*s).await;
    let mut w = Webhook {
        tenant: TenantId(1),
        url: "http://127.0.0.1:9/hook".to_owned(),
        events: vec!["call.*".parse().unwrap(), "binding.ended".parse().unwrap()],
        secret: "whsec_1".to_owned(),
        intercept: None,
        updated_at: 10,
    };
    s.enqueue(Write::PutWebhook(w.clone())).await.unwrap();
    assert_eq!(s.webhooks().await.unwrap(), vec![w.clone()]);
    w.events.clear();
    w.secret = "whsec_2".to_owned();
    w.intercept = Some(Intercept {
        url: "https://example.com/ask".to_owned(),
        fallback: Fallback::Deny,
        timeout_ms: 800,
    });
    s.enqueue(Write::PutWebhook(w.clone())).await.unwrap();
    assert_eq!(s.webhooks().await.unwrap(), vec![w.clone()]);
    // Only a known tenant can have one.
    let stray = Webhook {
        tenant: TenantId(77),
        ..w.clone()
    };
    assert!(matches!(
        s.enqueue(Write::PutWebhook(stray)).await,
        Err(Error::Conflict(_))
    ));
    s.enqueue(Write::DeleteWebhook {
        tenant: TenantId(1),
    })
    .await
    .unwrap();
    assert!(s.webhooks().await.unwrap().is_empty());
}

async fn bindings_by_id_reads_any_tenant(s: Arc<dyn Store>) {
    setup(&*s).await;
    for (id, t) in [(1, 1), (2, 2)] {
        s.enqueue(Write::CreateBinding {
            binding: binding(id, t, 1, 2, 5_000),
            idempotency: None,
            events: Vec::new(),
        })
        .await
        .unwrap();
    }
    let mut got: Vec<u128> = s
        .bindings_by_id(&[BindingId(2), BindingId(1), BindingId(9)])
        .await
        .unwrap()
        .iter()
        .map(|b| b.id.0)
        .collect();
    got.sort();
    assert_eq!(got, vec![1, 2]);
}

async fn tenants_and_meta_round_trip(s: Arc<dyn Store>) {
    setup(&*s).await;
    let all = s.tenants().await.unwrap();
    assert_eq!(all, vec![tenant(1), tenant(2)]);
    assert_eq!(s.get_meta("k").await.unwrap(), None);
    s.enqueue(Write::PutMeta {
        key: "k".into(),
        value: "v1".into(),
    })
    .await
    .unwrap();
    s.enqueue(Write::PutMeta {
        key: "k".into(),
        value: "v2".into(),
    })
    .await
    .unwrap();
    assert_eq!(s.get_meta("k").await.unwrap().as_deref(), Some("v2"));
    let mut dup = tenant(3);
    dup.api_key_hash = tenant(1).api_key_hash;
    assert!(matches!(
        s.enqueue(Write::CreateTenant(dup.clone(), dup.first_key("mlk_")))
            .await,
        Err(Error::Conflict(_))
    ));
}

async fn number_import_is_all_or_nothing(s: Arc<dyn Store>) {
    setup(&*s).await;
    // Tenant 2 tries a fresh number and one of tenant 1's: neither lands.
    let r = s
        .enqueue(Write::ImportNumbers(vec![pool(2, 3), pool(2, 1)]))
        .await;
    assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    assert!(s.numbers(TenantId(2), page(10)).await.unwrap().is_empty());
    // Re-importing one's own number is harmless.
    s.enqueue(Write::ImportNumbers(vec![pool(1, 1)]))
        .await
        .unwrap();
    let mine = s.numbers(TenantId(1), page(10)).await.unwrap();
    assert_eq!(mine, vec![pool(1, 1), pool(1, 2)]);
    let second = s
        .numbers(
            TenantId(1),
            Page {
                after: Some(num(1)),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(second, vec![pool(1, 2)]);
    s.enqueue(Write::RetireNumber {
        tenant: TenantId(2),
        number: num(1),
    })
    .await
    .unwrap();
    assert_eq!(
        s.all_numbers().await.unwrap().len(),
        2,
        "retiring another tenant's number does nothing"
    );
    s.enqueue(Write::RetireNumber {
        tenant: TenantId(1),
        number: num(1),
    })
    .await
    .unwrap();
    assert_eq!(s.all_numbers().await.unwrap(), vec![pool(1, 2)]);
}

async fn bindings_round_trip_and_stay_in_their_tenant(s: Arc<dyn Store>) {
    setup(&*s).await;
    let mut b = binding(10, 1, 1, 2, 5_000);
    b.mode = Mode::Axe;
    b.b = None;
    b.extension = Some("0042".parse::<Extension>().unwrap());
    s.enqueue(Write::CreateBinding {
        binding: b.clone(),
        idempotency: None,
        events: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        s.binding(TenantId(1), BindingId(10)).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(s.binding(TenantId(2), BindingId(10)).await.unwrap(), None);
    let mut changed = b.clone();
    changed.b = Some(party(7));
    changed.controls.sms = false;
    changed.ended_at = Some(4_000);
    changed.end_reason = Some(EndReason::Unbound);
    changed.updated_at = 4_000;
    s.enqueue(Write::UpdateBinding {
        binding: changed.clone(),
        events: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        s.binding(TenantId(1), BindingId(10)).await.unwrap(),
        Some(changed.clone())
    );
    let mut foreign = changed.clone();
    foreign.tenant = TenantId(2);
    assert!(
        s.enqueue(Write::UpdateBinding {
            binding: foreign,
            events: Vec::new()
        })
        .await
        .is_err(),
        "no update across tenants"
    );
    let dup = s
        .enqueue(Write::CreateBinding {
            binding: b.clone(),
            idempotency: None,
            events: Vec::new(),
        })
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))));
}

async fn binding_filters_and_pages(s: Arc<dyn Store>) {
    setup(&*s).await;
    // ends_at 500 (ended long ago), 950 (cooling at 1000 with cool-down 100), 5000 (active).
    for (id, a, b, exp) in [
        (1u128, 1, 2, 500),
        (2, 3, 4, 950),
        (3, 1, 5, 5_000),
        (4, 6, 7, 5_000),
    ] {
        s.enqueue(Write::CreateBinding {
            binding: binding(id, 1, a, b, exp),
            idempotency: None,
            events: Vec::new(),
        })
        .await
        .unwrap();
    }
    s.enqueue(Write::CreateBinding {
        binding: binding(5, 2, 1, 2, 5_000),
        idempotency: None,
        events: Vec::new(),
    })
    .await
    .unwrap();
    let ids = |v: Vec<Binding>| v.into_iter().map(|b| b.id.0).collect::<Vec<_>>();
    let s = &*s;
    let all = |f: BindingFilter| async move {
        ids(s.bindings(TenantId(1), &f, page(100)).await.unwrap())
    };
    assert_eq!(all(BindingFilter::default()).await, vec![1, 2, 3, 4]);
    assert_eq!(
        all(BindingFilter {
            party: Some(party(1)),
            ..Default::default()
        })
        .await,
        vec![1, 3]
    );
    assert_eq!(
        all(BindingFilter {
            party: Some(party(5)),
            ..Default::default()
        })
        .await,
        vec![3],
        "party matches b too"
    );
    assert_eq!(
        all(BindingFilter {
            external_ref: Some("order-0".into()),
            ..Default::default()
        })
        .await,
        vec![2, 4]
    );
    let status = |st| BindingFilter {
        status: Some((st, 1_000, 100)),
        ..Default::default()
    };
    assert_eq!(all(status(BindingStatus::Active)).await, vec![3, 4]);
    assert_eq!(all(status(BindingStatus::Cooling)).await, vec![2]);
    assert_eq!(all(status(BindingStatus::Ended)).await, vec![1]);
    let p1 = s
        .bindings(TenantId(1), &BindingFilter::default(), page(2))
        .await
        .unwrap();
    assert_eq!(ids(p1), vec![1, 2]);
    let p2 = s
        .bindings(
            TenantId(1),
            &BindingFilter::default(),
            Page {
                after: Some(BindingId(2)),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(p2), vec![3, 4]);
    // Newest first (the console's lists), pages going back, filters kept.
    let newest = BindingFilter {
        newest_first: true,
        ..Default::default()
    };
    assert_eq!(all(newest.clone()).await, vec![4, 3, 2, 1]);
    let back = |after, limit| Page {
        after: Some(BindingId(after)),
        limit,
    };
    assert_eq!(
        ids(s.bindings(TenantId(1), &newest, back(4, 2)).await.unwrap()),
        vec![3, 2]
    );
    assert_eq!(
        ids(s.bindings(TenantId(1), &newest, back(1, 2)).await.unwrap()),
        Vec::<u128>::new()
    );
    assert_eq!(
        all(BindingFilter {
            party: Some(party(1)),
            ..newest
        })
        .await,
        vec![3, 1]
    );
}

async fn expiry_is_recorded_once(s: Arc<dyn Store>) {
    setup(&*s).await;
    s.enqueue(Write::CreateBinding {
        binding: binding(1, 1, 1, 2, 900),
        idempotency: None,
        events: Vec::new(),
    })
    .await
    .unwrap();
    let mut unbound = binding(2, 1, 3, 4, 900);
    unbound.ended_at = Some(800);
    unbound.end_reason = Some(EndReason::Unbound);
    s.enqueue(Write::CreateBinding {
        binding: unbound.clone(),
        idempotency: None,
        events: Vec::new(),
    })
    .await
    .unwrap();
    s.enqueue(Write::ExpireBindings {
        ended: vec![expired(1, 900, None), expired(2, 900, None)],
        at: 1_000,
    })
    .await
    .unwrap();
    let b1 = s.binding(TenantId(1), BindingId(1)).await.unwrap().unwrap();
    assert_eq!(
        (b1.ended_at, b1.end_reason),
        (Some(900), Some(EndReason::Expired))
    );
    let b2 = s.binding(TenantId(1), BindingId(2)).await.unwrap().unwrap();
    assert_eq!(b2, unbound, "an unbound binding keeps its own end");
}

async fn scan_streams_bindings_ending_after_the_horizon(s: Arc<dyn Store>) {
    setup(&*s).await;
    for (id, exp) in [(1u128, 100), (2, 200), (3, 300)] {
        s.enqueue(Write::CreateBinding {
            binding: binding(id, 1, id as u64, 50 + id as u64, exp),
            idempotency: None,
            events: Vec::new(),
        })
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let n = s
        .scan_bindings(200, &mut |b| seen.push(b.id.0))
        .await
        .unwrap();
    assert_eq!((n, seen), (2, vec![2, 3]));
}

async fn idempotency_record_is_atomic_with_its_binding(s: Arc<dyn Store>) {
    setup(&*s).await;
    let rec = |key: &str| IdempotencyRecord {
        tenant: TenantId(1),
        key: key.into(),
        request_hash: [7; 32],
        status: 201,
        body: "{\"id\":1}".into(),
        created_at: 1_000,
    };
    s.enqueue(Write::CreateBinding {
        binding: binding(1, 1, 1, 2, 5_000),
        idempotency: Some(rec("k")),
        events: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        s.idempotency(TenantId(1), "k").await.unwrap(),
        Some(rec("k"))
    );
    assert_eq!(
        s.idempotency(TenantId(2), "k").await.unwrap(),
        None,
        "keys are per tenant"
    );
    let again = s
        .enqueue(Write::CreateBinding {
            binding: binding(2, 1, 3, 4, 5_000),
            idempotency: Some(rec("k")),
            events: Vec::new(),
        })
        .await;
    assert!(matches!(again, Err(Error::Conflict(_))));
    assert_eq!(
        s.binding(TenantId(1), BindingId(2)).await.unwrap(),
        None,
        "the binding rolled back with its key"
    );
    s.enqueue(Write::PurgeIdempotency { before: 1_001 })
        .await
        .unwrap();
    assert_eq!(s.idempotency(TenantId(1), "k").await.unwrap(), None);
}

async fn concurrent_writes_group_commit_and_fail_alone(s: Arc<dyn Store>) {
    setup(&*s).await;
    let mut acks = Vec::new();
    for i in 0..1_000u128 {
        acks.push(s.enqueue(Write::CreateBinding {
            binding: binding(100 + i, 1, 1_000 + i as u64, 5_000 + i as u64, 9_000),
            idempotency: None,
            events: Vec::new(),
        }));
        if i == 500 {
            // A write that must fail, in the middle of the burst.
            acks.push(s.enqueue(Write::CreateBinding {
                binding: binding(100, 1, 1, 2, 9_000),
                idempotency: None,
                events: Vec::new(),
            }));
        }
    }
    let mut failed = 0;
    for ack in acks {
        if ack.await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "only the duplicate fails");
    let stored = s
        .bindings(TenantId(1), &BindingFilter::default(), page(2_000))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1_000);
}

async fn writes_apply_in_queue_order(s: Arc<dyn Store>) {
    setup(&*s).await;
    let b = binding(1, 1, 1, 2, 5_000);
    let create = s.enqueue(Write::CreateBinding {
        binding: b.clone(),
        idempotency: None,
        events: Vec::new(),
    });
    let mut acks = vec![create];
    for i in 0..50 {
        let mut next = b.clone();
        next.b = Some(party(100 + i));
        acks.push(s.enqueue(Write::UpdateBinding {
            binding: next,
            events: Vec::new(),
        }));
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let got = s.binding(TenantId(1), BindingId(1)).await.unwrap().unwrap();
    assert_eq!(got.b, Some(party(149)));
}

async fn calls_round_trip_every_field(s: Arc<dyn Store>) {
    let answered = call(1, 1, 1_700_000_000_123);
    // Every optional field absent but the tenant (without one it is never
    // listed).
    let bare = CallRecord {
        id: CallId(2),
        tenant: Some(TenantId(1)),
        binding: None,
        direction: None,
        x: None,
        caller: None,
        callee: None,
        invited_at: 1_700_000_001_000,
        ringing_at: None,
        answered_at: None,
        ended_at: 1_700_000_001_004,
        final_status: 404,
        released_by: ReleasedBy::System,
        release_reason: ReleaseReason::Refused,
        refusal: Some(Refusal::NoBinding),
        erased: Default::default(),
    };
    let mut written = vec![answered, bare];
    // Every name of every enum, so none is stored in a form the reader refuses.
    let directions = [Direction::AToB, Direction::BToA, Direction::NToA];
    let released = [ReleasedBy::Caller, ReleasedBy::Callee, ReleasedBy::System];
    for (i, reason) in ReleaseReason::ALL.into_iter().enumerate() {
        let mut c = call(100 + i as u128, 1, 1_700_000_002_000 + i as i64);
        c.release_reason = reason;
        c.released_by = released[i % released.len()];
        c.direction = Some(directions[i % directions.len()]);
        c.refusal = Refusal::ALL.get(i).copied();
        c.final_status = [200, 486, 603, 480, 404, 502, 408][i % 7];
        written.push(c);
    }
    let acks: Vec<_> = written
        .iter()
        .map(|c| {
            s.enqueue(Write::RecordCall {
                record: c.clone(),
                events: Vec::new(),
            })
        })
        .collect();
    for ack in acks {
        ack.await.unwrap();
    }
    let got = s
        .calls(TenantId(1), &CallFilter::default(), page(100))
        .await
        .unwrap();
    assert_eq!(got, written);
    let dup = s
        .enqueue(Write::RecordCall {
            record: written[0].clone(),
            events: Vec::new(),
        })
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
}

async fn calls_stay_in_their_tenant(s: Arc<dyn Store>) {
    let mut unowned = call(3, 1, 3_000);
    unowned.tenant = None;
    for c in [
        call(1, 1, 1_000),
        call(2, 2, 2_000),
        unowned,
        call(4, 1, 4_000),
    ] {
        s.enqueue(Write::RecordCall {
            record: c,
            events: Vec::new(),
        })
        .await
        .unwrap();
    }
    let ids = |t| {
        let s = &s;
        async move {
            s.calls(TenantId(t), &CallFilter::default(), page(100))
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.id.0)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(1).await, vec![1, 4]);
    assert_eq!(ids(2).await, vec![2]);
    assert_eq!(
        ids(3).await,
        Vec::<u128>::new(),
        "calls without a tenant are never listed"
    );
}

async fn call_filters_and_pages(s: Arc<dyn Store>) {
    // Ids deliberately out of invited_at order: the time filter is on
    // invited_at, the order on id.
    let mut on_other = call(4, 1, 1_500);
    on_other.binding = Some(BindingId(11));
    let mut no_binding = call(5, 1, 2_500);
    no_binding.binding = None;
    for c in [
        call(1, 1, 1_000),
        call(2, 1, 3_000),
        call(3, 1, 2_000),
        on_other,
        no_binding,
        call(6, 2, 2_000),
    ] {
        s.enqueue(Write::RecordCall {
            record: c,
            events: Vec::new(),
        })
        .await
        .unwrap();
    }
    let s = &*s;
    let ids = |f: CallFilter, p: Page<CallId>| async move {
        s.calls(TenantId(1), &f, p)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id.0)
            .collect::<Vec<_>>()
    };
    let all = |f: CallFilter| ids(f, page(100));
    assert_eq!(all(CallFilter::default()).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        all(CallFilter {
            binding: Some(BindingId(10)),
            ..Default::default()
        })
        .await,
        vec![1, 2, 3]
    );
    assert_eq!(
        all(CallFilter {
            binding: Some(BindingId(99)),
            ..Default::default()
        })
        .await,
        Vec::<u128>::new()
    );
    assert_eq!(
        all(CallFilter {
            since: Some(2_000),
            ..Default::default()
        })
        .await,
        vec![2, 3, 5],
        "since is inclusive"
    );
    assert_eq!(
        all(CallFilter {
            until: Some(2_000),
            ..Default::default()
        })
        .await,
        vec![1, 4],
        "until is exclusive"
    );
    assert_eq!(
        all(CallFilter {
            since: Some(1_500),
            until: Some(2_500),
            ..Default::default()
        })
        .await,
        vec![3, 4]
    );
    assert_eq!(
        all(CallFilter {
            binding: Some(BindingId(10)),
            party: Some(party(1)),
            since: Some(1_001),
            until: Some(3_001),
            newest_first: false,
        })
        .await,
        vec![2, 3],
        "filters combine"
    );
    assert_eq!(
        all(CallFilter {
            since: Some(2_000),
            until: Some(2_000),
            ..Default::default()
        })
        .await,
        Vec::<u128>::new()
    );
    // Cursor paging, alone and under a filter.
    assert_eq!(ids(CallFilter::default(), page(2)).await, vec![1, 2]);
    let after = |id, limit| Page {
        after: Some(CallId(id)),
        limit,
    };
    assert_eq!(ids(CallFilter::default(), after(2, 2)).await, vec![3, 4]);
    assert_eq!(ids(CallFilter::default(), after(4, 2)).await, vec![5]);
    assert_eq!(
        ids(CallFilter::default(), after(5, 2)).await,
        Vec::<u128>::new()
    );
    let since = CallFilter {
        since: Some(2_000),
        ..Default::default()
    };
    assert_eq!(ids(since.clone(), after(2, 1)).await, vec![3]);
    assert_eq!(ids(since.clone(), after(3, 1)).await, vec![5]);
    // Newest first, going back a page at a time, alone and by time.
    let newest = CallFilter {
        newest_first: true,
        ..Default::default()
    };
    assert_eq!(ids(newest.clone(), page(2)).await, vec![5, 4]);
    assert_eq!(ids(newest.clone(), after(4, 2)).await, vec![3, 2]);
    assert_eq!(ids(newest, after(2, 5)).await, vec![1]);
    let newest_since = CallFilter {
        newest_first: true,
        ..since
    };
    assert_eq!(ids(newest_since.clone(), page(10)).await, vec![5, 3, 2]);
    assert_eq!(ids(newest_since, after(3, 10)).await, vec![2]);
}

async fn activity_counts_a_tenants_calls_and_texts_per_minute(s: Arc<dyn Store>) {
    setup(&*s).await;
    let minute = |m: i64| m * 60_000;
    for (id, tenant, at) in [
        (1, 1, minute(10) + 5),
        (2, 1, minute(10) + 59_999),
        (3, 1, minute(12)),
        (4, 1, minute(9) + 59_999),
        (5, 2, minute(10)),
    ] {
        s.enqueue(Write::RecordCall {
            record: call(id, tenant, at),
            events: Vec::new(),
        })
        .await
        .unwrap();
    }
    // Texts' ids are UUIDv7, their time in the first 48 bits.
    let v7 = |ms: i64, n: u128| (u128::from(ms as u64) << 80) | n;
    for (n, tenant, at) in [
        (1, Some(1), minute(11) + 1),
        (2, Some(1), minute(11) + 2),
        (3, Some(1), minute(9)),
        (4, Some(2), minute(11)),
        (5, None, minute(11)),
    ] {
        let m = message(v7(at, n), tenant, MessageStatus::Relayed, at);
        s.enqueue(record(m, None, Vec::new())).await.unwrap();
    }
    let pending = event(900, 1, EventType::CallEnded, 1, true);
    let quiet = event(901, 1, EventType::CallEnded, 2, false);
    s.enqueue(Write::RecordCall {
        record: call(6, 1, minute(1)),
        events: vec![pending, quiet],
    })
    .await
    .unwrap();
    let a = s.activity(TenantId(1), minute(10)).await.unwrap();
    assert_eq!(a.calls, vec![(10, 2), (12, 1)]);
    assert_eq!(a.texts, vec![(11, 2)]);
    assert_eq!(a.pending_events, 1);
    let other = s.activity(TenantId(2), minute(10)).await.unwrap();
    assert_eq!(other.calls, vec![(10, 1)]);
    assert_eq!(other.texts, vec![(11, 1)]);
    assert_eq!(other.pending_events, 0);
}

async fn calls_group_commit_and_fail_alone(s: Arc<dyn Store>) {
    setup(&*s).await;
    // CDRs interleaved with bindings, the way a busy node queues them.
    let mut acks = Vec::new();
    for i in 0..1_000u128 {
        acks.push(s.enqueue(Write::RecordCall {
            record: call(1_000 + i, 1, i as i64),
            events: Vec::new(),
        }));
        if i % 10 == 0 {
            acks.push(s.enqueue(Write::CreateBinding {
                binding: binding(i + 1, 1, 1_000 + i as u64, 5_000 + i as u64, 9_000),
                idempotency: None,
                events: Vec::new(),
            }));
        }
        if i == 500 {
            acks.push(s.enqueue(Write::RecordCall {
                record: call(1_000, 1, 0),
                events: Vec::new(),
            }));
        }
    }
    let mut failed = 0;
    for ack in acks {
        if ack.await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "only the duplicate fails");
    let stored = s
        .calls(TenantId(1), &CallFilter::default(), page(2_000))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1_000);
    let bindings = s
        .bindings(TenantId(1), &BindingFilter::default(), page(2_000))
        .await
        .unwrap();
    assert_eq!(bindings.len(), 100);
}

// === back ends ===

macro_rules! conformance {
    ($backend:ident, $open:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    let (_guard, store) = $open.await;
                    super::$case(store).await;
                }
            )*
        }
    };
}

async fn open_sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    (dir, Arc::new(store))
}

// === texts ===

fn message(id: u128, t: Option<u128>, status: MessageStatus, created_at: i64) -> Message {
    Message {
        id: MessageId(id),
        tenant: t.map(TenantId),
        binding: t.map(|_| BindingId(1)),
        direction: Some(Direction::NToA),
        x: num(1),
        from: Sender::Number(party(9)),
        to: (status == MessageStatus::Relayed).then(|| party(1)),
        text: format!("【菜鸟驿站】取件码12-3-{id:04}，请及时领取"),
        pickup_code: Some(format!("12-3-{id:04}")),
        status,
        reason: match status {
            MessageStatus::Blocked => Some(MessageReason::Marketing),
            MessageStatus::Held => Some(MessageReason::ExtensionUnknown),
            _ => None,
        },
        parts: u8::from(status == MessageStatus::Relayed),
        ingress: "smpp:smsc-1".to_owned(),
        created_at,
        updated_at: created_at,
        ends_at: 5_000,
    }
}

fn record(m: Message, relay_due: Option<i64>, events: Vec<NewEvent>) -> Write {
    Write::RecordMessage {
        message: m,
        relay_due,
        assembled_from: None,
        events,
    }
}

fn text_outcome(id: u128, part: Option<(&str, &str)>, delivered: bool, event: NewEvent) -> Write {
    Write::MessageOutcome {
        message: MessageId(id),
        part: part.map(|(l, s)| (l.to_owned(), s.to_owned())),
        delivered,
        reason: (!delivered).then_some(MessageReason::Undeliverable),
        at: 9_000,
        event,
    }
}

/// Text `id` handed over in `parts` parts on `smsc-1`; `ids` are the
/// carrier ids it gave (part number, id).
fn submitted(id: u128, parts: u8, ids: &[(u8, &str)]) -> Write {
    Write::MessageSubmitted {
        message: MessageId(id),
        parts,
        submits: ids
            .iter()
            .map(|(part, smsc_id)| Submit {
                link: "smsc-1".to_owned(),
                smsc_id: (*smsc_id).to_owned(),
                part: *part,
            })
            .collect(),
        at: 1_500,
    }
}

async fn messages_round_trip_and_list_by_tenant_binding_status(s: Arc<dyn Store>) {
    setup(&*s).await;
    let relayed = message(1, Some(1), MessageStatus::Relayed, 1_000);
    let mut held = message(2, Some(1), MessageStatus::Held, 1_001);
    held.binding = None;
    held.from = Sender::Id(SenderId::new("SF-Express").unwrap());
    let blocked = message(3, Some(1), MessageStatus::Blocked, 1_002);
    let other_tenant = message(4, Some(2), MessageStatus::Relayed, 1_003);
    let no_tenant = message(5, None, MessageStatus::Blocked, 1_004);
    for m in [&relayed, &held, &blocked, &other_tenant, &no_tenant] {
        let ev = m
            .tenant
            .map(|t| event(100 + m.id.0, t.0, EventType::SmsRelayed, m.id.0, true));
        s.enqueue(record(m.clone(), None, ev.into_iter().collect()))
            .await
            .unwrap();
    }
    let all = s
        .messages(TenantId(1), &MessageFilter::default(), page(10))
        .await
        .unwrap();
    assert_eq!(all, vec![relayed.clone(), held.clone(), blocked.clone()]);
    assert_eq!(
        s.message(TenantId(1), MessageId(1)).await.unwrap(),
        Some(relayed.clone())
    );
    assert_eq!(s.message(TenantId(2), MessageId(1)).await.unwrap(), None);
    let by_binding = MessageFilter {
        binding: Some(BindingId(1)),
        ..MessageFilter::default()
    };
    let ids = |v: Vec<Message>| v.iter().map(|m| m.id.0).collect::<Vec<_>>();
    assert_eq!(
        ids(s
            .messages(TenantId(1), &by_binding, page(10))
            .await
            .unwrap()),
        vec![1, 3]
    );
    let held_only = MessageFilter {
        status: Some(MessageStatus::Held),
        ..MessageFilter::default()
    };
    assert_eq!(
        ids(s.messages(TenantId(1), &held_only, page(10)).await.unwrap()),
        vec![2]
    );
    let newest = MessageFilter {
        newest_first: true,
        ..MessageFilter::default()
    };
    assert_eq!(
        ids(s.messages(TenantId(1), &newest, page(10)).await.unwrap()),
        vec![3, 2, 1]
    );
    // `since` bounds the id from below (a UUIDv7's first 48 bits are its
    // milliseconds; these ids all fall in the epoch's first one), with
    // every other filter.
    let since = |ms, binding, status| MessageFilter {
        since: Some(ms),
        binding,
        status,
        newest_first: true,
    };
    for (filter, want) in [
        (since(0, None, None), vec![3, 2, 1]),
        (since(1, None, None), vec![]),
        (
            since(0, Some(BindingId(1)), Some(MessageStatus::Blocked)),
            vec![3],
        ),
        (since(1, Some(BindingId(1)), None), vec![]),
    ] {
        assert_eq!(
            ids(s.messages(TenantId(1), &filter, page(10)).await.unwrap()),
            want,
            "{filter:?}"
        );
    }
    assert_eq!(
        ids(s
            .messages(
                TenantId(1),
                &newest,
                Page {
                    after: Some(MessageId(3)),
                    limit: 1
                }
            )
            .await
            .unwrap()),
        vec![2]
    );
    let second = s
        .messages(
            TenantId(1),
            &MessageFilter::default(),
            Page {
                after: Some(MessageId(1)),
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(second), vec![2]);
    // Their events went in with them.
    let events = s
        .events(TenantId(1), &[EventType::SmsRelayed], page(10))
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
}

async fn relays_are_due_until_submitted_and_claims_lease_them(s: Arc<dyn Store>) {
    setup(&*s).await;
    for id in [1, 2] {
        s.enqueue(record(
            message(id, Some(1), MessageStatus::Relayed, 1_000),
            Some(2_000),
            vec![],
        ))
        .await
        .unwrap();
    }
    s.enqueue(record(
        message(3, Some(1), MessageStatus::Held, 1_000),
        None,
        vec![],
    ))
    .await
    .unwrap();
    assert!(
        s.claim_due_relays(1_999, 5_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    s.enqueue(submitted(1, 1, &[(1, "abc")])).await.unwrap();
    let claimed = s.claim_due_relays(2_000, 5_000, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![2]);
    // Leased: not offered again until the lease ends.
    assert!(
        s.claim_due_relays(4_999, 6_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.claim_due_relays(5_000, 8_000, 10).await.unwrap().len(), 1);
    s.enqueue(Write::RelayLater {
        message: MessageId(2),
        due: 20_000,
    })
    .await
    .unwrap();
    assert!(
        s.claim_due_relays(19_999, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.claim_due_relays(20_000, 30_000, 10).await.unwrap().len(),
        1
    );
    // The holder renews its lease (a relay waiting for a busy link); a
    // shorter one changes nothing, and texts not due are left alone.
    for until in [40_000, 35_000] {
        s.enqueue(Write::LeaseRelays {
            messages: vec![MessageId(2), MessageId(1), MessageId(3)],
            until,
        })
        .await
        .unwrap();
    }
    assert!(
        s.claim_due_relays(39_999, 50_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = s.claim_due_relays(40_000, 50_000, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![2]);
    assert_eq!(
        s.message_by_submit("smsc-1", "abc")
            .await
            .unwrap()
            .map(|m| m.id),
        Some(MessageId(1))
    );
    assert_eq!(s.message_by_submit("smsc-2", "abc").await.unwrap(), None);
}

async fn a_held_text_is_released_once_and_becomes_due(s: Arc<dyn Store>) {
    setup(&*s).await;
    let mut held = message(7, Some(1), MessageStatus::Held, 1_000);
    held.binding = None;
    held.direction = None;
    held.ends_at = 1_000;
    s.enqueue(record(held.clone(), None, vec![])).await.unwrap();
    let mut released = held.clone();
    released.binding = Some(BindingId(1));
    released.direction = Some(Direction::NToA);
    released.to = Some(party(1));
    released.status = MessageStatus::Relayed;
    released.reason = None;
    released.updated_at = 1_500;
    released.ends_at = 5_000;
    let release = |m: &Message, tenant: u128, ev: u128| Write::ReleaseMessage {
        message: Message {
            tenant: Some(TenantId(tenant)),
            ..m.clone()
        },
        relay_due: 2_000,
        event: event(ev, tenant, EventType::SmsRelayed, 1, true),
    };
    // Another tenant cannot release it.
    assert!(matches!(
        s.enqueue(release(&released, 2, 70)).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        s.message(TenantId(1), MessageId(7)).await.unwrap(),
        Some(held)
    );
    s.enqueue(release(&released, 1, 71)).await.unwrap();
    assert_eq!(
        s.message(TenantId(1), MessageId(7)).await.unwrap(),
        Some(released.clone())
    );
    // Listed as relayed, and due for sending.
    let relayed = s
        .messages(
            TenantId(1),
            &MessageFilter {
                status: Some(MessageStatus::Relayed),
                ..MessageFilter::default()
            },
            page(10),
        )
        .await
        .unwrap();
    assert_eq!(relayed, vec![released.clone()]);
    let claimed = s.claim_due_relays(2_000, 5_000, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![7]);
    assert!(s.event(TenantId(1), EventId(71)).await.unwrap().is_some());
    // Released already: a second release changes nothing.
    assert!(matches!(
        s.enqueue(release(&released, 1, 72)).await,
        Err(Error::Conflict(_))
    ));
    assert!(s.event(TenantId(1), EventId(72)).await.unwrap().is_none());
    assert_eq!(s.claim_due_relays(5_000, 8_000, 10).await.unwrap().len(), 1);
}

async fn a_tenants_rate_limit_is_set_replaced_and_cleared(s: Arc<dyn Store>) {
    setup(&*s).await;
    assert!(s.tenant_limits().await.unwrap().is_empty());
    let put = |t: u128, rate_limit: Option<u32>| Write::PutTenantLimit {
        tenant: TenantId(t),
        rate_limit,
        updated_at: 2_000,
    };
    s.enqueue(put(1, Some(50))).await.unwrap();
    s.enqueue(put(2, Some(0))).await.unwrap();
    s.enqueue(put(1, Some(7))).await.unwrap();
    let mut limits = s.tenant_limits().await.unwrap();
    limits.sort();
    assert_eq!(limits, vec![(TenantId(1), 7), (TenantId(2), 0)]);
    s.enqueue(put(1, None)).await.unwrap();
    s.enqueue(put(1, None)).await.unwrap();
    assert_eq!(s.tenant_limits().await.unwrap(), vec![(TenantId(2), 0)]);
    // Only a tenant that exists has one.
    assert!(matches!(
        s.enqueue(put(99, Some(5))).await,
        Err(Error::Conflict(_))
    ));
}

async fn a_text_is_delivered_once_every_part_is(s: Arc<dyn Store>) {
    setup(&*s).await;
    let mut two_parts = message(1, Some(1), MessageStatus::Relayed, 1_000);
    two_parts.parts = 2;
    s.enqueue(record(two_parts, Some(2_000), vec![]))
        .await
        .unwrap();
    s.enqueue(record(
        message(2, Some(1), MessageStatus::Relayed, 1_000),
        Some(2_000),
        vec![],
    ))
    .await
    .unwrap();
    // Every part of a text is handed over in one write.
    s.enqueue(submitted(1, 2, &[(1, "a1"), (2, "a2")]))
        .await
        .unwrap();
    s.enqueue(submitted(2, 1, &[(1, "b1")])).await.unwrap();
    assert_eq!(
        s.message(TenantId(1), MessageId(1))
            .await
            .unwrap()
            .unwrap()
            .parts,
        2
    );
    let delivered = |n| event(n, 1, EventType::SmsDelivered, 1, true);
    let failed = |n| event(n, 1, EventType::SmsFailed, 2, true);
    let status = |id| {
        let s = s.clone();
        async move {
            s.message(TenantId(1), MessageId(id))
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };
    s.enqueue(text_outcome(1, Some(("smsc-1", "a1")), true, delivered(10)))
        .await
        .unwrap();
    assert_eq!(status(1).await, MessageStatus::Relayed);
    s.enqueue(text_outcome(1, Some(("smsc-1", "a2")), true, delivered(11)))
        .await
        .unwrap();
    assert_eq!(status(1).await, MessageStatus::Delivered);
    // A late receipt changes nothing and records no event.
    s.enqueue(text_outcome(1, Some(("smsc-1", "a2")), false, failed(12)))
        .await
        .unwrap();
    assert_eq!(status(1).await, MessageStatus::Delivered);
    s.enqueue(text_outcome(2, Some(("smsc-1", "b1")), false, failed(13)))
        .await
        .unwrap();
    let m2 = s.message(TenantId(1), MessageId(2)).await.unwrap().unwrap();
    assert_eq!(
        (m2.status, m2.reason),
        (MessageStatus::Failed, Some(MessageReason::Undeliverable))
    );
    s.enqueue(text_outcome(2, Some(("smsc-1", "b1")), true, delivered(14)))
        .await
        .unwrap();
    assert_eq!(status(2).await, MessageStatus::Failed);
    let ids: Vec<u128> = s
        .events(TenantId(1), &[], page(10))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect();
    assert_eq!(ids, vec![11, 13]);
    // A relay no link took fails without a receipt, and is no longer due.
    s.enqueue(record(
        message(3, Some(1), MessageStatus::Relayed, 1_000),
        Some(2_000),
        vec![],
    ))
    .await
    .unwrap();
    s.enqueue(text_outcome(3, None, false, failed(15)))
        .await
        .unwrap();
    assert_eq!(status(3).await, MessageStatus::Failed);
    assert!(
        s.claim_due_relays(10_000, 20_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn parts_are_kept_until_assembled(s: Arc<dyn Store>) {
    setup(&*s).await;
    let key = PartsKey {
        x: num(1),
        from: Sender::Number(party(9)),
        reference: 77,
    };
    let part = |seq: u8, at: i64| Part {
        key: key.clone(),
        seq,
        total: 3,
        coding: 8,
        bytes: vec![0, seq, 0xff],
        received_at: at,
        ingress: "smpp:smsc-1".to_owned(),
    };
    for p in [part(2, 1_100), part(1, 1_000), part(2, 1_200)] {
        s.enqueue(Write::RecordPart(p)).await.unwrap();
    }
    let other = PartsKey {
        reference: 78,
        ..key.clone()
    };
    s.enqueue(Write::RecordPart(Part {
        key: other.clone(),
        ..part(1, 5_000)
    }))
    .await
    .unwrap();
    // Received again: the first copy stays.
    assert_eq!(
        s.parts(&key).await.unwrap(),
        vec![part(1, 1_000), part(2, 1_100)]
    );
    assert_eq!(s.stale_parts(1_001).await.unwrap(), vec![key.clone()]);
    assert!(s.stale_parts(1_000).await.unwrap().is_empty());
    s.enqueue(Write::RecordMessage {
        message: message(1, Some(1), MessageStatus::Relayed, 1_300),
        relay_due: Some(2_000),
        assembled_from: Some(key.clone()),
        events: vec![],
    })
    .await
    .unwrap();
    assert!(s.parts(&key).await.unwrap().is_empty());
    assert_eq!(s.parts(&other).await.unwrap().len(), 1);
    // The same parts made into a text again (another node, or a part the
    // SMSC sent twice at once) are refused, and no second text is kept.
    let again = s.enqueue(Write::RecordMessage {
        message: message(2, Some(1), MessageStatus::Relayed, 1_300),
        relay_due: Some(2_000),
        assembled_from: Some(key.clone()),
        events: vec![],
    });
    assert!(matches!(again.await, Err(Error::Conflict(_))));
    assert!(
        s.message(TenantId(1), MessageId(2))
            .await
            .unwrap()
            .is_none()
    );
    // Both in one batch: the first makes the text, the second is refused.
    let first = s.enqueue(Write::RecordMessage {
        message: message(3, Some(1), MessageStatus::Relayed, 1_400),
        relay_due: Some(2_000),
        assembled_from: Some(other.clone()),
        events: vec![],
    });
    let second = s.enqueue(Write::RecordMessage {
        message: message(4, Some(1), MessageStatus::Relayed, 1_400),
        relay_due: Some(2_000),
        assembled_from: Some(other.clone()),
        events: vec![],
    });
    let (first, second) = tokio::join!(first, second);
    first.unwrap();
    assert!(matches!(second, Err(Error::Conflict(_))));
    assert!(
        s.message(TenantId(1), MessageId(3))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.message(TenantId(1), MessageId(4))
            .await
            .unwrap()
            .is_none()
    );
    // A text made of parts some other way is not refused.
    s.enqueue(record(
        message(5, Some(1), MessageStatus::Relayed, 1_500),
        Some(2_000),
        vec![],
    ))
    .await
    .unwrap();
}

async fn receipts_without_a_handover_wait_to_be_matched(s: Arc<dyn Store>) {
    setup(&*s).await;
    assert!(s.unmatched_receipts(10).await.unwrap().is_empty());
    let receipt = |id: &str, delivered, at| Receipt {
        link: "smsc-1".to_owned(),
        smsc_id: id.to_owned(),
        delivered,
        received_at: at,
    };
    for r in [
        receipt("late", true, 2_000),
        receipt("early", false, 1_000),
        // The same receipt again: the latest word counts.
        receipt("late", false, 2_100),
    ] {
        s.enqueue(Write::UnmatchedReceipt(r)).await.unwrap();
    }
    assert_eq!(
        s.unmatched_receipts(10).await.unwrap(),
        vec![
            receipt("early", false, 1_000),
            receipt("late", false, 2_100)
        ]
    );
    assert_eq!(s.unmatched_receipts(1).await.unwrap().len(), 1);
    s.enqueue(Write::ForgetReceipts(vec![
        ("smsc-1".to_owned(), "early".to_owned()),
        ("smsc-2".to_owned(), "late".to_owned()),
    ]))
    .await
    .unwrap();
    assert_eq!(
        s.unmatched_receipts(10).await.unwrap(),
        vec![receipt("late", false, 2_100)]
    );
}

async fn a_part_taken_without_a_carrier_id_waits_for_no_receipt(s: Arc<dyn Store>) {
    setup(&*s).await;
    let mut two_parts = message(1, Some(1), MessageStatus::Relayed, 1_000);
    two_parts.parts = 2;
    s.enqueue(record(two_parts, Some(2_000), vec![]))
        .await
        .unwrap();
    // The SMSC gave an id for one part only: only that one is tracked.
    s.enqueue(submitted(1, 2, &[(1, "a1")])).await.unwrap();
    let delivered = event(10, 1, EventType::SmsDelivered, 1, true);
    s.enqueue(text_outcome(1, Some(("smsc-1", "a1")), true, delivered))
        .await
        .unwrap();
    let m = s.message(TenantId(1), MessageId(1)).await.unwrap().unwrap();
    assert_eq!(m.status, MessageStatus::Delivered);
}

async fn sms_settings_round_trip(s: Arc<dyn Store>) {
    setup(&*s).await;
    assert!(s.sms_settings().await.unwrap().is_empty());
    let rules = vec![
        Rule::new("好邻居(超市)?", RuleAction::Allow).unwrap(),
        Rule::new("贷款|借钱", RuleAction::Block).unwrap(),
    ];
    let put = |prefix: Option<&str>, mode, rules: Vec<Rule>, at| Write::PutSmsSettings {
        tenant: TenantId(1),
        settings: Settings {
            prefix: prefix.map(str::to_owned),
            filter: Filter { mode, rules },
        },
        updated_at: at,
    };
    s.enqueue(put(Some("【平台】"), FilterMode::Standard, rules, 1_000))
        .await
        .unwrap();
    let got = s.sms_settings().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tenant, TenantId(1));
    assert_eq!(got[0].settings.prefix.as_deref(), Some("【平台】"));
    assert_eq!(got[0].settings.filter.mode, FilterMode::Standard);
    let patterns: Vec<(&str, RuleAction)> = got[0]
        .settings
        .filter
        .rules
        .iter()
        .map(|r| (r.pattern(), r.action))
        .collect();
    assert_eq!(
        patterns,
        vec![
            ("好邻居(超市)?", RuleAction::Allow),
            ("贷款|借钱", RuleAction::Block)
        ]
    );
    s.enqueue(put(None, FilterMode::Off, vec![], 2_000))
        .await
        .unwrap();
    let got = s.sms_settings().await.unwrap();
    assert_eq!(got[0].settings.prefix, None);
    assert_eq!(got[0].settings.filter.mode, FilterMode::Off);
    assert!(got[0].settings.filter.rules.is_empty());
    assert_eq!(got[0].updated_at, 2_000);
}

fn put_prompt(t: u128, name: &str, samples: Vec<i16>, at: i64) -> Write {
    Write::PutPrompt {
        tenant: TenantId(t),
        name: name.into(),
        samples,
        updated_at: at,
    }
}

/// Every tenant's prompts, in (tenant, name) order.
async fn all_prompts(s: &dyn Store) -> Vec<(u128, String, Vec<i16>, i64)> {
    let mut got: Vec<_> = s
        .prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.tenant.0, p.name, p.samples, p.updated_at))
        .collect();
    got.sort();
    got
}

async fn prompts_are_kept_per_tenant_and_name(s: Arc<dyn Store>) {
    setup(&*s).await;
    assert!(s.prompts().await.unwrap().is_empty());
    // Every sample value survives, extremes and sign included.
    let edges = vec![0, 1, -1, 0x1234, i16::MIN, i16::MAX];
    let long: Vec<i16> = (0..16_000)
        .map(|i| (i * 7 % 65_536 - 32_768) as i16)
        .collect();
    s.enqueue(put_prompt(1, "expired", edges.clone(), 1_000))
        .await
        .unwrap();
    s.enqueue(put_prompt(1, "no_binding", long.clone(), 1_001))
        .await
        .unwrap();
    s.enqueue(put_prompt(2, "expired", vec![5; 3], 1_002))
        .await
        .unwrap();
    assert_eq!(
        all_prompts(&*s).await,
        vec![
            (1, "expired".into(), edges, 1_000),
            (1, "no_binding".into(), long.clone(), 1_001),
            (2, "expired".into(), vec![5; 3], 1_002),
        ]
    );
    // Put again: replaced, not added.
    s.enqueue(put_prompt(1, "expired", vec![-7; 2], 2_000))
        .await
        .unwrap();
    assert_eq!(
        all_prompts(&*s).await[0],
        (1, "expired".into(), vec![-7; 2], 2_000)
    );
    // Deleting one tenant's leaves the other's of the same name; deleting
    // what is not there changes nothing.
    let delete = |t: u128, name: &str| Write::DeletePrompt {
        tenant: TenantId(t),
        name: name.into(),
    };
    s.enqueue(delete(1, "expired")).await.unwrap();
    s.enqueue(delete(1, "expired")).await.unwrap();
    s.enqueue(delete(1, "forbidden")).await.unwrap();
    assert_eq!(
        all_prompts(&*s).await,
        vec![
            (1, "no_binding".into(), long, 1_001),
            (2, "expired".into(), vec![5; 3], 1_002),
        ]
    );
    // A tenant the store does not know has no prompts.
    let refused = s.enqueue(put_prompt(99, "expired", vec![1], 3_000)).await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    assert_eq!(all_prompts(&*s).await.len(), 2);
}

async fn texts_follow_their_binding_and_are_purged_after_it(s: Arc<dyn Store>) {
    setup(&*s).await;
    let mut b = binding(1, 1, 1, 2, 5_000);
    s.enqueue(Write::CreateBinding {
        binding: b.clone(),
        idempotency: None,
        events: vec![],
    })
    .await
    .unwrap();
    s.enqueue(record(
        message(1, Some(1), MessageStatus::Relayed, 1_000),
        Some(2_000),
        vec![],
    ))
    .await
    .unwrap();
    let mut unbound = message(2, None, MessageStatus::Blocked, 1_000);
    unbound.ends_at = 1;
    s.enqueue(record(unbound, None, vec![])).await.unwrap();
    s.enqueue(submitted(1, 1, &[(1, "abc")])).await.unwrap();
    // Extended: its texts stay as long as it does.
    b.expires_at = 9_000;
    b.updated_at = 2_000;
    s.enqueue(Write::UpdateBinding {
        binding: b.clone(),
        events: vec![],
    })
    .await
    .unwrap();
    let m = s.message(TenantId(1), MessageId(1)).await.unwrap().unwrap();
    assert_eq!(m.ends_at, 9_000);
    s.enqueue(Write::RecordPart(Part {
        key: PartsKey {
            x: num(1),
            from: Sender::Number(party(9)),
            reference: 1,
        },
        seq: 1,
        total: 2,
        coding: 0,
        bytes: b"half".to_vec(),
        received_at: 3_000,
        ingress: "http:gw".to_owned(),
    }))
    .await
    .unwrap();
    s.enqueue(Write::PurgeMessages {
        ends_before: 8_999,
        parts_before: 2_999,
    })
    .await
    .unwrap();
    assert!(
        s.message(TenantId(1), MessageId(1))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(s.stale_parts(10_000).await.unwrap().len(), 1);
    s.enqueue(Write::PurgeMessages {
        ends_before: 9_001,
        parts_before: 3_001,
    })
    .await
    .unwrap();
    assert!(
        s.message(TenantId(1), MessageId(1))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.message_by_submit("smsc-1", "abc")
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.stale_parts(10_000).await.unwrap().is_empty());
}

async fn the_latest_connected_call_names_the_binding(s: Arc<dyn Store>) {
    setup(&*s).await;
    let mut calls = Vec::new();
    for (id, binding_id, invited_at, connected) in [
        (1, 10, 1_000, true),
        (2, 11, 2_000, true),
        (3, 12, 3_000, false),
    ] {
        let mut c = call(id, 1, invited_at);
        c.caller = Some(party(9));
        c.binding = Some(BindingId(binding_id));
        if !connected {
            // Refused: never reached anyone.
            c.direction = None;
            c.refusal = Some(Refusal::NoBinding);
        }
        calls.push(c);
    }
    for c in calls {
        s.enqueue(Write::RecordCall {
            record: c,
            events: vec![],
        })
        .await
        .unwrap();
    }
    assert_eq!(
        s.last_call_binding(num(1), party(9), 0).await.unwrap(),
        Some(BindingId(11))
    );
    assert_eq!(
        s.last_call_binding(num(1), party(9), 2_001).await.unwrap(),
        None
    );
    assert_eq!(
        s.last_call_binding(num(1), party(8), 0).await.unwrap(),
        None
    );
    assert_eq!(
        s.last_call_binding(num(2), party(9), 0).await.unwrap(),
        None
    );
}

/// Writes queued at once are group-committed (a run of them goes in as a
/// few statements): each text keeps its own parts and carrier ids.
async fn texts_handed_over_together_are_each_recorded(s: Arc<dyn Store>) {
    setup(&*s).await;
    for id in 1..=70 {
        s.enqueue(record(
            message(id, Some(1), MessageStatus::Relayed, 1_000),
            Some(2_000),
            vec![],
        ))
        .await
        .unwrap();
    }
    let acks: Vec<_> = (1..=70u128)
        .map(|id| {
            let parts = 1 + (id % 3) as u8;
            s.enqueue(Write::MessageSubmitted {
                message: MessageId(id),
                parts,
                submits: (1..=parts)
                    .map(|p| Submit {
                        link: "smsc-1".to_owned(),
                        smsc_id: format!("{id}-{p}"),
                        part: p,
                    })
                    .collect(),
                at: 1_500,
            })
        })
        .collect();
    for ack in acks {
        ack.await.unwrap();
    }
    for id in 1..=70u128 {
        let m = s
            .message(TenantId(1), MessageId(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.parts, 1 + (id % 3) as u8, "message {id}");
        let last = format!("{id}-{}", m.parts);
        assert_eq!(
            s.message_by_submit("smsc-1", &last)
                .await
                .unwrap()
                .map(|m| m.id),
            Some(MessageId(id))
        );
    }
    assert!(
        s.claim_due_relays(10_000, 20_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn console_users_are_kept_by_email_and_tenant(s: Arc<dyn Store>) {
    setup(&*s).await;
    let user = |id: u128, email: &str, role: Role, tenant: Option<u128>| User {
        id: UserId(id),
        email: email.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${id}"),
        role,
        tenant: tenant.map(TenantId),
        created_at: 1_000 + id as i64,
        failed_signins: 0,
        locked_until: None,
    };
    let admin = user(1, "root@example.com", Role::Admin, None);
    let owner = user(2, "owner@one.example", Role::Owner, Some(1));
    let viewer = user(3, "viewer@two.example", Role::Viewer, Some(2));
    for u in [&admin, &owner, &viewer] {
        s.enqueue(Write::CreateUser(u.clone())).await.unwrap();
    }
    // One account per email, across tenants.
    let taken = s
        .enqueue(Write::CreateUser(user(
            4,
            "owner@one.example",
            Role::Viewer,
            Some(2),
        )))
        .await;
    assert!(matches!(taken, Err(Error::Conflict(_))), "{taken:?}");
    // An admin has no tenant, and everyone else has one.
    for wrong in [
        user(5, "a@x.example", Role::Admin, Some(1)),
        user(6, "b@x.example", Role::Operator, None),
    ] {
        assert!(s.enqueue(Write::CreateUser(wrong)).await.is_err());
    }
    assert_eq!(
        s.user_by_email("owner@one.example").await.unwrap(),
        Some(owner.clone())
    );
    assert_eq!(s.user_by_email("nobody@one.example").await.unwrap(), None);
    assert_eq!(
        s.users(Some(TenantId(1))).await.unwrap(),
        vec![owner.clone()]
    );
    assert_eq!(
        s.users(None).await.unwrap(),
        vec![admin.clone(), owner.clone(), viewer.clone()]
    );
    // Failures count in the row: the third of three locks and restarts.
    let fail = |at: i64| Write::SignInFailed {
        user: owner.id,
        at,
        max: 3,
        lockout_secs: 900,
    };
    let state = async || {
        let u = s.user_by_email("owner@one.example").await.unwrap().unwrap();
        (u.failed_signins, u.locked_until)
    };
    s.enqueue(fail(5_000)).await.unwrap();
    s.enqueue(fail(5_001)).await.unwrap();
    assert_eq!(state().await, (2, None));
    // A success while no lockout runs clears the count.
    s.enqueue(Write::SignInSucceeded {
        user: owner.id,
        at: 5_002,
    })
    .await
    .unwrap();
    assert_eq!(state().await, (0, None));
    // Three at once (one group commit) each count.
    let acks: Vec<_> = (0..3).map(|i| s.enqueue(fail(6_000 + i))).collect();
    for ack in acks {
        ack.await.unwrap();
    }
    assert_eq!(state().await, (0, Some(6_902)));
    // A success made while the lockout runs does not lift it.
    s.enqueue(Write::SignInSucceeded {
        user: owner.id,
        at: 6_100,
    })
    .await
    .unwrap();
    assert_eq!(state().await, (0, Some(6_902)));
    s.enqueue(fail(7_000)).await.unwrap();
    assert_eq!(
        state().await,
        (1, Some(6_902)),
        "a failure never lifts it either"
    );

    // Sessions: found by their token's hash with their user; signing out
    // ends one; opening one clears the user's that have run out.
    let session = |n: u8, created_at: i64| ConsoleSession {
        token_hash: [n; 32],
        user: viewer.id,
        created_at,
        expires_at: created_at + 43_200,
    };
    for sn in [session(1, 1_000), session(2, 1_000)] {
        s.enqueue(Write::OpenSession(sn)).await.unwrap();
    }
    let (found, who) = s.console_session([1; 32]).await.unwrap().unwrap();
    assert_eq!((found, who), (session(1, 1_000), viewer.clone()));
    assert_eq!(s.console_session([9; 32]).await.unwrap(), None);
    s.enqueue(Write::CloseSession {
        token_hash: [1; 32],
    })
    .await
    .unwrap();
    assert_eq!(s.console_session([1; 32]).await.unwrap(), None);
    assert!(s.console_session([2; 32]).await.unwrap().is_some());
    s.enqueue(Write::OpenSession(session(3, 50_000)))
        .await
        .unwrap();
    assert_eq!(s.console_session([2; 32]).await.unwrap(), None, "ran out");
    assert!(s.console_session([3; 32]).await.unwrap().is_some());

    // Removed, an account signs nobody in: its sessions went with it. A
    // tenant removes only its own.
    let remove = |user: &User, tenant: Option<u128>| Write::DeleteUser {
        user: user.id,
        tenant: tenant.map(TenantId),
    };
    assert!(matches!(
        s.enqueue(remove(&viewer, Some(1))).await,
        Err(Error::Conflict(_))
    ));
    assert!(s.console_session([3; 32]).await.unwrap().is_some());
    s.enqueue(remove(&viewer, Some(2))).await.unwrap();
    assert_eq!(s.console_session([3; 32]).await.unwrap(), None);
    assert_eq!(s.user_by_email("viewer@two.example").await.unwrap(), None);
    assert!(matches!(
        s.enqueue(remove(&viewer, Some(2))).await,
        Err(Error::Conflict(_))
    ));
    s.enqueue(remove(&owner, None)).await.unwrap();
    assert_eq!(s.users(None).await.unwrap(), vec![admin.clone()]);
}

async fn keys_are_created_found_by_hash_and_revoked(s: Arc<dyn Store>) {
    setup(s.as_ref()).await;
    // Each tenant's first key is stored with it, under the tenant's id.
    let all = s.api_keys().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], tenant(1).first_key("mlk_"));
    let second = ApiKey {
        id: KeyId(77),
        tenant: TenantId(1),
        prefix: "mlk_second".into(),
        hash: [77; 32],
        created_at: 2_000,
        revoked_at: None,
    };
    s.enqueue(Write::CreateKey(second.clone())).await.unwrap();
    assert_eq!(s.api_key([77; 32]).await.unwrap(), Some(second.clone()));
    assert_eq!(s.api_key([78; 32]).await.unwrap(), None);
    // A hash is one key's only.
    let clash = ApiKey {
        id: KeyId(78),
        ..second.clone()
    };
    assert!(matches!(
        s.enqueue(Write::CreateKey(clash)).await,
        Err(Error::Conflict(_))
    ));
    // Revoking another tenant's key changes nothing.
    s.enqueue(Write::RevokeKey {
        tenant: TenantId(2),
        id: KeyId(77),
        at: 3_000,
    })
    .await
    .unwrap();
    assert_eq!(s.api_key([77; 32]).await.unwrap().unwrap().revoked_at, None);
    s.enqueue(Write::RevokeKey {
        tenant: TenantId(1),
        id: KeyId(77),
        at: 3_000,
    })
    .await
    .unwrap();
    assert_eq!(
        s.api_key([77; 32]).await.unwrap().unwrap().revoked_at,
        Some(3_000)
    );
    let all = s.api_keys().await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.last().unwrap().revoked_at, Some(3_000));
}

async fn the_audit_log_lists_a_tenants_entries_newest_first(s: Arc<dyn Store>) {
    setup(s.as_ref()).await;
    let entry = |tenant: u128, n: i64| AuditEntry {
        tenant: TenantId(tenant),
        key: (n % 2 == 0).then_some(KeyId(tenant)),
        // A console user's entry has no key.
        user: (n % 2 == 1).then_some(UserId(tenant * 100 + n as u128)),
        action: "POST /v1/bindings".into(),
        object: format!("binding-{n}"),
        status: 201,
        at: 1_000 + n,
        source: Some("127.0.0.1".into()),
    };
    for (tenant, n) in [(1, 1), (2, 2), (1, 3), (1, 4)] {
        s.enqueue(Write::Audit(entry(tenant, n))).await.unwrap();
    }
    let first = s
        .audit(
            TenantId(1),
            Page {
                after: None,
                limit: 2,
            },
        )
        .await
        .unwrap();
    let objects: Vec<&str> = first.iter().map(|(_, e)| e.object.as_str()).collect();
    assert_eq!(objects, ["binding-4", "binding-3"]);
    assert_eq!(first[0].1, entry(1, 4));
    let rest = s
        .audit(
            TenantId(1),
            Page {
                after: Some(first[1].0),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1, entry(1, 1));
    assert_eq!(rest[0].1.key, None);
}

/// As the API queues them: each new binding followed by its audit entry,
/// in one burst that group-commits (one binding in the middle a duplicate).
async fn audit_entries_between_bindings_commit_with_them(s: Arc<dyn Store>) {
    setup(s.as_ref()).await;
    let entry = |n: u128| AuditEntry {
        tenant: TenantId(1),
        key: None,
        user: n.is_multiple_of(3).then_some(UserId(n)),
        action: "POST /v1/bindings".into(),
        object: format!("binding-{n}"),
        status: 201,
        at: 1_000 + n as i64,
        source: None,
    };
    let mut acks = Vec::new();
    for i in 0..300u128 {
        let id = if i == 150 { 100 } else { 100 + i };
        acks.push(s.enqueue(Write::CreateBinding {
            binding: binding(id, 1, 1_000 + i as u64, 5_000 + i as u64, 9_000),
            idempotency: None,
            events: vec![event(id + 10_000, 1, EventType::BindingCreated, id, false)],
        }));
        acks.push(s.enqueue(Write::Audit(entry(i))));
    }
    let mut failed = 0;
    for ack in acks {
        if ack.await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "only the duplicate binding fails");
    let stored = s
        .bindings(TenantId(1), &BindingFilter::default(), page(1_000))
        .await
        .unwrap();
    assert_eq!(stored.len(), 299);
    let mut objects = Vec::new();
    let mut after = None;
    loop {
        let entries = s
            .audit(TenantId(1), Page { after, limit: 100 })
            .await
            .unwrap();
        let Some(last) = entries.last() else { break };
        after = Some(last.0);
        objects.extend(entries.into_iter().map(|(_, e)| e.object));
    }
    objects.reverse();
    let expected: Vec<String> = (0..300).map(|n| format!("binding-{n}")).collect();
    assert_eq!(objects, expected, "every entry, in queue order");
}

async fn retention_purges_what_ended_before_the_cutoff_a_batch_at_a_time(s: Arc<dyn Store>) {
    setup(s.as_ref()).await;
    // Bindings ending at 1_500 and 2_500 s; the cut-off is 2_000 s.
    for (id, a, expires_at) in [(1, 1, 1_500), (2, 3, 2_500)] {
        s.enqueue(Write::CreateBinding {
            binding: binding(id, 1, a, a + 1, expires_at),
            idempotency: None,
            // Not for delivery: none is pending.
            events: vec![event(id, 1, EventType::BindingCreated, id, false)],
        })
        .await
        .unwrap();
    }
    // Calls ending before and after it (ms), audit entries too.
    for (id, invited_at) in [(1, 1_000_000), (2, 1_100_000), (3, 2_100_000)] {
        s.enqueue(Write::RecordCall {
            record: call(id, 1, invited_at),
            events: Vec::new(),
        })
        .await
        .unwrap();
    }
    for at in [1_000_000, 3_000_000] {
        s.enqueue(Write::Audit(AuditEntry {
            tenant: TenantId(1),
            key: None,
            user: None,
            action: "POST /v1/bindings".into(),
            object: "x".into(),
            status: 201,
            at,
            source: None,
        }))
        .await
        .unwrap();
    }
    let calls = |s: Arc<dyn Store>| async move {
        s.calls(TenantId(1), &CallFilter::default(), page(100))
            .await
            .unwrap()
            .iter()
            .map(|c| c.id.0)
            .collect::<Vec<_>>()
    };
    // One of each kind a step.
    s.enqueue(Write::PurgeExpired {
        before: 2_000,
        batch: 1,
    })
    .await
    .unwrap();
    assert_eq!(calls(s.clone()).await.len(), 2, "a batch of one");
    s.enqueue(Write::PurgeExpired {
        before: 2_000,
        batch: 1,
    })
    .await
    .unwrap();
    assert_eq!(calls(s.clone()).await, [3]);
    assert!(
        s.binding(TenantId(1), BindingId(1))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.binding(TenantId(1), BindingId(2))
            .await
            .unwrap()
            .is_some()
    );
    let audit = s
        .audit(
            TenantId(1),
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].1.at, 3_000_000);
    // Events of 1_000_001 and 1_000_002 ms are past the cut-off (2_000 s).
    let events = s
        .events(
            TenantId(1),
            &[],
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
}

/// Every case, for one back end.
macro_rules! every_case {
    ($backend:ident, $open:expr) => {
        conformance!(
            $backend,
            $open,
            [
                tenants_and_meta_round_trip,
                number_import_is_all_or_nothing,
                bindings_round_trip_and_stay_in_their_tenant,
                binding_filters_and_pages,
                expiry_is_recorded_once,
                scan_streams_bindings_ending_after_the_horizon,
                idempotency_record_is_atomic_with_its_binding,
                concurrent_writes_group_commit_and_fail_alone,
                a_held_text_is_released_once_and_becomes_due,
                a_tenants_rate_limit_is_set_replaced_and_cleared,
                writes_apply_in_queue_order,
                calls_round_trip_every_field,
                calls_stay_in_their_tenant,
                call_filters_and_pages,
                activity_counts_a_tenants_calls_and_texts_per_minute,
                calls_group_commit_and_fail_alone,
                events_are_recorded_with_their_change,
                event_lists_filter_by_type_and_page_in_order,
                expiry_event_only_for_the_write_that_ends_it,
                due_events_keep_each_subject_in_order,
                redelivery_requeues_with_a_fresh_window,
                claimed_events_wait_for_their_lease,
                bindings_changed_since_and_on_a_number,
                webhooks_round_trip,
                bindings_by_id_reads_any_tenant,
                messages_round_trip_and_list_by_tenant_binding_status,
                relays_are_due_until_submitted_and_claims_lease_them,
                a_text_is_delivered_once_every_part_is,
                parts_are_kept_until_assembled,
                receipts_without_a_handover_wait_to_be_matched,
                a_part_taken_without_a_carrier_id_waits_for_no_receipt,
                sms_settings_round_trip,
                prompts_are_kept_per_tenant_and_name,
                texts_follow_their_binding_and_are_purged_after_it,
                the_latest_connected_call_names_the_binding,
                texts_handed_over_together_are_each_recorded,
                keys_are_created_found_by_hash_and_revoked,
                console_users_are_kept_by_email_and_tenant,
                the_audit_log_lists_a_tenants_entries_newest_first,
                audit_entries_between_bindings_commit_with_them,
                retention_purges_what_ended_before_the_cutoff_a_batch_at_a_time,
                erasure_removes_a_partys_ended_records_and_masks_its_cdrs,
                the_open_call_journal_holds_a_call_until_its_cdr,
                call_rules_and_caps_round_trip_and_nodes_report_their_calls,
            ]
        );
    };
}

every_case!(sqlite, open_sqlite());
every_case!(postgres, open_postgres());

/// A store in a fresh schema, with the cool-down the cases assume (100 s).
async fn open_postgres() -> (pg::Schema, Arc<dyn Store>) {
    let schema = pg::Schema::create().await;
    let store = schema.open(100).await;
    (schema, store)
}

/// The embedded store keeps what it acknowledged across a reopen.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open(dir.path()).await.unwrap();
        setup(&s).await;
        s.enqueue(Write::CreateBinding {
            binding: binding(1, 1, 1, 2, 5_000),
            idempotency: None,
            events: Vec::new(),
        })
        .await
        .unwrap();
    }
    let s = SqliteStore::open(dir.path()).await.unwrap();
    assert!(
        s.binding(TenantId(1), BindingId(1))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(s.tenants().await.unwrap().len(), 2);
}

/// A CDR whose stored names this build does not know is refused as corrupt,
/// not read as some default. (Back-end specific: only raw SQL can store one.)
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_refuses_unknown_call_names() {
    use sqlx::Connection;

    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).await.unwrap();
    let mut raw = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join("maskline.db").display()
    ))
    .await
    .unwrap();
    for (i, (column, bad, reported)) in [
        ("direction", "'sideways'", "direction"),
        ("released_by", "'nobody'", "released_by"),
        ("release_reason", "'boredom'", "release_reason"),
        ("refusal", "'because'", "refusal"),
        ("final_status", "70000", "final_status"),
        // A clear number from before sealing that is not E.164.
        ("caller_sealed = NULL, caller", "'13800000000'", "caller"),
        // A sealed value that does not open.
        ("caller_sealed", "'ml1:1:AAAA'", "calls.caller"),
        // A blind token whose sealed value is gone.
        ("caller_sealed = NULL, caller", "'~abc'", "caller_sealed"),
        ("binding_id", "x'0102'", "id"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = 1 + i as u128;
        s.enqueue(Write::RecordCall {
            record: call(id, 1, 1_000),
            events: Vec::new(),
        })
        .await
        .unwrap();
        let sql = format!("UPDATE calls SET {column} = {bad}");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut raw)
            .await
            .unwrap();
        let got = s.calls(TenantId(1), &CallFilter::default(), page(10)).await;
        assert!(
            matches!(got, Err(Error::Corrupt(c)) if c == reported),
            "{column}: {got:?}"
        );
        sqlx::query("DELETE FROM calls")
            .execute(&mut raw)
            .await
            .unwrap();
    }
}

// === sealing (encryption at rest) ===

/// A binding, a CDR and an event carrying the parties' numbers.
async fn write_parties(s: &dyn Store) {
    setup(s).await;
    s.enqueue(Write::CreateBinding {
        binding: binding(10, 1, 1, 2, 5_000),
        idempotency: None,
        events: vec![NewEvent {
            body: format!(r#"{{"a":"{}"}}"#, party(1)),
            ..event(1, 1, EventType::BindingCreated, 10, true)
        }],
    })
    .await
    .unwrap();
    s.enqueue(Write::RecordCall {
        record: call(1, 1, 1_000),
        events: Vec::new(),
    })
    .await
    .unwrap();
}

/// What an older build wrote in clear, rewritten so by raw SQL (and the
/// database as one that never had its clear rows sealed).
const UNSEAL: [&str; 4] = [
    "DELETE FROM meta WHERE key = 'seal.clear_done'",
    "UPDATE bindings SET a = '+8613800000001', a_sealed = NULL, \
     b = '+8613800000002', b_sealed = NULL",
    "UPDATE calls SET caller = '+8613800000001', caller_sealed = NULL, \
     callee = '+8613800000002', callee_sealed = NULL",
    "UPDATE events SET body = '{\"a\":\"+8613800000001\"}'",
];

/// What must hold of a store whose rows were sealed: everything reads back
/// and a party is found by number.
async fn reads_sealed_parties(s: &dyn Store) {
    let b = s
        .binding(TenantId(1), BindingId(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.a, b.b), (party(1), Some(party(2))));
    let by_party = s
        .bindings(
            TenantId(1),
            &BindingFilter {
                party: Some(party(2)),
                ..BindingFilter::default()
            },
            page(10),
        )
        .await
        .unwrap();
    assert_eq!(by_party.len(), 1);
    let calls = s
        .calls(TenantId(1), &CallFilter::default(), page(10))
        .await
        .unwrap();
    assert_eq!(calls[0].caller, Some(party(1)));
    assert_eq!(
        s.last_call_binding(num(1), party(1), 0).await.unwrap(),
        Some(BindingId(10))
    );
    let e = s.event(TenantId(1), EventId(1)).await.unwrap().unwrap();
    assert_eq!(e.body, format!(r#"{{"a":"{}"}}"#, party(1)));
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_seals_parties_and_rows_an_older_build_wrote_in_clear() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("maskline.db");
    let text_of = |sql: &'static str| {
        let file = file.clone();
        async move {
            let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                .await
                .unwrap();
            let v: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut raw).await.unwrap();
            v.join("\n")
        }
    };
    {
        let s = SqliteStore::open(dir.path()).await.unwrap();
        write_parties(&s).await;
        reads_sealed_parties(&s).await;
        let stored = text_of(
            "SELECT a || b || a_sealed || b_sealed FROM bindings \
             UNION ALL SELECT caller || callee || caller_sealed || callee_sealed FROM calls \
             UNION ALL SELECT body FROM events",
        )
        .await;
        assert!(!stored.contains("13800000001"), "{stored}");
        assert!(!stored.contains("13800000002"), "{stored}");
        let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        for sql in UNSEAL {
            sqlx::query(sql).execute(&mut raw).await.unwrap();
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the database is owner-only");
    // Reopened, the clear rows are sealed before anything reads them.
    let s = SqliteStore::open(dir.path()).await.unwrap();
    let stored = text_of(
        "SELECT a || b || a_sealed || b_sealed FROM bindings \
         UNION ALL SELECT caller || callee || caller_sealed FROM calls \
         UNION ALL SELECT body FROM events",
    )
    .await;
    assert!(!stored.contains("13800000001"), "{stored}");
    reads_sealed_parties(&s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_seals_parties_and_rows_an_older_build_wrote_in_clear() {
    let schema = pg::Schema::create().await;
    let stored = async || {
        let mut raw = schema.connect().await;
        let v: Vec<String> = sqlx::query_scalar(
            "SELECT a || b || a_sealed || b_sealed FROM bindings \
             UNION ALL SELECT caller || callee || caller_sealed FROM calls \
             UNION ALL SELECT body FROM events UNION ALL SELECT key FROM slots",
        )
        .fetch_all(&mut raw)
        .await
        .unwrap();
        v.join("\n")
    };
    {
        let s = schema.open(100).await;
        write_parties(&*s).await;
        reads_sealed_parties(&*s).await;
        let text = stored().await;
        assert!(!text.contains("13800000001"), "{text}");
        let mut raw = schema.connect().await;
        for sql in UNSEAL {
            sqlx::query(sql).execute(&mut raw).await.unwrap();
        }
        // (Triggers moved the slots to the clear numbers, as an older
        // build had them.)
        let slots: Vec<String> = sqlx::query_scalar("SELECT key FROM slots ORDER BY key")
            .fetch_all(&mut raw)
            .await
            .unwrap();
        assert_eq!(slots, ["+8613800000001", "+8613800000002"]);
    }
    let s = schema.open(100).await;
    let text = stored().await;
    assert!(!text.contains("13800000001"), "{text}");
    assert!(!text.contains("13800000002"), "{text}");
    reads_sealed_parties(&*s).await;
    // Another master key opens nothing: the node refuses to start.
    let mut options = schema.options(100);
    options.master = maskline_store::seal::MasterKey::ephemeral();
    let err = maskline_store::PgStore::open(options).await.err().unwrap();
    assert!(err.to_string().contains("another master key"), "{err}");
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Key rotation under writes: a store keeps writing while a rotation
/// lands; the node learns the key, reseals every row under it in the
/// background, and every record, old and new, reads back whole.
async fn rotation_under_writes(
    s: Arc<dyn Store>,
    rotate: impl std::future::Future<Output = (u32, i64)>,
    stale_under_old: impl AsyncFn() -> i64,
) {
    setup(&*s).await;
    // Bindings 100.. on one X each would clash: parties differ per binding.
    let bind = |i: u64| {
        let mut b = binding(100 + i as u128, 1, 1000 + i, 5000 + i, 9_999_999_999);
        b.x = num(1 + i % 2);
        b.external_ref = Some(format!("r{i}"));
        Write::CreateBinding {
            binding: b,
            idempotency: None,
            events: vec![NewEvent {
                body: format!(r#"{{"n":"{}"}}"#, party(1000 + i)),
                ..event(
                    100 + i as u128,
                    1,
                    EventType::BindingCreated,
                    100 + i as u128,
                    false,
                )
            }],
        }
    };
    for i in 0..300 {
        s.enqueue(bind(i)).await.unwrap();
    }
    let (id, _) = rotate.await;
    assert_eq!(id, 2);
    // Writes go on while the node switches and reseals.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 300..600 {
                s.enqueue(bind(i)).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let left = stale_under_old().await;
        if left == 0 && writer.is_finished() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} rows not resealed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    writer.await.unwrap();
    assert_eq!(s.keys().key_ids(), [1, 2]);
    for i in 0..600u64 {
        let b = s
            .binding(TenantId(1), BindingId(100 + i as u128))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((b.a, b.b), (party(1000 + i), Some(party(5000 + i))));
        let e = s
            .event(TenantId(1), EventId(100 + i as u128))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.body, format!(r#"{{"n":"{}"}}"#, party(1000 + i)));
    }
    let found = s
        .bindings(
            TenantId(1),
            &BindingFilter {
                party: Some(party(1005)),
                ..BindingFilter::default()
            },
            page(10),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_key_rotation_under_writes_reseals_and_reads_everything() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let master = maskline_store::seal::MasterKey::load(&dir.path().join("master.key")).unwrap();
    let path = dir.path().to_owned();
    let file = dir.path().join("maskline.db");
    rotation_under_writes(
        s,
        async move {
            // As if rotated ten seconds ago: the new key seals at once.
            let now = unix_now() - maskline_store::seal::ROTATION_DELAY_SECS;
            SqliteStore::rotate_keys(&path, &master, now).await.unwrap()
        },
        async || {
            let mut raw =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", file.display()))
                    .await
                    .unwrap();
            sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM bindings WHERE a_sealed NOT LIKE 'ml1:2:%' \
                 OR a NOT LIKE '~2:%' OR b NOT LIKE '~2:%') + \
                 (SELECT count(*) FROM events WHERE body NOT LIKE 'ml1:2:%')",
            )
            .fetch_one(&mut raw)
            .await
            .unwrap()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_key_rotation_under_writes_reseals_and_reads_everything() {
    let schema = pg::Schema::create().await;
    let s = schema.open(100).await;
    let options = schema.options(100);
    rotation_under_writes(
        s,
        async move {
            let now = unix_now() - maskline_store::seal::ROTATION_DELAY_SECS;
            maskline_store::PgStore::rotate_keys(&options, now)
                .await
                .unwrap()
        },
        async || {
            let mut raw = schema.connect().await;
            sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM bindings WHERE a_sealed NOT LIKE 'ml1:2:%' \
                 OR a NOT LIKE '~2:%' OR b NOT LIKE '~2:%') + \
                 (SELECT count(*) FROM events WHERE body NOT LIKE 'ml1:2:%')",
            )
            .fetch_one(&mut raw)
            .await
            .unwrap()
        },
    )
    .await;
}

/// A rotation turns the blind key with the data key: a party's rows are
/// found under their previous tokens until the reseal reaches them and
/// under the new ones after; and on PostgreSQL (`slots` is the last word on
/// allocation there) an ended binding whose token changes after a newer
/// binding of its party took the new token leaves the slot to the newer.
async fn blind_key_rotation(
    s: Arc<dyn Store>,
    rotate: impl std::future::Future<Output = (u32, i64)>,
    meta: impl AsyncFn() -> Vec<(String, String)>,
    not_under_new_blind_key: impl AsyncFn() -> i64,
    slots: bool,
) {
    setup(&*s).await;
    let mut ended = binding(200, 1, 2000, 2001, 5_000);
    ended.external_ref = None;
    let mut first = call(201, 1, 1_000_000);
    (first.binding, first.caller, first.callee) =
        (Some(BindingId(200)), Some(party(2000)), Some(party(2001)));
    s.enqueue(Write::CreateBinding {
        binding: ended,
        idempotency: None,
        events: Vec::new(),
    })
    .await
    .unwrap();
    s.enqueue(Write::RecordCall {
        record: first,
        events: Vec::new(),
    })
    .await
    .unwrap();
    // The first part of a text, received before the rotation and again
    // after it: stored under each token.
    let parts_key = PartsKey {
        x: num(1),
        from: Sender::Number(party(2000)),
        reference: 9,
    };
    let part = |seq: u8| Part {
        key: parts_key.clone(),
        seq,
        total: 2,
        coding: 8,
        bytes: vec![0, seq],
        received_at: 1_000,
        ingress: "smpp:smsc-1".to_owned(),
    };
    s.enqueue(Write::RecordPart(part(1))).await.unwrap();

    let (id, _) = rotate.await;
    assert_eq!(id, 2);
    // This node learns the keys at once (the background task would within
    // 2 s, and reseal in the same breath): what it writes from now on is
    // under the new blind key while the rows above still hold the old one.
    s.keys().refresh(&meta().await).unwrap();
    assert_eq!(s.keys().current_key(), 2);
    let mut newer = binding(202, 1, 2000, 2002, 9_999_999_999);
    (newer.created_at, newer.updated_at) = (10_000, 10_000);
    let mut second = call(203, 1, 2_000_000);
    (second.binding, second.caller, second.callee) =
        (Some(BindingId(202)), Some(party(2000)), Some(party(2002)));
    s.enqueue(Write::CreateBinding {
        binding: newer,
        idempotency: None,
        events: Vec::new(),
    })
    .await
    .unwrap();
    s.enqueue(Write::RecordCall {
        record: second,
        events: Vec::new(),
    })
    .await
    .unwrap();
    s.enqueue(Write::RecordPart(part(1))).await.unwrap();
    s.enqueue(Write::RecordPart(part(2))).await.unwrap();

    let found = async || {
        let calls = s
            .calls(
                TenantId(1),
                &CallFilter {
                    party: Some(party(2000)),
                    ..CallFilter::default()
                },
                page(10),
            )
            .await
            .unwrap();
        let bindings = s
            .bindings(
                TenantId(1),
                &BindingFilter {
                    party: Some(party(2000)),
                    ..BindingFilter::default()
                },
                page(10),
            )
            .await
            .unwrap();
        (
            calls.iter().map(|c| c.id.0).collect::<Vec<_>>(),
            bindings.iter().map(|b| b.id.0).collect::<Vec<_>>(),
            s.last_call_binding(num(1), party(2000), 0).await.unwrap(),
        )
    };
    let both = (vec![201, 203], vec![200, 202], Some(BindingId(202)));
    assert_eq!(found().await, both, "right after the rotation");
    let seqs = async || {
        let parts = s.parts(&parts_key).await.unwrap();
        parts.iter().map(|p| p.seq).collect::<Vec<_>>()
    };
    assert_eq!(seqs().await, [1, 2], "one of each part");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let left = not_under_new_blind_key().await;
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} rows still hold tokens of the old blind key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(found().await, both, "after the reseal");
    // The copy under the old token went; the twin stays.
    assert_eq!(seqs().await, [1, 2]);

    if slots {
        // The newer binding still holds party 2000 on X: an overlapping one
        // is refused by the database, not only by the nodes' memories.
        let mut clash = binding(204, 1, 2000, 2003, 9_999_999_999);
        (clash.created_at, clash.updated_at) = (10_500, 10_500);
        let refused = s
            .enqueue(Write::CreateBinding {
                binding: clash,
                idempotency: None,
                events: Vec::new(),
            })
            .await;
        assert!(
            matches!(refused, Err(maskline_store::Error::Taken(_))),
            "{refused:?}"
        );
    }
    // Erasure finds the party under its new token.
    s.enqueue(Write::EraseParty {
        tenant: TenantId(1),
        party: party(2001),
        ended_before: 6_000,
    })
    .await
    .unwrap();
    assert_eq!(s.binding(TenantId(1), BindingId(200)).await.unwrap(), None);
    assert!(
        s.binding(TenantId(1), BindingId(202))
            .await
            .unwrap()
            .is_some()
    );
}

const NOT_UNDER_BLIND_KEY_2: &str = "SELECT \
    (SELECT count(*) FROM bindings WHERE a NOT LIKE '~2:%' OR b NOT LIKE '~2:%') + \
    (SELECT count(*) FROM calls WHERE caller NOT LIKE '~2:%' OR callee NOT LIKE '~2:%') + \
    (SELECT count(*) FROM message_parts WHERE sender NOT LIKE '~2:%')";

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_blind_key_rotation_finds_rows_under_either_key() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let master = maskline_store::seal::MasterKey::load(&dir.path().join("master.key")).unwrap();
    let path = dir.path().to_owned();
    let file = dir.path().join("maskline.db");
    let raw = async || {
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", file.display()))
            .await
            .unwrap()
    };
    blind_key_rotation(
        s,
        async move {
            let now = unix_now() - maskline_store::seal::ROTATION_DELAY_SECS;
            SqliteStore::rotate_keys(&path, &master, now).await.unwrap()
        },
        async || {
            sqlx::query_as("SELECT key, value FROM meta WHERE key LIKE 'seal.%'")
                .fetch_all(&mut raw().await)
                .await
                .unwrap()
        },
        async || {
            sqlx::query_scalar(NOT_UNDER_BLIND_KEY_2)
                .fetch_one(&mut raw().await)
                .await
                .unwrap()
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_blind_key_rotation_finds_rows_under_either_key_and_keeps_slots() {
    let schema = pg::Schema::create().await;
    let s = schema.open(100).await;
    let options = schema.options(100);
    blind_key_rotation(
        s,
        async move {
            let now = unix_now() - maskline_store::seal::ROTATION_DELAY_SECS;
            maskline_store::PgStore::rotate_keys(&options, now)
                .await
                .unwrap()
        },
        async || {
            sqlx::query_as("SELECT key, value FROM meta WHERE key LIKE 'seal.%'")
                .fetch_all(&mut schema.connect().await)
                .await
                .unwrap()
        },
        async || {
            sqlx::query_scalar(NOT_UNDER_BLIND_KEY_2)
                .fetch_one(&mut schema.connect().await)
                .await
                .unwrap()
        },
        true,
    )
    .await;
}

// === erasure ===

async fn erasure_removes_a_partys_ended_records_and_masks_its_cdrs(s: Arc<dyn Store>) {
    setup(&*s).await;
    let ended = binding(10, 1, 1, 2, 5_000);
    let mut live = binding(11, 1, 1, 3, 9_999_999_999);
    live.x = num(2);
    let elsewhere = binding(12, 2, 1, 2, 5_000);
    // Each with the stored response of its bind, keyed by its event's number.
    let response = |b: &Binding, key: &str| IdempotencyRecord {
        tenant: b.tenant,
        key: key.into(),
        request_hash: [7; 32],
        status: 201,
        body: format!("{{\"a\":\"{}\"}}", b.a),
        created_at: 1_000,
    };
    for (b, ev) in [(&ended, 1), (&live, 2), (&elsewhere, 3)] {
        s.enqueue(Write::CreateBinding {
            binding: b.clone(),
            idempotency: Some(response(b, &format!("k{ev}"))),
            events: vec![event(
                ev,
                b.tenant.0,
                EventType::BindingCreated,
                b.id.0,
                false,
            )],
        })
        .await
        .unwrap();
    }
    // A CDR of the ended binding, and one of a call that matched no binding.
    let mut on_ended = call(1, 1, 1_000);
    on_ended.binding = Some(BindingId(10));
    let mut unbound = call(2, 1, 2_000);
    unbound.binding = None;
    unbound.callee = None;
    for c in [on_ended.clone(), unbound.clone()] {
        let subject = c.binding.map_or(c.id.0, |b| b.0);
        s.enqueue(Write::RecordCall {
            events: vec![event(10 + c.id.0, 1, EventType::CallEnded, subject, false)],
            record: c,
        })
        .await
        .unwrap();
    }
    // A text from the party on the ended binding.
    let mut text = message(1, Some(1), MessageStatus::Relayed, 1_000);
    text.binding = Some(BindingId(10));
    text.from = Sender::Number(party(1));
    text.to = Some(party(2));
    s.enqueue(record(text, None, Vec::new())).await.unwrap();

    s.enqueue(Write::EraseParty {
        tenant: TenantId(1),
        party: party(1),
        ended_before: 6_000,
    })
    .await
    .unwrap();

    assert_eq!(s.binding(TenantId(1), BindingId(10)).await.unwrap(), None);
    assert_eq!(
        s.idempotency(TenantId(1), "k1").await.unwrap(),
        None,
        "the stored response of the erased binding holds its numbers"
    );
    assert!(s.idempotency(TenantId(1), "k2").await.unwrap().is_some());
    assert!(s.idempotency(TenantId(2), "k3").await.unwrap().is_some());
    assert_eq!(
        s.binding(TenantId(1), BindingId(11)).await.unwrap(),
        Some(live),
        "a live binding still routes"
    );
    assert_eq!(
        s.binding(TenantId(2), BindingId(12)).await.unwrap(),
        Some(elsewhere),
        "another tenant's records are its own"
    );
    assert_eq!(s.event(TenantId(1), EventId(1)).await.unwrap(), None);
    assert!(s.event(TenantId(1), EventId(2)).await.unwrap().is_some());
    assert!(s.event(TenantId(2), EventId(3)).await.unwrap().is_some());
    assert_eq!(
        s.event(TenantId(1), EventId(12)).await.unwrap(),
        None,
        "the event of the call without a binding"
    );
    assert_eq!(s.message(TenantId(1), MessageId(1)).await.unwrap(), None);
    let cdrs = s
        .calls(TenantId(1), &CallFilter::default(), page(10))
        .await
        .unwrap();
    assert_eq!(cdrs.len(), 2, "CDRs stay, counted");
    let mask = party(1).masked().to_string();
    for c in &cdrs {
        assert_eq!(c.caller, None);
        assert_eq!(c.erased.caller.as_deref(), Some(mask.as_str()));
    }
    assert_eq!(cdrs[0].callee, Some(party(2)), "the other party stays");
    assert_eq!(cdrs[0].erased.callee, None);
    let of = |p| CallFilter {
        party: Some(p),
        ..CallFilter::default()
    };
    assert!(
        s.calls(TenantId(1), &of(party(1)), page(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.calls(TenantId(1), &of(party(2)), page(10))
            .await
            .unwrap()
            .len(),
        1
    );
}

// === call rules, caps and the nodes' calls ===

async fn call_rules_and_caps_round_trip_and_nodes_report_their_calls(s: Arc<dyn Store>) {
    use maskline_core::{CallCaps, CallRules, TenantLoad};

    setup(&*s).await;
    let rules = CallRules::new(&["+86".into(), "+1".into()], &["+86170".into()])
        .unwrap()
        .with_caps(CallCaps {
            max_concurrent_calls: Some(30),
            max_calls_per_second: None,
        });
    s.enqueue(Write::PutCallRules {
        tenant: TenantId(1),
        rules: rules.clone(),
        updated_at: 10,
    })
    .await
    .unwrap();
    let stored = s.call_rules().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].tenant, &stored[0].rules), (TenantId(1), &rules));
    // A replacement drops a cap it no longer names.
    let uncapped = rules.clone().with_caps(CallCaps::default());
    s.enqueue(Write::PutCallRules {
        tenant: TenantId(1),
        rules: uncapped.clone(),
        updated_at: 11,
    })
    .await
    .unwrap();
    assert_eq!(s.call_rules().await.unwrap()[0].rules, uncapped);

    let load = |t: u128, active: u32, per_second: u32| TenantLoad {
        tenant: TenantId(t),
        active,
        per_second,
    };
    let report = |node: &str, at: i64, loads: Vec<TenantLoad>| Write::PutCallLoad {
        node: node.to_owned(),
        at,
        loads,
    };
    s.enqueue(report("a", 1_000, vec![load(1, 3, 1), load(2, 1, 0)]))
        .await
        .unwrap();
    s.enqueue(report("b", 1_500, vec![load(1, 2, 4)]))
        .await
        .unwrap();
    s.enqueue(report("c", 200, vec![load(1, 50, 50)]))
        .await
        .unwrap();
    let mut seen = s.call_loads("z", 900).await.unwrap();
    seen.sort_by_key(|l| l.tenant.0);
    assert_eq!(
        seen,
        vec![load(1, 5, 5), load(2, 1, 0)],
        "c's report is stale"
    );
    // A node's own report is not counted, and a new one replaces it whole.
    assert_eq!(s.call_loads("a", 900).await.unwrap(), vec![load(1, 2, 4)]);
    s.enqueue(report("a", 2_000, vec![load(2, 7, 7)]))
        .await
        .unwrap();
    let mut seen = s.call_loads("b", 900).await.unwrap();
    seen.sort_by_key(|l| l.tenant.0);
    assert_eq!(seen, vec![load(2, 7, 7)]);
    s.enqueue(report("a", 2_100, Vec::new())).await.unwrap();
    assert!(s.call_loads("b", 900).await.unwrap().is_empty());
}

// === the open-call journal ===

async fn the_open_call_journal_holds_a_call_until_its_cdr(s: Arc<dyn Store>) {
    setup(&*s).await;
    let node = s.node().to_owned();
    assert!(s.open_calls(&node).await.unwrap().is_empty());
    assert!(s.open_call_nodes().await.unwrap().is_empty());
    let mut progress = call(1, 1, 1_000);
    progress.answered_at = None;
    s.enqueue(Write::OpenCall {
        record: progress.clone(),
        events: vec![event(1, 1, EventType::CallStarted, 10, false)],
    })
    .await
    .unwrap();
    // The answer replaces what the journal held.
    let answered = call(1, 1, 1_000);
    s.enqueue(Write::OpenCall {
        record: answered.clone(),
        events: vec![event(2, 1, EventType::CallAnswered, 10, false)],
    })
    .await
    .unwrap();
    let open = s.open_calls(&node).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(s.open_call_nodes().await.unwrap(), vec![node.clone()]);
    assert!(s.open_calls("another").await.unwrap().is_empty());
    assert_eq!(open[0].answered_at, answered.answered_at);
    assert_eq!(
        (open[0].caller, open[0].callee),
        (Some(party(1)), Some(party(2)))
    );
    assert!(s.event(TenantId(1), EventId(2)).await.unwrap().is_some());
    s.enqueue(Write::RecordCall {
        record: answered,
        events: Vec::new(),
    })
    .await
    .unwrap();
    assert!(
        s.open_calls(&node).await.unwrap().is_empty(),
        "its CDR closed it"
    );
    assert!(s.open_call_nodes().await.unwrap().is_empty());
}
