//! `application/problem+json` (RFC 9457): the one place where errors become
//! HTTP. Every `code` here is part of the API contract.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maskline_core::Error as Domain;
use maskline_engine::Error as EngineError;
use serde::Serialize;
use utoipa::ToSchema;

/// A refused request. Built by handlers and extractors, rendered once.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// The request field (JSON path, query parameter or header) at fault.
    pub field: Option<String>,
    /// Seconds to wait before trying again (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ProblemBody {
    /// `urn:maskline:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable reason.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, field: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, detail).field(field)
    }

    pub fn invalid_number(field: &str) -> Problem {
        Problem::bad_request(
            "invalid_number",
            field,
            format!(
                "`{field}` is not a valid phone number (E.164, or national form of the default region)"
            ),
        )
    }

    pub fn not_found(what: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown API key (Authorization: Bearer <key>)",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to complete the request; nothing was changed",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: format!("urn:maskline:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            field: self.field,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = (self.status, json).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<Domain> for Problem {
    fn from(e: Domain) -> Problem {
        use StatusCode as S;
        let (status, code) = match e {
            Domain::InvalidNumber => (S::BAD_REQUEST, "invalid_number"),
            Domain::InvalidSender => (S::BAD_REQUEST, "invalid_sender"),
            Domain::InvalidRule => (S::BAD_REQUEST, "invalid_rule"),
            Domain::InvalidRegion(_)
            | Domain::InvalidArea
            | Domain::InvalidExtension
            | Domain::InvalidId
            | Domain::InvalidMode
            | Domain::InvalidStatus
            | Domain::InvalidEndReason
            | Domain::InvalidEventType => (S::BAD_REQUEST, "invalid_field"),
            Domain::MissingB => (S::BAD_REQUEST, "missing_b"),
            Domain::SameParty => (S::BAD_REQUEST, "same_party"),
            Domain::PartyIsVirtual => (S::UNPROCESSABLE_ENTITY, "party_is_virtual"),
            Domain::DestinationNotAllowed => (S::UNPROCESSABLE_ENTITY, "destination_not_allowed"),
            Domain::InvalidPrefix => (S::BAD_REQUEST, "invalid_field"),
            Domain::PoolExhausted => (S::CONFLICT, "pool_exhausted"),
            Domain::NumberTaken => (S::CONFLICT, "number_taken"),
            Domain::NumberNotFound => (S::NOT_FOUND, "not_found"),
            Domain::NumberInUse => (S::CONFLICT, "number_in_use"),
            Domain::PartyConflict | Domain::ModeConflict | Domain::NumberHeld => {
                (S::CONFLICT, "party_conflict")
            }
            Domain::ExtensionTaken | Domain::DuplicateBinding | Domain::CapacityExceeded => {
                (S::CONFLICT, "conflict")
            }
            Domain::BindingNotFound => (S::NOT_FOUND, "not_found"),
        };
        let field = match e {
            Domain::MissingB | Domain::SameParty => Some("b"),
            _ => None,
        };
        let p = Problem::new(status, code, e.to_string());
        match field {
            Some(f) => p.field(f),
            None => p,
        }
    }
}

impl From<EngineError> for Problem {
    fn from(e: EngineError) -> Problem {
        use StatusCode as S;
        match e {
            EngineError::Domain(d) => d.into(),
            EngineError::Store(err) => {
                tracing::error!(error = %err, "storage error");
                Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the change could not be made durable; nothing was changed, retry later",
                )
            }
            EngineError::BindingNotFound => Problem::not_found("binding"),
            EngineError::EventNotFound => Problem::not_found("event"),
            EngineError::MessageNotFound => Problem::not_found("message"),
            EngineError::MessageNotHeld => {
                Problem::new(S::CONFLICT, "message_not_held", e.to_string())
            }
            EngineError::UnknownExtension => {
                Problem::new(S::UNPROCESSABLE_ENTITY, "unknown_extension", e.to_string())
                    .field("extension")
            }
            EngineError::ReleaseBlocked(_) => {
                Problem::new(S::UNPROCESSABLE_ENTITY, "release_blocked", e.to_string())
            }
            EngineError::PartsAlreadyAssembled => {
                Problem::new(S::CONFLICT, "already_assembled", e.to_string())
            }
            EngineError::WebhookNotSet => Problem::new(
                S::NOT_FOUND,
                "webhook_not_set",
                "no webhook is set; PUT /v1/webhook first",
            ),
            EngineError::TenantNotFound => Problem::not_found("tenant"),
            EngineError::ExpiryInPast => {
                Problem::bad_request("expiry_in_past", "expires_at", e.to_string())
            }
            EngineError::ExpiryTooFar { .. } => {
                Problem::bad_request("expiry_too_far", "expires_at", e.to_string())
            }
            EngineError::BindingNotActive => {
                Problem::new(S::CONFLICT, "binding_not_active", e.to_string())
            }
            EngineError::NoBToChange(_) => {
                Problem::bad_request("invalid_field", "b", e.to_string())
            }
            EngineError::IdempotencyKeyReused => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                e.to_string(),
            )
            .field("Idempotency-Key"),
            EngineError::IdempotencyInProgress => {
                Problem::new(S::CONFLICT, "idempotency_in_progress", e.to_string())
                    .field("Idempotency-Key")
            }
            EngineError::ImportRefused {
                entry, ref reason, ..
            } => {
                let mut p: Problem = reason.clone().into();
                p.detail = format!("numbers[{entry}]: {reason}");
                p.field(format!("numbers[{entry}].number"))
            }
            EngineError::InvalidWav(ref media) => {
                let detail = match media {
                    maskline_media::Error::Wav(fault) => fault.to_string(),
                    other => other.to_string(),
                };
                Problem::new(S::UNPROCESSABLE_ENTITY, "invalid_wav", detail)
            }
            EngineError::InvalidUser { field, .. } => {
                Problem::bad_request("invalid_field", field, e.to_string())
            }
            EngineError::UserNotFound => Problem::not_found("user"),
            EngineError::EmailTaken => {
                Problem::new(S::CONFLICT, "email_taken", e.to_string()).field("email")
            }
            // Logged where it happened.
            EngineError::RecordingStorage => Problem::internal(),
        }
    }
}
