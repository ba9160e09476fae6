//! A request future dropped mid-write (the client disconnected) must still
//! leave memory matching the store.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use maskline_core::{AreaMatch, Channel, Controls, Decision, Inbound, Mode, Number};
use maskline_engine::{BindingSpec, Config, Engine, Expiry, NumberEntry};
use maskline_store::SqliteStore;

fn n(digits: u64) -> Number {
    Number::from_digits(digits).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_abandoned_after_its_write_was_queued_still_routes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let engine = Arc::new(
        Engine::open(Arc::new(store), Config::default())
            .await
            .unwrap(),
    );
    let (tenant, _) = engine.create_tenant("t").await.unwrap();
    let x = n(8_657_100_000_001);
    engine
        .import_numbers(
            tenant.id,
            vec![NumberEntry {
                number: x,
                area: None,
            }],
        )
        .await
        .unwrap();
    let (a, b) = (n(8_613_800_000_001), n(8_613_800_000_002));
    let spec = BindingSpec {
        mode: Mode::Axb,
        a,
        b: Some(b),
        expiry: Expiry::Default,
        area: None,
        area_match: AreaMatch::Fallback,
        external_ref: None,
        controls: Controls::default(),
    };
    let render = |_: &maskline_core::Binding| String::new();
    {
        let fut = engine.create_binding(tenant.id, spec, None, &render);
        let mut fut = std::pin::pin!(fut);
        // One poll reserves, queues the write and then waits for it.
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Pending));
        // Dropped here, as hyper drops a handler whose client went away.
    }
    let inbound = Inbound {
        caller: a,
        called: x,
        extension: None,
        channel: Channel::Voice,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Decision::Connect(c) = engine.decide(&inbound) {
            assert_eq!(c.to, b);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned binding never became routable"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
