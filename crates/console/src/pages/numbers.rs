//! Numbers: the tenant's pool with each number's use; an owner imports a
//! CSV file of numbers (all or nothing) and retires idle ones.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maskline_core::{Area, Number, Region};
use maskline_engine::NumberEntry;
use maskline_engine::store::Page;
use serde::Deserialize;

use super::{
    Chrome, CsrfForm, MultipartBody, PAGE_ROWS, Peer, Scope, TenantOption, TenantParam, Upload,
    audit, failed, form, href, manager_write, more, not_found, render, upload,
};
use crate::ConsoleState;
use crate::auth::Session;
use crate::i18n::Text;

/// Most numbers one file may hold.
pub const MAX_IMPORT_LINES: usize = 100_000;

struct NumberRow {
    number: String,
    area: String,
    in_use: bool,
    bindings: u32,
    created: String,
}

#[derive(Template)]
#[template(path = "numbers.html")]
struct NumbersPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    tenant_query: String,
    may_manage: bool,
    notice: String,
    error: String,
    rows: Vec<NumberRow>,
    paged: bool,
    first_href: String,
    next_href: String,
}

#[derive(Deserialize, Default)]
pub struct NumbersQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    after: String,
    /// Set by the redirect after a retirement.
    #[serde(default)]
    retired: String,
}

pub async fn numbers(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<NumbersQuery>,
) -> Response {
    let scope = match Scope::of(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let notice = if q.retired.is_empty() {
        String::new()
    } else {
        format!("{} {}", session.lang.lang.text().number_retired, q.retired)
    };
    let page = Listed {
        after: q.after,
        notice,
        error: String::new(),
    };
    numbers_page(&state, &session, scope, page, StatusCode::OK).await
}

/// What a numbers page says besides the list.
struct Listed {
    after: String,
    notice: String,
    error: String,
}

async fn numbers_page(
    state: &ConsoleState,
    session: &Session,
    scope: Scope,
    listed: Listed,
    status: StatusCode,
) -> Response {
    let lang = session.lang.lang;
    let t = lang.text();
    let mut rows = Vec::new();
    let mut next_href = String::new();
    if let Some(tenant) = scope.tenant {
        let after = Number::parse(&listed.after, state.region).ok();
        let page = Page {
            after,
            limit: PAGE_ROWS + 1,
        };
        let mut found = match state.engine.numbers(tenant, page).await {
            Ok(f) => f,
            Err(e) => return failed(session, &e),
        };
        if let Some((last, _)) = more(&mut found) {
            next_href = href(
                "/console/numbers",
                &[
                    ("tenant", scope.param()),
                    ("after", last.number.to_string()),
                ],
            );
        }
        rows = found
            .iter()
            .map(|(n, usage)| NumberRow {
                number: n.number.to_string(),
                area: n
                    .area
                    .as_ref()
                    .map_or_else(|| t.no_area.to_owned(), ToString::to_string),
                in_use: usage.bindings > 0,
                bindings: usage.bindings,
                created: lang.time(n.created_at),
            })
            .collect();
    }
    let page = NumbersPage {
        c: Chrome::signed_in(session, "numbers", &scope),
        picked: scope.tenant.is_some(),
        tenant_query: scope.query(),
        may_manage: session.may_manage(),
        notice: listed.notice,
        error: listed.error,
        paged: !listed.after.is_empty(),
        first_href: href("/console/numbers", &[("tenant", scope.param())]),
        next_href,
        rows,
        tenants: scope.options,
    };
    render(status, &page, session.lang, session.secure)
}

/// Why a line of a file is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LineFault {
    Number,
    Area,
}

/// The numbers of a CSV file: a number and an optional area a line, a
/// header line (`number,area`) and blank lines skipped, fields trimmed and
/// unquoted. The first line that does not read is the error, by number
/// (from 1).
pub fn parse_csv(text: &str, region: Region) -> Result<Vec<NumberEntry>, (usize, LineFault)> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split(',').map(|f| f.trim().trim_matches('"').trim());
        let first = fields.next().unwrap_or("");
        let area = fields.next().unwrap_or("");
        if first.is_empty() && area.is_empty() {
            continue;
        }
        if i == 0 && first.eq_ignore_ascii_case("number") {
            continue;
        }
        let number = Number::parse(first, region).map_err(|_| (i + 1, LineFault::Number))?;
        let area = match area {
            "" => None,
            a => Some(Area::new(a).map_err(|_| (i + 1, LineFault::Area))?),
        };
        entries.push(NumberEntry { number, area });
    }
    Ok(entries)
}

fn fault_text(t: &Text, line: usize, fault: &LineFault) -> String {
    let what = match fault {
        LineFault::Number => t.invalid_number,
        LineFault::Area => t.invalid_area,
    };
    format!("{}{what}", t.csv_line.replace("{}", &line.to_string()))
}

/// `POST /console/numbers` (multipart: `csrf`, `file`): the file's numbers
/// join the pool all together or not at all.
pub async fn import(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
    peer: Peer,
    multipart: MultipartBody,
) -> Response {
    let lang = session.lang.lang;
    let t = lang.text();
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
    let refused = |scope, error: String| {
        let listed = Listed {
            after: String::new(),
            notice: String::new(),
            error,
        };
        numbers_page(&state, &session, scope, listed, StatusCode::BAD_REQUEST)
    };
    if too_large {
        return refused(scope, t.file_too_large.to_owned()).await;
    }
    let Some(text) = file.and_then(|f| String::from_utf8(f.to_vec()).ok()) else {
        return refused(scope, t.csv_unreadable.to_owned()).await;
    };
    let entries = match parse_csv(&text, state.region) {
        Ok(e) if e.is_empty() => return refused(scope, t.csv_empty.to_owned()).await,
        Ok(e) if e.len() > MAX_IMPORT_LINES => {
            return refused(scope, t.csv_too_long.to_owned()).await;
        }
        Ok(e) => e,
        Err((line, fault)) => return refused(scope, fault_text(t, line, &fault)).await,
    };
    match state.engine.import_numbers(tenant, entries).await {
        Ok(outcome) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/numbers",
                format!("{} numbers", outcome.imported),
                StatusCode::CREATED,
                peer.0,
            );
            let notice = format!(
                "{} {}{}{} {}",
                t.numbers_imported,
                lang.int(outcome.imported as u64),
                t.list_sep,
                t.numbers_existing,
                lang.int(outcome.existing as u64)
            );
            let listed = Listed {
                after: String::new(),
                notice,
                error: String::new(),
            };
            numbers_page(&state, &session, scope, listed, StatusCode::CREATED).await
        }
        Err(maskline_engine::Error::ImportRefused { entry, reason, .. }) => {
            let what = match reason {
                maskline_core::Error::NumberTaken => t.number_taken,
                _ => t.invalid_number,
            };
            // Entries count from 0, the file's lines of numbers from 1.
            let error = format!(
                "{}{what}",
                t.csv_number.replace("{}", &(entry + 1).to_string())
            );
            refused(scope, error).await
        }
        Err(e) => failed(&session, &e),
    }
}

/// `POST /console/numbers/{number}/retire`: out of the pool, once no live
/// binding holds it.
pub async fn retire(
    State(state): State<ConsoleState>,
    session: Session,
    Path(raw): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: axum::body::Bytes,
) -> Response {
    let f: CsrfForm = form(&body);
    let (scope, tenant) =
        match manager_write(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let lang = session.lang.lang;
    let t = lang.text();
    let Ok(number) = Number::parse(&raw, state.region) else {
        return not_found(&session).await;
    };
    match state.engine.retire_number(tenant, number).await {
        Ok(()) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/numbers/{number}/retire",
                number.to_string(),
                StatusCode::OK,
                peer.0,
            );
            Redirect::to(&href(
                "/console/numbers",
                &[("tenant", scope.param()), ("retired", number.to_string())],
            ))
            .into_response()
        }
        Err(maskline_engine::Error::Domain(maskline_core::Error::NumberNotFound)) => {
            not_found(&session).await
        }
        Err(maskline_engine::Error::Domain(maskline_core::Error::NumberInUse)) => {
            let listed = Listed {
                after: String::new(),
                notice: String::new(),
                error: t.number_in_use.to_owned(),
            };
            numbers_page(&state, &session, scope, listed, StatusCode::CONFLICT).await
        }
        Err(e) => failed(&session, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_reads_as_numbers_with_areas_or_names_its_first_bad_line() {
        let cn: Region = "CN".parse().unwrap();
        let ok = parse_csv(
            "number,area\n+8657100000001,hz\n\n\"057100000002\" , \n+8613900000003,\"bj\"\r\n",
            cn,
        )
        .unwrap();
        let got: Vec<(String, Option<String>)> = ok
            .iter()
            .map(|e| {
                (
                    e.number.to_string(),
                    e.area.as_ref().map(ToString::to_string),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("+8657100000001".into(), Some("hz".into())),
                ("+8657100000002".into(), None),
                ("+8613900000003".into(), Some("bj".into())),
            ]
        );
        assert_eq!(parse_csv("", cn).unwrap().len(), 0);
        assert_eq!(
            parse_csv("+8657100000001\nnot a number\n", cn).unwrap_err(),
            (2, LineFault::Number)
        );
        assert_eq!(
            parse_csv("+8657100000001,no spaces allowed\n", cn).unwrap_err(),
            (1, LineFault::Area)
        );
        // A header is only a header on the first line.
        assert_eq!(
            parse_csv("+8657100000001\nnumber,area\n", cn).unwrap_err(),
            (2, LineFault::Number)
        );
    }
}
