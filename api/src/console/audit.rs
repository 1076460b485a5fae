//! The audit trail: the chain's verification and head hash, entries with
//! filters, and the JSONL export that `sealrun audit verify --file` checks
//! offline.

use super::error::PageError;
use super::page::{self, Section, empty, time};
use super::session::Viewer;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::html;
use sealrun_control::AuditScope;
use serde::Deserialize;

/// Entries one page shows.
const PAGE_ENTRIES: u64 = 100;
/// Entries one read of the store brings (the most it gives).
const READ_ENTRIES: u32 = 1000;

/// The audit page's filters and position.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    /// Entries with `seq > after`; absent: the latest page.
    #[serde(default)]
    after: Option<u64>,
    /// Only entries whose action starts with this (`run.`, `token.issued`).
    #[serde(default)]
    action: String,
    /// Only entries whose actor or subject contains this.
    #[serde(default)]
    who: String,
}

/// `GET /ui/audit`.
pub(crate) async fn trail(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    if q.after.is_some_and(|a| i64::try_from(a).is_err()) {
        return Err(PageError::bad_request("the entry position is out of range"));
    }
    let verdict = state
        .control
        .audit_verify(&viewer.user, AuditScope::SinceCheckpoint)
        .await?;
    let filtering = !q.action.is_empty() || !q.who.is_empty();
    let start = q
        .after
        .unwrap_or_else(|| verdict.entries.saturating_sub(PAGE_ENTRIES));
    // Filters look through up to a read's worth of entries from `start`.
    let window = if filtering {
        READ_ENTRIES
    } else {
        PAGE_ENTRIES as u32
    };
    let page_read = state
        .control
        .audit_page(&viewer.user, start, Some(window))
        .await?;
    let entries: Vec<_> = page_read
        .entries
        .iter()
        .filter(|e| q.action.is_empty() || e.action.starts_with(&q.action))
        .filter(|e| q.who.is_empty() || e.actor.contains(&q.who) || e.subject.contains(&q.who))
        .collect();
    let keep = |href: &mut form_urlencoded::Serializer<'_, String>| {
        if !q.action.is_empty() {
            href.append_pair("action", &q.action);
        }
        if !q.who.is_empty() {
            href.append_pair("who", &q.who);
        }
    };
    let earlier = (start > 0).then(|| {
        let mut href = form_urlencoded::Serializer::new(String::new());
        href.append_pair(
            "after",
            &start.saturating_sub(u64::from(window)).to_string(),
        );
        keep(&mut href);
        format!("/ui/audit?{}", href.finish())
    });
    let later = (page_read.next_after < verdict.entries).then(|| {
        let mut href = form_urlencoded::Serializer::new(String::new());
        href.append_pair("after", &page_read.next_after.to_string());
        keep(&mut href);
        format!("/ui/audit?{}", href.finish())
    });
    let content = html! {
        section aria-labelledby="chain" {
            h2 id="chain" { "Chain" }
            @if verdict.ok {
                p class="ok" role="status" { "Intact: " (verdict.entries) " entries verified (hash chain re-hashed since the last verification)." }
            } @else {
                p class="error" role="alert" {
                    "BROKEN"
                    @if let Some(seq) = verdict.first_bad_seq { " at entry " (seq) }
                    @if let Some(p) = &verdict.problem { ": " (p) }
                }
            }
            p { "Head hash: " code class="digest" { (verdict.head) } }
            p { a href="/ui/audit/export" download { "Export the whole trail (JSONL)" }
                " — check it offline with " code { "sealrun audit verify --file FILE" } "." }
        }
        section aria-labelledby="entries" {
            h2 id="entries" { "Entries" }
            form method="get" action="/ui/audit" class="filters" aria-label="Filter entries" {
                label { "Action starts with" input name="action" value=(q.action) size="16" placeholder="run."; }
                label { "Actor or subject contains" input name="who" value=(q.who) size="16"; }
                button type="submit" { "Filter" }
                @if filtering { a href="/ui/audit" { "Clear" } }
            }
            @if filtering { p class="meta" { "Filtered over entries " (start + 1) " to " (page_read.next_after) "." } }
            @if entries.is_empty() { (empty("No entries here.")) } @else {
                div class="scroll" {
                    table class="audit" {
                        thead { tr {
                            th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Actor" }
                            th scope="col" { "Action" } th scope="col" { "Subject" } th scope="col" { "Detail" }
                        } }
                        tbody { @for e in &entries {
                            tr {
                                td { (e.seq) } td { (time(e.at_ms)) } td { code { (e.actor) } }
                                td { (e.action) } td { code { (e.subject) } }
                                td { details { summary { "detail" } pre { (e.detail) } } }
                            }
                        } }
                    }
                }
            }
            p class="pager" {
                @if let Some(h) = earlier { a href=(h) rel="prev" { "← Earlier" } }
                " "
                @if let Some(h) = later { a href=(h) rel="next" { "Later →" } }
            }
        }
    };
    Ok(page::page(&viewer, Section::Audit, "Audit trail", content))
}

/// `GET /ui/audit/export`: every entry, one JSON object per line, as
/// `sealrun audit export` writes them.
pub(crate) async fn export(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = state
            .control
            .audit_page(&viewer.user, after, Some(READ_ENTRIES))
            .await?;
        for e in &page.entries {
            // Serializing wire types into a Vec cannot fail.
            if serde_json::to_writer(&mut out, e).is_ok() {
                out.push(b'\n');
            }
        }
        if page.entries.len() < READ_ENTRIES as usize {
            break;
        }
        after = page.next_after;
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sealrun-audit.jsonl\"",
            ),
        ],
        out,
    )
        .into_response())
}
