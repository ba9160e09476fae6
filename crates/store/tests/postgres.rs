//! What only a store shared by several nodes has: allocation invariants the
//! database enforces, change notifications between nodes, claims of due
//! events, and event sequence numbers in commit order. Several `PgStore`s
//! on one schema stand for several nodes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use maskline_core::{
    Area, Binding, BindingId, Controls, EndReason, EventId, EventType, Extension, Mode, Number,
    TenantId,
};
use maskline_store::{Change, Error, NewEvent, PoolNumber, Store, Tenant, Write};

use maskline_store::testing as pg;

fn x(n: u64) -> Number {
    Number::from_digits(8_657_100_000_000 + n).unwrap()
}

fn party(n: u64) -> Number {
    Number::from_digits(8_613_800_000_000 + n).unwrap()
}

fn binding(id: u128, mode: Mode, on: u64, a: u64, b: Option<u64>, created: i64) -> Binding {
    Binding {
        id: BindingId(id),
        tenant: TenantId(1),
        mode,
        x: x(on),
        extension: (mode == Mode::Axe).then(|| "1234".parse::<Extension>().unwrap()),
        a: party(a),
        b: b.map(party),
        area: None,
        external_ref: None,
        controls: Controls::default(),
        created_at: created,
        updated_at: created,
        expires_at: created + 1_000,
        ended_at: None,
        end_reason: None,
    }
}

async fn setup(s: &dyn Store) {
    let tenant = Tenant {
        id: TenantId(1),
        name: "t".into(),
        api_key_hash: [1; 32],
        created_at: 0,
    };
    s.enqueue(Write::CreateTenant(
        tenant.clone(),
        tenant.first_key("mlk_"),
    ))
    .await
    .unwrap();
    s.enqueue(Write::ImportNumbers(
        (1..=3)
            .map(|n| PoolNumber {
                tenant: TenantId(1),
                number: x(n),
                area: Some(Area::new("0571").unwrap()),
                created_at: 0,
            })
            .collect(),
    ))
    .await
    .unwrap();
}

async fn create(s: &dyn Store, b: Binding) -> Result<(), Error> {
    s.enqueue(Write::CreateBinding {
        binding: b,
        idempotency: None,
        events: Vec::new(),
    })
    .await
}

fn taken(r: Result<(), Error>, constraint: &str) {
    match r {
        Err(Error::Taken(c)) if c == constraint => {}
        other => panic!("expected {constraint}, got {other:?}"),
    }
}

/// Every allocation invariant, as the database enforces it.
#[tokio::test(flavor = "multi_thread")]
async fn the_database_refuses_what_breaks_an_allocation_invariant() {
    let schema = pg::Schema::create().await;
    let s = schema.open(100).await;
    setup(&*s).await;
    create(&*s, binding(1, Mode::Axb, 1, 1, Some(2), 1_000))
        .await
        .unwrap();
    // A party in a second live binding on the same X, as A or as B.
    taken(
        create(&*s, binding(2, Mode::Axb, 1, 2, Some(3), 1_010)).await,
        "one_binding_per_party_per_number",
    );
    taken(
        create(&*s, binding(2, Mode::Axb, 1, 3, Some(1), 1_010)).await,
        "one_binding_per_party_per_number",
    );
    // Another mode on the same X; an axn binding on a used X.
    taken(
        create(&*s, binding(2, Mode::Axe, 1, 5, None, 1_010)).await,
        "one_mode_per_number",
    );
    taken(
        create(&*s, binding(2, Mode::Axn, 1, 5, None, 1_010)).await,
        "one_mode_per_number",
    );
    // Other parties on X, and the same parties on another X, are fine.
    create(&*s, binding(3, Mode::Axb, 1, 3, Some(4), 1_010))
        .await
        .unwrap();
    create(&*s, binding(4, Mode::Axb, 2, 1, Some(2), 1_010))
        .await
        .unwrap();
    // axn holds its X alone.
    create(&*s, binding(5, Mode::Axn, 3, 1, None, 1_000))
        .await
        .unwrap();
    taken(
        create(&*s, binding(6, Mode::Axn, 3, 7, None, 1_010)).await,
        "axn_holds_number_alone",
    );
    // PATCH of B onto a party already on X.
    let mut first = binding(1, Mode::Axb, 1, 1, Some(2), 1_000);
    first.b = Some(party(3));
    first.updated_at = 1_020;
    taken(
        s.enqueue(Write::UpdateBinding {
            binding: first.clone(),
            events: Vec::new(),
        })
        .await,
        "one_binding_per_party_per_number",
    );
    // Unbound at 1,030: its slots stay taken through the cool-down
    // (100 s), then they are free.
    first.b = Some(party(2));
    first.ended_at = Some(1_030);
    first.end_reason = Some(EndReason::Unbound);
    first.updated_at = 1_030;
    s.enqueue(Write::UpdateBinding {
        binding: first,
        events: Vec::new(),
    })
    .await
    .unwrap();
    taken(
        create(&*s, binding(7, Mode::Axb, 1, 1, Some(9), 1_129)).await,
        "one_binding_per_party_per_number",
    );
    create(&*s, binding(7, Mode::Axb, 1, 1, Some(9), 1_130))
        .await
        .unwrap();
    // axe: an extension is one binding's at a time.
    let ext = |id, a, created| binding(id, Mode::Axe, 2, a, None, created);
    taken(create(&*s, ext(8, 20, 2_000)).await, "one_mode_per_number");
    // X 3's axn binding (created 1,000, expired 2,000) cools down until
    // 2,100: no other mode before then.
    let on_three = |created| {
        let mut b = ext(8, 20, created);
        b.x = x(3);
        b
    };
    taken(create(&*s, on_three(2_099)).await, "one_mode_per_number");
    create(&*s, on_three(2_100)).await.unwrap();

    // And in SQL, nothing that broke one got in.
    let mut conn = schema.connect().await;
    let bindings: i64 = sqlx::query_scalar("SELECT count(*) FROM bindings")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(bindings, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn extensions_are_unique_per_number_while_live() {
    let schema = pg::Schema::create().await;
    let s = schema.open(100).await;
    setup(&*s).await;
    let ext = |id, a, created| binding(id, Mode::Axe, 1, a, None, created);
    create(&*s, ext(1, 1, 1_000)).await.unwrap();
    taken(
        create(&*s, ext(2, 2, 1_010)).await,
        "one_binding_per_extension",
    );
    let mut other = ext(2, 2, 1_010);
    other.extension = Some("4321".parse().unwrap());
    create(&*s, other).await.unwrap();
}

/// Two nodes binding at the same instant from memories that know nothing
/// of each other: for every contested slot exactly one write commits.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_nodes_cannot_both_take_a_slot() {
    let schema = pg::Schema::create().await;
    let one = schema.open(100).await;
    let two = schema.open(100).await;
    setup(&*one).await;
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        for (node, s) in [(0u128, one.clone()), (1, two.clone())] {
            // Both nodes try to bind party i on X 1 (with different Bs).
            let b = binding(
                1 + u128::from(i) * 2 + node,
                Mode::Axb,
                1,
                i,
                Some(10_000 + i * 2 + node as u64),
                1_000,
            );
            tasks.push(tokio::spawn(async move { create(&*s, b).await }));
        }
    }
    assert_eq!(wins(tasks).await, 200);
    let doubled = count(
        &schema,
        "SELECT count(*) FROM (SELECT a FROM bindings GROUP BY x, a HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(doubled, 0);
}

/// How many of the racing writes committed; any failure but `Taken` fails
/// the test.
async fn wins(tasks: Vec<tokio::task::JoinHandle<Result<(), Error>>>) -> usize {
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(Error::Taken(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    won
}

async fn count(schema: &pg::Schema, sql: &'static str) -> i64 {
    let mut conn = schema.connect().await;
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

async fn update(s: &dyn Store, b: &Binding) -> Result<(), Error> {
    s.enqueue(Write::UpdateBinding {
        binding: b.clone(),
        events: Vec::new(),
    })
    .await
}

fn unbound(mut b: Binding, at: i64) -> Binding {
    b.ended_at = Some(at);
    b.end_reason = Some(EndReason::Unbound);
    b.updated_at = at;
    b
}

/// A number's hold outlives bindings that end early (it is an upper bound,
/// raised with slack): what decides is what really holds the number.
#[tokio::test(flavor = "multi_thread")]
async fn a_number_is_free_when_its_bindings_are_not_when_its_hold_says() {
    let schema = pg::Schema::create().await;
    let s = schema.open(100).await;
    setup(&*s).await;
    let first = binding(1, Mode::Axb, 1, 1, Some(2), 1_000);
    create(&*s, first.clone()).await.unwrap();
    // Unbound at 1,010: cools down until 1,110, not 2,100.
    update(&*s, &unbound(first, 1_010)).await.unwrap();
    taken(
        create(&*s, binding(2, Mode::Axn, 1, 5, None, 1_109)).await,
        "one_mode_per_number",
    );
    create(&*s, binding(2, Mode::Axn, 1, 5, None, 1_110))
        .await
        .unwrap();
    // Now the axn binding holds the number, whatever the mode before.
    taken(
        create(&*s, binding(3, Mode::Axb, 1, 6, Some(7), 1_200)).await,
        "one_mode_per_number",
    );
    taken(
        create(&*s, binding(3, Mode::Axn, 1, 6, None, 1_200)).await,
        "axn_holds_number_alone",
    );
    // Its own PATCH (a later expiry) extends its hold.
    let mut axn = binding(2, Mode::Axn, 1, 5, None, 1_110);
    axn.expires_at = 9_000;
    axn.updated_at = 1_300;
    update(&*s, &axn).await.unwrap();
    taken(
        create(&*s, binding(3, Mode::Axb, 1, 6, Some(7), 2_500)).await,
        "one_mode_per_number",
    );
    update(&*s, &unbound(axn, 2_600)).await.unwrap();
    create(&*s, binding(3, Mode::Axb, 1, 6, Some(7), 2_700))
        .await
        .unwrap();
}

/// A PATCH of B frees the old B at once and holds the new one from then on;
/// a binding that ended cannot come back over a slot another took since.
#[tokio::test(flavor = "multi_thread")]
async fn slots_follow_patches_of_b_and_of_the_end() {
    let schema = pg::Schema::create().await;
    let s = schema.open(100).await;
    setup(&*s).await;
    let mut first = binding(1, Mode::Axb, 1, 1, Some(2), 1_000);
    create(&*s, first.clone()).await.unwrap();
    first.b = Some(party(3));
    first.updated_at = 1_020;
    update(&*s, &first).await.unwrap();
    create(&*s, binding(2, Mode::Axb, 1, 2, Some(4), 1_020))
        .await
        .unwrap();
    taken(
        create(&*s, binding(3, Mode::Axb, 1, 5, Some(3), 1_020)).await,
        "one_binding_per_party_per_number",
    );
    // Ended at 1,030, cooled down at 1,130; party 1 is then bound again.
    update(&*s, &unbound(first.clone(), 1_030)).await.unwrap();
    create(&*s, binding(3, Mode::Axb, 1, 1, Some(6), 1_130))
        .await
        .unwrap();
    // The first binding cannot live again over party 1 (party 3 is free).
    first.expires_at = 5_000;
    first.updated_at = 1_200;
    taken(
        update(&*s, &first).await,
        "one_binding_per_party_per_number",
    );
    // An extension moves its slots with it: party 6 stays taken until
    // binding 3's new end.
    let mut third = binding(3, Mode::Axb, 1, 1, Some(6), 1_130);
    third.expires_at = 8_000;
    third.updated_at = 1_200;
    update(&*s, &third).await.unwrap();
    taken(
        create(&*s, binding(4, Mode::Axb, 1, 6, Some(7), 3_000)).await,
        "one_binding_per_party_per_number",
    );
    create(&*s, binding(4, Mode::Axb, 1, 6, Some(7), 8_100))
        .await
        .unwrap();
}

/// Two nodes taking one number in different modes at the same instant
/// (axb on one, axn on the other): exactly one commits.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_nodes_cannot_both_take_a_number_in_two_modes() {
    let schema = pg::Schema::create().await;
    let one = schema.open(100).await;
    let two = schema.open(100).await;
    setup(&*one).await;
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let on = 100 + i;
        let axb = binding(1 + u128::from(i) * 2, Mode::Axb, on, 1, Some(2), 1_000);
        let axn = binding(2 + u128::from(i) * 2, Mode::Axn, on, 3, None, 1_000);
        let (s1, s2) = (one.clone(), two.clone());
        tasks.push(tokio::spawn(async move { create(&*s1, axb).await }));
        tasks.push(tokio::spawn(async move { create(&*s2, axn).await }));
    }
    assert_eq!(wins(tasks).await, 200);
    let mixed = count(
        &schema,
        "SELECT count(*) FROM (SELECT x FROM bindings GROUP BY x HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(mixed, 0);
}

async fn next_change(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no change notified within 10 s")
        .expect("change feed closed")
}

/// What one node commits reaches the others, in commit order; a node is
/// not told of its own writes.
#[tokio::test(flavor = "multi_thread")]
async fn other_nodes_hear_of_each_commit() {
    let schema = pg::Schema::create().await;
    let one = schema.open(100).await;
    let two = schema.open(100).await;
    let mut one_rx = one.changes().unwrap();
    let mut two_rx = two.changes().unwrap();
    assert!(two.changes().is_none(), "the feed is handed out once");
    setup(&*one).await;
    assert_eq!(next_change(&mut two_rx).await, Change::Tenants);
    // The tenant's first key came with it.
    assert_eq!(next_change(&mut two_rx).await, Change::Keys);
    assert_eq!(next_change(&mut two_rx).await, Change::Numbers);
    create(&*one, binding(1, Mode::Axb, 1, 1, Some(2), 1_000))
        .await
        .unwrap();
    assert!(matches!(
        next_change(&mut two_rx).await,
        Change::Bindings { ids, .. } if ids == vec![BindingId(1)]
    ));
    // A batch of many bindings arrives whole, in chunks.
    let acks: Vec<_> = (0..500u64)
        .map(|i| {
            one.enqueue(Write::CreateBinding {
                binding: binding(100 + u128::from(i), Mode::Axb, 2, i, Some(1_000 + i), 1_000),
                idempotency: None,
                events: Vec::new(),
            })
        })
        .collect();
    for a in acks {
        a.await.unwrap();
    }
    let mut heard = HashSet::new();
    while heard.len() < 500 {
        match next_change(&mut two_rx).await {
            Change::Bindings { ids, .. } => heard.extend(ids),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(heard.len(), 500);
    // Two's own write: one hears it, two does not.
    create(&*two, binding(2, Mode::Axb, 1, 3, Some(4), 1_000))
        .await
        .unwrap();
    let mut seen_by_one = Vec::new();
    loop {
        match next_change(&mut one_rx).await {
            Change::Bindings { ids, .. } if ids == vec![BindingId(2)] => break,
            other => seen_by_one.push(other),
        }
    }
    assert!(
        seen_by_one
            .iter()
            .all(|c| !matches!(c, Change::Bindings { ids, .. } if ids.contains(&BindingId(1)))),
        "a node heard of its own write"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), two_rx.recv())
            .await
            .is_err(),
        "a node heard of its own write"
    );
}

/// A prompt put or deleted on one node is news to the others (they keep
/// every tenant's prompts in memory).
#[tokio::test(flavor = "multi_thread")]
async fn other_nodes_hear_of_prompt_changes() {
    let schema = pg::Schema::create().await;
    let one = schema.open(100).await;
    let two = schema.open(100).await;
    let mut two_rx = two.changes().unwrap();
    setup(&*one).await;
    assert_eq!(next_change(&mut two_rx).await, Change::Tenants);
    // The tenant's first key came with it.
    assert_eq!(next_change(&mut two_rx).await, Change::Keys);
    assert_eq!(next_change(&mut two_rx).await, Change::Numbers);
    one.enqueue(Write::PutPrompt {
        tenant: TenantId(1),
        name: "expired".into(),
        samples: vec![1, 2, 3],
        updated_at: 1_000,
    })
    .await
    .unwrap();
    assert_eq!(next_change(&mut two_rx).await, Change::Prompts);
    assert_eq!(two.prompts().await.unwrap()[0].samples, vec![1, 2, 3]);
    one.enqueue(Write::DeletePrompt {
        tenant: TenantId(1),
        name: "expired".into(),
    })
    .await
    .unwrap();
    assert_eq!(next_change(&mut two_rx).await, Change::Prompts);
    assert!(two.prompts().await.unwrap().is_empty());
}

fn event(id: u128, subject: u128) -> NewEvent {
    NewEvent {
        id: EventId(id),
        tenant: TenantId(1),
        kind: EventType::BindingCreated,
        subject,
        created_at: 1_000,
        body: "{}".into(),
        deliver: true,
    }
}

/// Two senders claiming at once never get the same event.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claims_are_disjoint() {
    let schema = pg::Schema::create().await;
    let one = schema.open(100).await;
    let two = schema.open(100).await;
    setup(&*one).await;
    one.enqueue(Write::RecordEvents(
        (1..=2_000u128).map(|i| event(i, i)).collect(),
    ))
    .await
    .unwrap();
    let claim = |s: Arc<dyn Store>| async move {
        let mut got = Vec::new();
        loop {
            let batch = s
                .claim_due_events(TenantId(1), 2_000, 100_000, 37)
                .await
                .unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|e| e.id.0));
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(claim(one.clone())),
        tokio::spawn(claim(two.clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let all: HashSet<u128> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), 2_000, "an event was claimed twice");
    assert_eq!(all.len(), 2_000);
    assert!(
        !a.is_empty() && !b.is_empty(),
        "one claimer took everything"
    );
}

/// `seq` is commit order: a poller paging with `after` while two nodes
/// insert events never skips one that commits late.
#[tokio::test(flavor = "multi_thread")]
async fn pollers_never_miss_an_event_committed_late() {
    let schema = pg::Schema::create().await;
    let one = schema.open(100).await;
    let two = schema.open(100).await;
    setup(&*one).await;
    let writer = |s: Arc<dyn Store>, base: u128| async move {
        for i in 0..300u128 {
            let id = base + i;
            s.enqueue(Write::RecordEvents(vec![event(id, id)]))
                .await
                .unwrap();
        }
    };
    let w1 = tokio::spawn(writer(one.clone(), 1));
    let w2 = tokio::spawn(writer(two.clone(), 10_001));
    let reader = one.clone();
    let poller = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut after = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < 600 && tokio::time::Instant::now() < deadline {
            let page = reader
                .events(TenantId(1), &[], maskline_store::Page { after, limit: 50 })
                .await
                .unwrap();
            if let Some(last) = page.last() {
                after = Some(last.seq);
            }
            seen.extend(page.into_iter().map(|e| e.id.0));
        }
        seen
    });
    w1.await.unwrap();
    w2.await.unwrap();
    let seen = poller.await.unwrap();
    let unique: HashSet<u128> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was listed twice");
    assert_eq!(seen.len(), 600, "the poller missed events");
}

/// Nodes starting together apply the migrations once.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_starting_together_migrate_once() {
    let schema = pg::Schema::create().await;
    let opts = schema.options(100);
    let (a, b, c) = tokio::join!(
        maskline_store::PgStore::open(opts.clone()),
        maskline_store::PgStore::open(opts.clone()),
        maskline_store::migrate_postgres(&opts),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let mut conn = schema.connect().await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, migrations, "each migration applied once");
}

/// An unreachable database is an error at open, naming the cause.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_fails_open() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let opts = maskline_store::PgOptions::from_url(&url, 100).unwrap();
    assert!(maskline_store::PgStore::open(opts).await.is_err());
}

/// `sslmode` in the URL is honoured: `require` encrypts every connection
/// the store makes, and `verify-full` against roots that did not sign the
/// server's certificate refuses to connect at all.
#[tokio::test(flavor = "multi_thread")]
async fn connections_honour_sslmode() {
    let schema = pg::Schema::create().await;
    let mut opts =
        maskline_store::PgOptions::from_url(&format!("{}&sslmode=require", schema.url()), 100)
            .unwrap();
    opts.master = schema.master.clone();
    let store = maskline_store::PgStore::open(opts).await.unwrap();
    store.tenants().await.unwrap();
    let mut conn = schema.connect().await;
    // No other test asks for TLS: the encrypted sessions named `maskline`
    // are this store's writer, listener and reader.
    let encrypted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'maskline' AND s.ssl",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(encrypted >= 3, "{encrypted} encrypted sessions");
    drop(store);
    // A root store without the server's (self-signed) issuer.
    let roots = tempfile::NamedTempFile::new().unwrap();
    let other = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "1",
            "-nodes",
            "-subj",
            "/CN=other",
        ])
        .args(["-keyout", "/dev/null", "-out"])
        .arg(roots.path())
        .output()
        .expect("openssl");
    assert!(other.status.success());
    let url = format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        schema.url(),
        roots.path().display()
    );
    let mut opts = maskline_store::PgOptions::from_url(&url, 100).unwrap();
    opts.master = schema.master.clone();
    let err = maskline_store::PgStore::open(opts)
        .await
        .err()
        .expect("refused");
    assert!(!err.to_string().is_empty());
}
