//! Signing in and out at `/console/login` and `/console/logout`.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maskline_engine::SignIn;
use serde::Deserialize;

use crate::ConsoleState;
use crate::auth::{self, LOGIN_COOKIE, Language, SESSION_COOKIE, Session};
use crate::pages::{self, Chrome, CsrfForm};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    c: Chrome,
    csrf: String,
    email: String,
    error: String,
    notice: String,
}

/// The sign-in page with a fresh form token, also set as its cookie.
fn login_page(
    lang: Language,
    secure: bool,
    status: StatusCode,
    email: String,
    error: String,
    notice: String,
) -> Response {
    let csrf = auth::random_token();
    let page = LoginPage {
        c: Chrome::anonymous(lang.lang),
        csrf: csrf.clone(),
        email,
        error,
        notice,
    };
    let mut res = pages::render(status, &page, lang, secure);
    if let Ok(v) = auth::set_cookie(LOGIN_COOKIE, &csrf, Some(3600), secure).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[derive(Deserialize, Default)]
pub struct Notice {
    #[serde(default)]
    out: Option<String>,
}

pub async fn form(
    State(state): State<ConsoleState>,
    lang: Language,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<Notice>,
) -> Response {
    let notice = if q.out.is_some() {
        lang.lang.text().signed_out.to_owned()
    } else {
        String::new()
    };
    login_page(
        lang,
        state.secure(&headers),
        StatusCode::OK,
        String::new(),
        String::new(),
        notice,
    )
}

/// Sign-in attempts one client address may make in a burst.
const SIGN_IN_BURST: u32 = 60;

/// Sign-in attempts per client address: a burst, then one a second. The
/// account lockout stops guessing one account's password; this stops one
/// address trying many accounts, or keeping the server busy hashing.
/// Behind a proxy the address is the proxy's.
pub struct SignInLimits(governor::DefaultKeyedRateLimiter<IpAddr>);

impl Default for SignInLimits {
    fn default() -> Self {
        let burst = NonZeroU32::new(SIGN_IN_BURST).unwrap_or(NonZeroU32::MIN);
        SignInLimits(governor::RateLimiter::keyed(
            governor::Quota::per_second(NonZeroU32::MIN).allow_burst(burst),
        ))
    }
}

impl SignInLimits {
    /// Takes an attempt for `ip`, or says in how many seconds one is free.
    fn check(&self, ip: IpAddr) -> Result<(), u64> {
        use governor::clock::{Clock, DefaultClock};
        // Addresses seen once are forgotten once their bucket is full again.
        if self.0.len() > 4096 {
            self.0.retain_recent();
        }
        self.0.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }
}

/// The client's address, as the connection gives it.
pub struct ClientIp(Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[derive(Deserialize, Default)]
struct Credentials {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn sign_in(
    State(state): State<ConsoleState>,
    lang: Language,
    headers: HeaderMap,
    ClientIp(peer): ClientIp,
    body: Bytes,
) -> Response {
    let f: Credentials = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if !f
        .csrf
        .as_deref()
        .is_some_and(|given| auth::tokens_match(given, expected))
    {
        return pages::csrf_refused(lang.lang);
    }
    let secure = state.secure(&headers);
    let t = lang.lang.text();
    if let Some(ip) = peer
        && let Err(secs) = state.sign_in_limits.check(ip)
    {
        let error = t.sign_in_throttled.replace("{}", &secs.to_string());
        let mut res = login_page(
            lang,
            secure,
            StatusCode::TOO_MANY_REQUESTS,
            f.email.trim().to_owned(),
            error,
            String::new(),
        );
        if let Ok(v) = secs.to_string().parse() {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let now = maskline_engine::now();
    let refused = |error: String| {
        login_page(
            lang,
            secure,
            StatusCode::UNAUTHORIZED,
            f.email.trim().to_owned(),
            error,
            String::new(),
        )
    };
    match state.engine.sign_in(&f.email, &f.password, now).await {
        Ok(SignIn::Accepted(user)) => match state.engine.open_session(&user, now).await {
            Ok(token) => {
                let mut res = Redirect::to("/console").into_response();
                let cookies = [
                    auth::set_cookie(
                        SESSION_COOKIE,
                        &token,
                        Some(maskline_engine::SESSION_SECS),
                        secure,
                    ),
                    auth::set_cookie(LOGIN_COOKIE, "", Some(0), secure),
                ];
                for c in cookies {
                    if let Ok(v) = c.parse() {
                        res.headers_mut().append(header::SET_COOKIE, v);
                    }
                }
                tracing::info!(user = %user.id, "console sign-in");
                res
            }
            Err(e) => {
                tracing::error!(error = %e, "console session could not open");
                pages::internal_error(lang.lang)
            }
        },
        Ok(SignIn::Refused) => refused(t.sign_in_refused.to_owned()),
        Ok(SignIn::Locked { until }) => {
            refused(format!("{} {}", t.sign_in_locked, lang.lang.time(until)))
        }
        Err(e) => {
            tracing::error!(error = %e, "console sign-in failed");
            pages::internal_error(lang.lang)
        }
    }
}

pub async fn sign_out(
    State(state): State<ConsoleState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f: CsrfForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Err(res) = session.check_csrf(f.csrf.as_deref()) {
        return res;
    }
    if let Some(token) = auth::cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.engine.close_session(token).await
    {
        tracing::error!(error = %e, "console sign-out failed");
        return pages::internal_error(session.lang.lang);
    }
    let mut res = Redirect::to("/console/login?out=1").into_response();
    if let Ok(v) = auth::set_cookie(SESSION_COOKIE, "", Some(0), session.secure).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}
