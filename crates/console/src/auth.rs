//! Who is asking: the session cookie, the language, and the CSRF tokens
//! every form carries.
//!
//! A session's CSRF token is derived from its cookie's token (a hash with a
//! purpose of its own), so every node knows it without storing it, and a
//! page that cannot read the `HttpOnly` cookie cannot make it. Before
//! sign-in there is no session: the sign-in form's token is a random value
//! also set as a cookie of its own (double submit), which a cross-site page
//! can neither read nor set.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maskline_store::{Role, User};
use sha2::{Digest, Sha256};

use crate::ConsoleState;
use crate::i18n::Lang;
use crate::pages;

pub const SESSION_COOKIE: &str = "ml_session";
pub const LOGIN_COOKIE: &str = "ml_login";
pub const LANG_COOKIE: &str = "ml_lang";

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value. `Secure` when the request came over TLS (a proxy
/// in front says so with `X-Forwarded-Proto`): over plain HTTP a browser
/// would drop a secure cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

pub fn behind_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    forwarded_proto || forwarded
}

/// The CSRF token of the session whose cookie holds `session_token`.
pub fn csrf_for(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"maskline console csrf\0");
    h.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// The key that seals a session's search terms: a party number searched
/// for travels in links sealed under it, so no page, URL or access log
/// holds it, and no other session can open it.
fn query_key(session_token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"maskline console query\0");
    h.update(session_token.as_bytes());
    h.finalize().into()
}

/// `plain` sealed (ChaCha20-Poly1305, a random nonce) for a link.
pub fn seal_query(key: &[u8; 32], plain: &str) -> String {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let nonce: [u8; 12] = rand::random();
    let mut out = nonce.to_vec();
    // Encrypting into a Vec cannot fail for inputs this small.
    out.extend(
        cipher
            .encrypt(&nonce.into(), plain.as_bytes())
            .unwrap_or_default(),
    );
    URL_SAFE_NO_PAD.encode(out)
}

/// What [`seal_query`] sealed under `key`; `None` for anything else.
pub fn open_query(key: &[u8; 32], sealed: &str) -> Option<String> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < 12 + 16 {
        return None;
    }
    let (nonce, body) = bytes.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let plain = cipher.decrypt(&nonce.into(), body).ok()?;
    String::from_utf8(plain).ok()
}

/// A fresh random token (the sign-in form's).
pub fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares without leaking, through time, how much of `given` matched.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    let (g, e) = (given.as_bytes(), expected.as_bytes());
    if g.len() != e.len() || e.is_empty() {
        return false;
    }
    g.iter().zip(e).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The language of this request: `?lang=` (the switch), then the cookie
/// the switch set, then `Accept-Language`.
#[derive(Clone, Copy, Debug)]
pub struct Language {
    pub lang: Lang,
    /// The switch was used: the answer sets the cookie.
    pub switched: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Language {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let asked = parts.uri.query().and_then(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "lang")
                .and_then(|(_, v)| Lang::from_param(v))
        });
        if let Some(lang) = asked {
            return Ok(Language {
                lang,
                switched: true,
            });
        }
        let lang = cookie(&parts.headers, LANG_COOKIE)
            .and_then(Lang::from_param)
            .unwrap_or_else(|| {
                Lang::negotiate(
                    parts
                        .headers
                        .get(header::ACCEPT_LANGUAGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                )
            });
        Ok(Language {
            lang,
            switched: false,
        })
    }
}

/// A signed-in user; a request without a valid session is sent to the
/// sign-in page.
pub struct Session {
    pub user: User,
    pub csrf: String,
    /// Seals this session's search terms ([`seal_query`]).
    pub query_key: [u8; 32],
    pub lang: Language,
    pub secure: bool,
}

impl Session {
    pub fn role_label(&self) -> &'static str {
        let t = self.lang.lang.text();
        match self.user.role {
            Role::Admin => t.role_admin,
            Role::Owner => t.role_owner,
            Role::Operator => t.role_operator,
            Role::Viewer => t.role_viewer,
        }
    }

    /// Whether this user may change a tenant's bindings.
    pub fn may_write(&self) -> bool {
        self.user.role != Role::Viewer
    }

    /// Whether this user manages the tenant: its numbers, settings, keys,
    /// users and audit log (an owner, or an admin).
    pub fn may_manage(&self) -> bool {
        matches!(self.user.role, Role::Owner | Role::Admin)
    }

    /// Refuses a form whose token is not this session's.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), Response> {
        if given.is_some_and(|g| tokens_match(g, &self.csrf)) {
            Ok(())
        } else {
            Err(pages::csrf_refused(self.lang.lang))
        }
    }
}

impl FromRequestParts<ConsoleState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(lang) = Language::from_request_parts(parts, state).await;
        let to_login = || Redirect::to("/console/login").into_response();
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        match state
            .engine
            .session_user(token, maskline_engine::now())
            .await
        {
            Ok(Some(user)) => {
                let session = Session {
                    csrf: csrf_for(token),
                    query_key: query_key(token),
                    user,
                    lang,
                    secure: state.secure(&parts.headers),
                };
                // A tenant's users draw on its rate; an admin has none.
                match session.user.tenant.map(|t| (state.tenant_rate)(t)) {
                    Some(Err(secs)) => Err(pages::rate_limited(&session, secs)),
                    _ => Ok(session),
                }
            }
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::error!(error = %e, "console session lookup failed");
                Err(pages::internal_error(lang.lang))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("ml_session_x=no; ml_session=yes; ml_lang=zh"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("other=1"));
        assert_eq!(cookie(&h, "ml_session"), Some("yes"));
        assert_eq!(cookie(&h, "ml_lang"), Some("zh"));
        assert_eq!(cookie(&h, "other"), Some("1"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn a_sessions_csrf_token_is_its_own_and_compared_whole() {
        let a = csrf_for("mls_a");
        assert_eq!(a, csrf_for("mls_a"));
        assert_ne!(a, csrf_for("mls_b"));
        assert!(tokens_match(&a, &a.clone()));
        assert!(!tokens_match(&a[..a.len() - 1], &a));
        assert!(!tokens_match("", ""));
        assert!(!tokens_match(&csrf_for("mls_b"), &a));
    }

    #[test]
    fn a_sealed_query_opens_only_under_its_sessions_key() {
        let (mine, theirs) = (query_key("mls_a"), query_key("mls_b"));
        let sealed = seal_query(&mine, "+8613812345678");
        assert!(!sealed.contains("13812345678"));
        assert_ne!(
            sealed,
            seal_query(&mine, "+8613812345678"),
            "a fresh nonce each time"
        );
        assert_eq!(
            open_query(&mine, &sealed).as_deref(),
            Some("+8613812345678")
        );
        assert_eq!(open_query(&theirs, &sealed), None);
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open_query(&mine, std::str::from_utf8(&tampered).unwrap()),
            None
        );
        for junk in ["", "x", "!!!!", &"A".repeat(40)] {
            assert_eq!(open_query(&mine, junk), None);
        }
    }

    #[test]
    fn cookies_are_strict_and_secure_only_behind_tls() {
        let plain = set_cookie("ml_session", "t", None, false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(set_cookie("ml_session", "", Some(0), true).ends_with("Max-Age=0; Secure"));
        let mut h = HeaderMap::new();
        assert!(!behind_tls(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS"));
        assert!(behind_tls(&h));
    }
}
