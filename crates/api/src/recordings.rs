//! Call recordings: each call's two-channel WAV (caller left, callee
//! right), listed on its CDR, served and deleted here. The files are the
//! engine's `Recordings`; reading them runs off the async threads.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maskline_core::{CallId, TenantId};
use maskline_events::payload::{CallView, RecordingView};
use maskline_media::recordings::{RecordingKey, Recordings};

use crate::AppState;
use crate::extract::{PathParam, TenantAuth};
use crate::problem::{Problem, ProblemBody};

type ApiResult<T> = Result<T, Problem>;

/// Bytes read from disk per chunk of a response.
const CHUNK: usize = 64 * 1024;

/// The storage and the key of call `raw`'s recording, within `tenant`.
fn locate(
    state: &AppState,
    tenant: TenantId,
    raw: &str,
) -> Result<(std::sync::Arc<dyn Recordings>, RecordingKey), Problem> {
    let call: CallId = raw.parse().map_err(|_| Problem::not_found("recording"))?;
    let key = RecordingKey::new(&tenant.to_string(), &call.to_string())
        .ok_or_else(|| Problem::not_found("recording"))?;
    let store = state
        .engine
        .recordings()
        .cloned()
        .ok_or_else(|| Problem::not_found("recording"))?;
    Ok((store, key))
}

/// Runs a storage call off the async threads; its failure is a 500.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> maskline_media::Result<T> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Problem::internal())?
        .map_err(|e| {
            tracing::error!(error = %e, "recording storage failed");
            Problem::internal()
        })
}

/// Sets `recording` on the CDRs that have one.
pub(crate) async fn attach(state: &AppState, tenant: TenantId, views: &mut [CallView]) {
    let Some(store) = state.engine.recordings().cloned() else {
        return;
    };
    let keys: Vec<Option<RecordingKey>> = views
        .iter()
        .map(|v| RecordingKey::new(&tenant.to_string(), &v.id))
        .collect();
    let lens = tokio::task::spawn_blocking(move || {
        keys.iter()
            .map(|k| k.as_ref().and_then(|k| store.len(k).ok().flatten()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (view, len) in views.iter_mut().zip(lens) {
        if let Some(len) = len {
            let duration_ms = len.saturating_sub(44) / 4 * 1000 / 8000;
            view.recording = Some(RecordingView::new(&view.id, duration_ms));
        }
    }
}

#[utoipa::path(get, path = "/v1/calls/{id}/recording", tag = "calls",
    params(("id" = String, Path, description = "The call's id (its CDR's)")),
    responses(
        (status = 200, description = "The recording: WAV, 8 kHz, 16-bit, two channels (caller left, callee right)", content_type = "audio/wav"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn get_recording(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
) -> ApiResult<Response> {
    let (store, key) = locate(&state, tenant, &raw)?;
    let opened = blocking(move || store.open(&key)).await?;
    let Some(recording) = opened else {
        return Err(Problem::not_found("recording"));
    };
    let len = recording.len;
    let mut reader = recording.reader;
    // A recording can be long: it is streamed, a chunk at a time.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let mut buf = vec![0u8; CHUNK.min(left as usize)];
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/v1/calls/{id}/recording", tag = "calls",
    params(("id" = String, Path, description = "The call's id (its CDR's)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn delete_recording(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
) -> ApiResult<StatusCode> {
    let (store, key) = locate(&state, tenant, &raw)?;
    let deleted = blocking(move || store.delete(&key)).await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found("recording"))
    }
}

/// Deletes the recordings of every CDR of `tenant` naming `party` (its
/// erasure, before the CDRs lose the number); how many there were.
pub(crate) async fn delete_party_recordings(
    state: &AppState,
    tenant: TenantId,
    party: maskline_core::Number,
) -> Result<usize, Problem> {
    let Some(store) = state.engine.recordings().cloned() else {
        return Ok(0);
    };
    let filter = maskline_engine::store::CallFilter {
        party: Some(party),
        ..Default::default()
    };
    let mut keys = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .engine
            .calls(
                tenant,
                &filter,
                maskline_engine::store::Page { after, limit: 1000 },
            )
            .await?;
        keys.extend(
            page.iter()
                .filter_map(|c| RecordingKey::new(&tenant.to_string(), &c.id.to_string())),
        );
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.id),
            _ => break,
        }
    }
    blocking(move || {
        let mut deleted = 0;
        for key in &keys {
            deleted += usize::from(store.delete(key)?);
        }
        Ok(deleted)
    })
    .await
}

#[utoipa::path(delete, path = "/v1/parties/{number}", tag = "calls",
    params(("number" = String, Path, description = "The party's real number")),
    responses(
        (status = 204, description = "Erased: the party's ended bindings, their events and texts, and its CDRs' recordings are gone; its CDRs keep only its mask"),
        (status = 400, description = "Not a phone number (`invalid_number`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn erase_party(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
) -> ApiResult<StatusCode> {
    let party = crate::handlers::number(&state, &raw, "number")?;
    let recordings = delete_party_recordings(&state, tenant, party).await?;
    state.engine.erase_party(tenant, party).await?;
    tracing::info!(%tenant, party = %party.masked(), recordings, "party erased");
    Ok(StatusCode::NO_CONTENT)
}
