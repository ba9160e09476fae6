//! Call recordings: each call's two-channel WAV (caller left, callee
//! right), listed on its CDR, served and deleted here. The files are the
//! engine's `Recordings`; reading them runs off the async threads.

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
    let ids: Vec<CallId> = views.iter().filter_map(|v| v.id.parse().ok()).collect();
    if ids.len() != views.len() {
        return;
    }
    let durations = state.engine.recording_durations(tenant, &ids).await;
    for (view, duration_ms) in views.iter_mut().zip(durations) {
        if let Some(duration_ms) = duration_ms {
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
    let call: CallId = raw.parse().map_err(|_| Problem::not_found("recording"))?;
    let Some(recording) = state.engine.recording(tenant, call).await? else {
        return Err(Problem::not_found("recording"));
    };
    let (len, mut rx) = (recording.len, recording.chunks);
    // A recording can be long: it is streamed, a chunk at a time.
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|c| c.map(|c| c.map(Bytes::from)))
    });
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
