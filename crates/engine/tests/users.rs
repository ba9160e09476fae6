//! Console accounts against a real store: created with their rules, and
//! signed in with the lockout counted in the store.

use std::sync::Arc;

use maskline_engine::store::{Role, SqliteStore, User};
use maskline_engine::{
    Config, Engine, Error, LOCKOUT_SECS, MAX_FAILED_SIGNINS, MAX_PASSWORD_BYTES, NewUser,
    REFUSAL_FLOOR, SESSION_SECS, SignIn,
};

async fn engine() -> (tempfile::TempDir, Arc<Engine>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let engine = Engine::open(Arc::new(store), Config::default())
        .await
        .unwrap();
    (dir, Arc::new(engine))
}

/// A tenant, `shop`, with one operator: op@shop.example, "the right
/// passphrase".
async fn shop_with_operator(engine: &Engine) -> User {
    let (tenant, _) = engine.create_tenant("shop").await.unwrap();
    engine
        .create_user(new(
            "op@shop.example",
            "the right passphrase",
            Role::Operator,
            Some(tenant.id),
        ))
        .await
        .unwrap()
}

fn new(
    email: &str,
    password: &str,
    role: Role,
    tenant: Option<maskline_engine::core::TenantId>,
) -> NewUser {
    NewUser {
        email: email.into(),
        password: password.into(),
        role,
        tenant,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_created_by_their_rules_and_emails_are_unique() {
    let (_dir, engine) = engine().await;
    let (tenant, _) = engine.create_tenant("shop").await.unwrap();
    let owner = engine
        .create_user(new(
            " Owner@Shop.Example ",
            "a long passphrase",
            Role::Owner,
            Some(tenant.id),
        ))
        .await
        .unwrap();
    assert_eq!(owner.email, "owner@shop.example");
    assert!(owner.password_hash.starts_with("$argon2id$"));
    assert!(!owner.password_hash.contains("a long passphrase"));
    let again = engine
        .create_user(new(
            "OWNER@shop.example",
            "another passphrase",
            Role::Viewer,
            Some(tenant.id),
        ))
        .await;
    assert!(matches!(again, Err(Error::EmailTaken)), "{again:?}");
    for (user, field) in [
        (
            new(
                "not-an-email",
                "a long passphrase",
                Role::Viewer,
                Some(tenant.id),
            ),
            "email",
        ),
        (
            new("v@shop.example", "short", Role::Viewer, Some(tenant.id)),
            "password",
        ),
        (
            new(
                "v@shop.example",
                "a long passphrase",
                Role::Admin,
                Some(tenant.id),
            ),
            "tenant_id",
        ),
        (
            new("v@shop.example", "a long passphrase", Role::Viewer, None),
            "tenant_id",
        ),
    ] {
        match engine.create_user(user).await {
            Err(Error::InvalidUser { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let unknown = maskline_engine::core::TenantId(42);
    assert!(matches!(
        engine
            .create_user(new(
                "v@shop.example",
                "a long passphrase",
                Role::Viewer,
                Some(unknown)
            ))
            .await,
        Err(Error::TenantNotFound)
    ));
    let admin = engine
        .create_user(new(
            "root@ops.example",
            "a long passphrase",
            Role::Admin,
            None,
        ))
        .await
        .unwrap();
    let ids =
        |users: Vec<maskline_engine::store::User>| users.iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(
        ids(engine.users(Some(tenant.id)).await.unwrap()),
        [owner.id]
    );
    assert_eq!(ids(engine.users(None).await.unwrap()), [owner.id, admin.id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_failed_sign_ins_lock_the_account_for_fifteen_minutes() {
    let (_dir, engine) = engine().await;
    let user = shop_with_operator(&engine).await;
    let t0 = 1_800_000_000;
    assert!(matches!(
        engine.sign_in("OP@shop.example", "the right passphrase", t0).await.unwrap(),
        SignIn::Accepted(u) if u.id == user.id
    ));
    assert!(matches!(
        engine
            .sign_in("nobody@shop.example", "the right passphrase", t0)
            .await
            .unwrap(),
        SignIn::Refused
    ));
    // Nine failures, then a success: the count starts again.
    for _ in 0..MAX_FAILED_SIGNINS - 1 {
        assert!(matches!(
            engine
                .sign_in("op@shop.example", "wrong", t0)
                .await
                .unwrap(),
            SignIn::Refused
        ));
    }
    assert!(matches!(
        engine
            .sign_in("op@shop.example", "the right passphrase", t0)
            .await
            .unwrap(),
        SignIn::Accepted(_)
    ));
    // Ten in a row lock it: even the right password is not checked.
    for _ in 0..MAX_FAILED_SIGNINS {
        assert!(matches!(
            engine
                .sign_in("op@shop.example", "wrong", t0)
                .await
                .unwrap(),
            SignIn::Refused
        ));
    }
    match engine
        .sign_in("op@shop.example", "the right passphrase", t0 + 60)
        .await
        .unwrap()
    {
        SignIn::Locked { until } => assert_eq!(until, t0 + LOCKOUT_SECS),
        other => panic!("{other:?}"),
    }
    // Once it has run out, the right password works again.
    assert!(matches!(
        engine
            .sign_in("op@shop.example", "the right passphrase", t0 + LOCKOUT_SECS)
            .await
            .unwrap(),
        SignIn::Accepted(_)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_signs_its_user_in_until_it_ends_or_is_closed() {
    let (_dir, engine) = engine().await;
    let (tenant, _) = engine.create_tenant("shop").await.unwrap();
    let user = engine
        .create_user(new(
            "viewer@shop.example",
            "the right passphrase",
            Role::Viewer,
            Some(tenant.id),
        ))
        .await
        .unwrap();
    let t0 = 1_800_000_000;
    let token = engine.open_session(&user, t0).await.unwrap();
    let other = engine.open_session(&user, t0).await.unwrap();
    assert_ne!(token, other);
    assert!(token.starts_with("mls_") && token.len() > 40, "{token}");
    let signed_in = |token: String, at: i64| {
        let engine = engine.clone();
        async move { engine.session_user(&token, at).await.unwrap().map(|u| u.id) }
    };
    assert_eq!(signed_in(token.clone(), t0 + 1).await, Some(user.id));
    assert_eq!(
        signed_in(token.clone(), t0 + SESSION_SECS - 1).await,
        Some(user.id)
    );
    assert_eq!(
        signed_in(token.clone(), t0 + SESSION_SECS).await,
        None,
        "12 h and no more"
    );
    assert_eq!(signed_in(format!("{token}x"), t0 + 1).await, None);
    engine.close_session(&token).await.unwrap();
    assert_eq!(signed_in(token, t0 + 1).await, None, "signed out");
    assert_eq!(
        signed_in(other.clone(), t0 + 1).await,
        Some(user.id),
        "the other stays"
    );
    // A later sign-in clears the sessions that have run out.
    let later = engine
        .open_session(&user, t0 + SESSION_SECS + 5)
        .await
        .unwrap();
    assert_eq!(signed_in(other, t0 + 1).await, None);
    assert_eq!(signed_in(later, t0 + SESSION_SECS + 6).await, Some(user.id));
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_made_at_once_each_count() {
    let (_dir, engine) = engine().await;
    shop_with_operator(&engine).await;
    let t0 = 1_800_000_000;
    let guesses: Vec<_> = (0..MAX_FAILED_SIGNINS)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .sign_in("op@shop.example", &format!("guess {i}"), t0)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for g in guesses {
        assert!(matches!(g.await.unwrap(), SignIn::Refused));
    }
    assert!(matches!(
        engine
            .sign_in("op@shop.example", "the right passphrase", t0 + 1)
            .await
            .unwrap(),
        SignIn::Locked { .. }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_is_answered_no_sooner_than_the_floor() {
    let (_dir, engine) = engine().await;
    shop_with_operator(&engine).await;
    let t0 = 1_800_000_000;
    let timed = async |email: &str, password: &str| {
        let began = std::time::Instant::now();
        let outcome = engine.sign_in(email, password, t0).await.unwrap();
        (outcome, began.elapsed())
    };
    // An unknown email, a known one with a wrong password, a malformed one,
    // a password too long to check: one refusal, one floor.
    let too_long = "x".repeat(MAX_PASSWORD_BYTES + 1);
    for (email, password) in [
        ("nobody@shop.example", "the right passphrase"),
        ("op@shop.example", "wrong"),
        ("not an email", "wrong"),
        ("op@shop.example", too_long.as_str()),
    ] {
        let (outcome, took) = timed(email, password).await;
        assert!(matches!(outcome, SignIn::Refused), "{email}");
        assert!(took >= REFUSAL_FLOOR, "{email}: {took:?}");
    }
    for _ in 0..MAX_FAILED_SIGNINS {
        engine
            .sign_in("op@shop.example", "wrong", t0)
            .await
            .unwrap();
    }
    let (outcome, took) = timed("op@shop.example", "the right passphrase").await;
    assert!(matches!(outcome, SignIn::Locked { .. }));
    assert!(took >= REFUSAL_FLOOR, "locked: {took:?}");
}
