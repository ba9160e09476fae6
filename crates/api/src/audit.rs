//! The audit log: who (key id), what (method and route), on what, when and
//! from where, for every write a tenant's request made; `GET /v1/audit`.
//!
//! [`record`] wraps every request. A write (POST, PUT, PATCH, DELETE) that
//! acted for a tenant ([`TenantAuth`] fills the slot it leaves in the
//! request) and succeeded is queued to the store once answered.

use std::sync::Arc;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use maskline_core::{Number, Region};
use maskline_engine::store::AuditEntry;
use parking_lot::Mutex;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{Actor, QueryParams, TenantAuth};
use crate::handlers::{ListParams, decode_cursor, limit, page_of};
use crate::problem::{Problem, ProblemBody};
use crate::types::{ListPage, rfc3339_millis};

/// Where [`TenantAuth`] leaves who acted, for [`record`] to read.
#[derive(Clone, Default)]
pub struct ActorSlot(pub(crate) Arc<Mutex<Option<Actor>>>);

/// What a handler names as the object of its write (a created resource's
/// id), set on its response.
#[derive(Clone)]
pub struct AuditObject(pub String);

pub(crate) async fn record(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !write {
        return next.run(req).await;
    }
    let slot = ActorSlot::default();
    req.extensions_mut().insert(slot.clone());
    let action = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str)
    );
    // Masked only if the write is recorded (routing and SMS ingress are
    // writes by switches, not tenants, and hot).
    let path = req.uri().path().to_owned();
    let source = crate::edge::peer(req.extensions()).map(|a| a.ip().to_string());
    let response = next.run(req).await;
    let actor = *slot.0.lock();
    // A replayed idempotent request changed nothing.
    let replayed = response.headers().contains_key("idempotent-replayed");
    if let Some(actor) = actor
        && response.status().is_success()
        && !replayed
    {
        // A created resource names itself (its id, or its Location).
        let object = match response.extensions().get::<AuditObject>() {
            Some(o) => o.0.clone(),
            None => response
                .headers()
                .get(axum::http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| masked_path(&path, state.region), str::to_owned),
        };
        state.engine.record_audit(AuditEntry {
            tenant: actor.tenant,
            key: actor.key,
            user: None,
            action,
            object,
            status: response.status().as_u16(),
            at: maskline_events::unix_ms(),
            source,
        });
    }
    response
}

/// The request's path with every segment that reads as a phone number
/// masked: the log keeps who did what, not whose number.
fn masked_path(path: &str, region: Region) -> String {
    path.split('/')
        .map(|segment| {
            let decoded = segment.replace("%2B", "+").replace("%2b", "+");
            if decoded.bytes().filter(u8::is_ascii_digit).count() < 7 {
                return segment.to_owned();
            }
            match Number::parse(&decoded, region) {
                Ok(n) => n.masked().to_string(),
                _ if decoded.bytes().all(|b| b.is_ascii_digit() || b == b'+') => "****".to_owned(),
                _ => segment.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(Serialize, ToSchema)]
pub struct AuditView {
    /// The key used (`null`: the admin key acting for the tenant, or a
    /// console user).
    pub key_id: Option<String>,
    /// The console user who acted (`null`: the API).
    pub user_id: Option<String>,
    /// Method and route, e.g. `POST /v1/bindings`.
    pub action: String,
    /// What it acted on: an id, or the path with numbers masked.
    pub object: String,
    pub status: u16,
    /// RFC 3339 with milliseconds.
    pub at: String,
    /// The client's IP address.
    pub source: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "tenants",
    params(
        ("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "The tenant's writes, newest first", body = ListPage<AuditView>),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn list_audit(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    QueryParams(q): QueryParams<ListParams>,
) -> Result<Json<ListPage<AuditView>>, Problem> {
    let limit = limit(q.limit)?;
    let before = decode_cursor(q.cursor.as_deref(), |s| s.parse::<i64>().ok())?;
    let rows = state.engine.audit(tenant, before, limit + 1).await?;
    Ok(Json(page_of(
        rows,
        limit,
        |(seq, _)| seq.to_string(),
        |(_, e)| AuditView {
            key_id: e.key.map(|k| k.to_string()),
            user_id: e.user.map(|u| u.to_string()),
            action: e.action.clone(),
            object: e.object.clone(),
            status: e.status,
            at: rfc3339_millis(e.at),
            source: e.source.clone(),
        },
    )))
}
