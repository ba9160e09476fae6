//! Request extractors whose every refusal is a precise [`Problem`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use maskline_core::TenantId;
use maskline_engine::Principal;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::problem::Problem;

/// Header with which the admin key acts for one tenant (used by the CLI).
pub const TENANT_HEADER: &str = "maskline-tenant";

/// A JSON body: `application/json`, within the size limit, every field known.
/// Also keeps the raw bytes (idempotency hashes them).
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let is_json = media_type(&req).is_some_and(|mime| {
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let raw = body_bytes(req, state).await?;
        let value = parse_json(&raw)?;
        Ok(JsonBody { value, raw })
    }
}

/// The body's bytes, within the size limit.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Problem> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body exceeds {} bytes", crate::MAX_BODY_BYTES),
            )
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "malformed_body", e.body_text())
        }
    })
}

/// The media type of a request's body, lower-cased, without parameters.
fn media_type(req: &Request) -> Option<String> {
    let ct = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next().unwrap_or("").trim();
    Some(mime.to_ascii_lowercase())
}

/// A WAV file as the body (`audio/wav`, `audio/x-wav` or `audio/wave`),
/// within the size limit; what is inside is the engine's to judge.
pub struct WavBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for WavBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let is_wav = media_type(&req)
            .is_some_and(|m| matches!(m.as_str(), "audio/wav" | "audio/x-wav" | "audio/wave"));
        if !is_wav {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the prompt as a WAV file with Content-Type: audio/wav",
            ));
        }
        Ok(WavBody(body_bytes(req, state).await?))
    }
}

/// Parses JSON, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(raw);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let msg = inner.to_string();
            use serde_json::error::Category;
            let problem = match inner.classify() {
                Category::Syntax | Category::Eof | Category::Io => Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the body is not valid JSON: {msg}"),
                ),
                Category::Data if msg.starts_with("unknown field") => Problem::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_field",
                    strip_position(&msg),
                ),
                Category::Data => Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    strip_position(&msg),
                ),
            };
            let names_a_field = problem.code != "malformed_json" && path != "." && !path.is_empty();
            Err(if names_a_field {
                problem.field(path)
            } else {
                problem
            })
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// A single path segment. axum's own rejection (e.g. invalid UTF-8 after
/// percent-decoding) would be text/plain; a segment we cannot read names
/// nothing that exists.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|_| Problem::not_found("resource"))
    }
}

/// Query parameters: every parameter known, each well-formed.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q).map(QueryParams).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("bad query string: {e}"),
            )
        })
    }
}

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A request acting for one tenant: its own key, or the admin key with the
/// `Maskline-Tenant` header.
pub struct TenantAuth(pub TenantId);

impl FromRequestParts<AppState> for TenantAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let (tenant, key) = Self::authenticate(parts, state).await?;
        // Counted once the tenant is known, whoever's key it was.
        state
            .rate_limits
            .check(tenant, state.engine.rate_limit(tenant))?;
        // Who acted, for the audit log.
        if let Some(slot) = parts.extensions.get::<crate::audit::ActorSlot>() {
            *slot.0.lock() = Some(Actor { tenant, key });
        }
        Ok(TenantAuth(tenant))
    }
}

/// The tenant a request acted for and the key it used (`None`: the admin
/// key), set by [`TenantAuth`].
#[derive(Clone, Copy, Debug)]
pub struct Actor {
    pub tenant: TenantId,
    pub key: Option<maskline_engine::store::KeyId>,
}

impl TenantAuth {
    async fn authenticate(
        parts: &Parts,
        state: &AppState,
    ) -> Result<(TenantId, Option<maskline_engine::store::KeyId>), Problem> {
        let key = bearer(parts).ok_or_else(Problem::unauthorized)?;
        let caller = state
            .engine
            .authenticate_fresh(key)
            .await
            .ok_or_else(Problem::unauthorized)?;
        match caller.principal {
            Principal::Tenant(t) => Ok((t, caller.key)),
            Principal::Admin => {
                let Some(tenant) = tenant_header(&parts.headers)? else {
                    return Err(Problem::forbidden(
                        "this endpoint needs a tenant API key (or the admin key with a Maskline-Tenant header)",
                    ));
                };
                if !state.engine.tenant_exists(tenant) {
                    return Err(Problem::not_found("tenant"));
                }
                Ok((tenant, None))
            }
        }
    }
}

/// The tenant the admin key acts for (`Maskline-Tenant`), if the request
/// names one.
pub(crate) fn tenant_header(headers: &axum::http::HeaderMap) -> Result<Option<TenantId>, Problem> {
    headers
        .get(TENANT_HEADER)
        .map(|h| {
            h.to_str()
                .ok()
                .and_then(|s| s.parse::<TenantId>().ok())
                .ok_or_else(|| {
                    Problem::bad_request(
                        "invalid_header",
                        "Maskline-Tenant",
                        "Maskline-Tenant must be a tenant id",
                    )
                })
        })
        .transpose()
}

/// A request made with the admin key.
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let key = bearer(parts).ok_or_else(Problem::unauthorized)?;
        match state.engine.authenticate(key) {
            Some(Principal::Admin) => Ok(AdminAuth),
            Some(Principal::Tenant(_)) => {
                Err(Problem::forbidden("this endpoint needs the admin key"))
            }
            None => Err(Problem::unauthorized()),
        }
    }
}

/// A request made with the switch credential (`MASKLINE_SWITCH_KEY`).
pub struct SwitchAuth;

impl FromRequestParts<AppState> for SwitchAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Some(expected) = &state.switch_key_hash else {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "switch_disabled",
                "switch endpoints are disabled: MASKLINE_SWITCH_KEY is not set",
            ));
        };
        let key = bearer(parts).ok_or_else(Problem::unauthorized)?;
        if crate::sha256(key.as_bytes()) == *expected {
            Ok(SwitchAuth)
        } else {
            Err(Problem::unauthorized())
        }
    }
}

/// A scrape of `/metrics`: free when `MASKLINE_METRICS_KEY` is unset, else
/// made with that key as bearer.
pub struct MetricsAuth;

impl FromRequestParts<AppState> for MetricsAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Some(expected) = &state.metrics_key_hash else {
            return Ok(MetricsAuth);
        };
        let key = bearer(parts).ok_or_else(Problem::unauthorized)?;
        if crate::sha256(key.as_bytes()) == *expected {
            Ok(MetricsAuth)
        } else {
            Err(Problem::unauthorized())
        }
    }
}
