//! Voice prompts, in an owner's settings: what each name plays for the
//! tenant (its own recording, or the built-in Mandarin and English ones),
//! to listen to, replace with a WAV file, or set back to the built-in one.
//! The same engine calls as `PUT`/`DELETE /v1/prompts/{name}`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maskline_core::TenantId;
use maskline_engine::{PromptInfo, PromptSource};
use maskline_media::Error as MediaError;
use maskline_media::prompts::{Language, PromptName, builtin_wav};
use maskline_media::wav::{WavFault, prompt_wav};
use serde::Deserialize;

use super::settings::{Said, settings_page};
use super::{
    CsrfForm, MultipartBody, Peer, TenantParam, Upload, audit, failed, form, href, manager_scope,
    manager_write, not_found, upload,
};
use crate::ConsoleState;
use crate::auth::Session;
use crate::i18n::{Lang, Text};

/// One prompt name as the settings show it.
pub struct PromptRow {
    pub name: &'static str,
    pub label: &'static str,
    /// The tenant's own recording plays (else the built-in ones).
    pub own: bool,
    pub since: String,
    pub length: String,
    /// Where to listen to what plays: the tenant's, or Mandarin and English.
    pub own_src: String,
    pub zh_src: String,
    pub en_src: String,
}

pub fn label(t: &Text, name: PromptName) -> &'static str {
    match name {
        PromptName::EnterExtension => t.prompt_enter_extension,
        PromptName::InvalidExtension => t.prompt_invalid_extension,
        PromptName::Expired => t.prompt_expired,
        PromptName::NoBinding => t.prompt_no_binding,
        PromptName::Forbidden => t.prompt_forbidden,
        PromptName::PreConnect => t.prompt_pre_connect,
        PromptName::CalleeWhisper => t.prompt_callee_whisper,
        PromptName::LastMinute => t.prompt_last_minute,
        PromptName::RecordingNotice => t.prompt_recording_notice,
    }
}

/// Every prompt name, in the API's order, for the tenant.
pub fn rows(
    state: &ConsoleState,
    tenant: TenantId,
    tenant_param: &str,
    lang: Lang,
) -> Vec<PromptRow> {
    let t = lang.text();
    let src = |name: PromptName, play: &str| {
        href(
            &format!("/console/prompts/{}", name.as_str()),
            &[
                ("play", play.to_owned()),
                ("tenant", tenant_param.to_owned()),
            ],
        )
    };
    state
        .engine
        .prompts(tenant)
        .iter()
        .map(|p: &PromptInfo| {
            let own = p.source == PromptSource::Tenant;
            PromptRow {
                name: p.name.as_str(),
                label: label(t, p.name),
                own,
                since: p.updated_at.map(|at| lang.time(at)).unwrap_or_default(),
                length: format!("{:.1} {}", p.duration_ms as f64 / 1000.0, t.seconds_short),
                own_src: if own {
                    src(p.name, "own")
                } else {
                    String::new()
                },
                zh_src: src(p.name, "zh"),
                en_src: src(p.name, "en"),
            }
        })
        .collect()
}

#[derive(Deserialize, Default)]
pub struct PlayQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    play: String,
}

/// `GET /console/prompts/{name}?play=own|zh|en`: the WAV to listen to (the
/// tenant's own recording, or a built-in one), for an owner or an admin.
pub async fn play_prompt(
    State(state): State<ConsoleState>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<PlayQuery>,
) -> Response {
    let scope = match manager_scope(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let (Some(tenant), Some(name)) = (scope.tenant, PromptName::parse(&name)) else {
        return not_found(&session).await;
    };
    let wav: Vec<u8> = match (q.play.as_str(), Language::parse(&q.play)) {
        ("own", _) => match state.engine.prompt(tenant, name) {
            Some(p) => prompt_wav(p.samples()),
            None => return not_found(&session).await,
        },
        (_, Some(language)) => builtin_wav(name, language).to_vec(),
        _ => return not_found(&session).await,
    };
    (
        [
            (header::CONTENT_TYPE, "audio/wav"),
            // A tenant's recording changes under the same address.
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        Body::from(wav),
    )
        .into_response()
}

/// Why a WAV file was refused, in the user's language.
fn wav_refusal(lang: Lang, e: &MediaError) -> String {
    let t = lang.text();
    match e {
        MediaError::Wav(fault) => match *fault {
            WavFault::UnsupportedFormat(_) | WavFault::UnsupportedBitsPerSample { .. } => {
                t.wav_encoding.to_owned()
            }
            WavFault::UnsupportedSampleRate(rate) => {
                t.wav_rate.replace("{}", &lang.int(u64::from(rate)))
            }
            WavFault::UnsupportedChannels(n) => t.wav_channels.replace("{}", &n.to_string()),
            WavFault::TooLarge { .. } => t.wav_too_long.to_owned(),
            WavFault::Empty => t.wav_empty.to_owned(),
            WavFault::NotRiff
            | WavFault::NotWave
            | WavFault::Truncated { .. }
            | WavFault::MissingFormat
            | WavFault::MissingData
            | WavFault::FormatChunkSize(_)
            | WavFault::InconsistentFormat
            | WavFault::TooMuchMetadata
            | WavFault::PartialFrame { .. } => t.wav_unreadable.to_owned(),
        },
        _ => t.wav_unreadable.to_owned(),
    }
}

/// `POST /console/prompts/{name}` (multipart: `csrf`, `file`): the
/// tenant's WAV plays for `name` from now on.
pub async fn put_prompt(
    State(state): State<ConsoleState>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    multipart: MultipartBody,
) -> Response {
    let Upload {
        csrf,
        file,
        too_large,
    } = upload(multipart).await;
    let (scope, tenant) =
        match manager_write(&state, &session, csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let Some(name) = PromptName::parse(&name) else {
        return not_found(&session).await;
    };
    let lang = session.lang.lang;
    let t = lang.text();
    let refused = |scope, error: String| {
        settings_page(
            &state,
            &session,
            scope,
            Said::error(error),
            StatusCode::BAD_REQUEST,
        )
    };
    let file = match file {
        _ if too_large => return refused(scope, t.file_too_large.to_owned()),
        Some(f) if !f.is_empty() => f,
        _ => return refused(scope, t.wav_missing.to_owned()),
    };
    match state.engine.put_prompt(tenant, name, &file).await {
        Ok(_) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/prompts/{name}",
                name.as_str().to_owned(),
                StatusCode::OK,
                peer.0,
            );
            let notice = format!("{} {}", t.prompt_replaced, label(t, name));
            settings_page(
                &state,
                &session,
                scope,
                Said::notice(notice),
                StatusCode::OK,
            )
        }
        Err(maskline_engine::Error::InvalidWav(e)) => refused(scope, wav_refusal(lang, &e)),
        Err(e) => failed(&session, &e),
    }
}

/// `POST /console/prompts/{name}/revert`: the built-in prompt plays again.
pub async fn revert_prompt(
    State(state): State<ConsoleState>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: CsrfForm = form(&body);
    let (scope, tenant) =
        match manager_write(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let Some(name) = PromptName::parse(&name) else {
        return not_found(&session).await;
    };
    let lang = session.lang.lang;
    let t = lang.text();
    match state.engine.delete_prompt(tenant, name).await {
        Ok(reverted) => {
            if reverted {
                audit(
                    &state,
                    &session,
                    tenant,
                    "POST /console/prompts/{name}/revert",
                    name.as_str().to_owned(),
                    StatusCode::OK,
                    peer.0,
                );
            }
            // Reverted now or before: the built-in one plays either way.
            let notice = format!("{} {}", t.prompt_reverted, label(t, name));
            settings_page(
                &state,
                &session,
                scope,
                Said::notice(notice),
                StatusCode::OK,
            )
        }
        Err(e) => failed(&session, &e),
    }
}
