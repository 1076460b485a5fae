//! Runs: the list with its filters and paging, one run's page (spec,
//! timeline, outcome, redacted log followed live), the log's download, and
//! cancelling.

use super::error::PageError;
use super::page::{self, Section, argv_list, command, empty, time};
use super::session::{NoFields, Posted, Viewer};
use crate::follow::{Follow, Followed};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use maud::{Markup, html};
use sealrun_control::{Action, Member, RunFilter};
use sealrun_wire::log::{LogChunk, LogEvent, StreamKind};
use sealrun_wire::run::{RunSource, RunStatus};
use sealrun_wire::text::utc_day_start;
use serde::Deserialize;
use serde_json::json;

/// Runs a list page shows.
const PAGE_RUNS: u32 = 50;
/// Output a run's page shows inline; the rest is in the download.
const INLINE_LOG_BYTES: usize = 1024 * 1024;

/// The runs list's filters, as the filter form sends them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    target: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    submitter: String,
    #[serde(default)]
    source: String,
    /// `YYYY-MM-DD`, UTC.
    #[serde(default)]
    since: String,
    /// `YYYY-MM-DD`, UTC: runs of that day included.
    #[serde(default)]
    until: String,
    #[serde(default)]
    before: String,
}

/// Unix milliseconds of midnight UTC starting `date` (`YYYY-MM-DD`).
fn day_start_ms(date: &str) -> Result<i64, PageError> {
    utc_day_start(date)
        .ok_or_else(|| PageError::bad_request(format!("{date:?} is not a date (YYYY-MM-DD)")))
}

/// `GET /ui/runs`.
pub(crate) async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let filter = RunFilter {
        status: Some(q.status.clone()),
        target: Some(q.target.clone()),
        // One more than shown tells whether there is an older page.
        limit: Some(PAGE_RUNS + 1),
        before: Some(q.before.clone()),
        submitter: Some(q.submitter.clone()),
        source: Some(q.source.clone()),
        since_ms: (!q.since.is_empty())
            .then(|| day_start_ms(&q.since))
            .transpose()?,
        until_ms: (!q.until.is_empty())
            .then(|| day_start_ms(&q.until).map(|t| t + 86_400_000))
            .transpose()?,
    };
    let mut runs = state
        .control
        .list_runs(&Member::from(&viewer.user), filter)
        .await?;
    let older = runs.len() > PAGE_RUNS as usize;
    runs.truncate(PAGE_RUNS as usize);
    let older_href = older.then(|| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("target", &q.target),
            ("status", &q.status),
            ("submitter", &q.submitter),
            ("source", &q.source),
            ("since", &q.since),
            ("until", &q.until),
        ] {
            if !v.is_empty() {
                query.append_pair(k, v);
            }
        }
        if let Some(last) = runs.last() {
            query.append_pair("before", &last.id);
        }
        format!("/ui/runs?{}", query.finish())
    });
    let filtered = [
        &q.target,
        &q.status,
        &q.submitter,
        &q.source,
        &q.since,
        &q.until,
    ]
    .iter()
    .any(|v| !v.is_empty());
    let content = html! {
        form method="get" action="/ui/runs" class="filters" aria-label="Filter runs" {
            label { "Target" input name="target" value=(q.target) size="12"; }
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in RunStatus::ALL {
                        option value=(s.as_str()) selected[q.status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "Submitter" input name="submitter" value=(q.submitter) size="12"; }
            label { "Source"
                select name="source" {
                    option value="" { "any" }
                    @for s in RunSource::ALL {
                        option value=(s.as_str()) selected[q.source == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "From (UTC)" input type="date" name="since" value=(q.since); }
            label { "To (UTC)" input type="date" name="until" value=(q.until); }
            button type="submit" { "Filter" }
            @if filtered { a href="/ui/runs" { "Clear" } }
        }
        @if runs.is_empty() {
            (empty(if filtered || !q.before.is_empty() { "No runs match these filters." } else { "No runs yet. Submit one with sealrun run --target TARGET -- COMMAND." }))
        } @else {
            div class="scroll" {
                table class="runs" {
                    thead { tr {
                        th scope="col" { "Run" } th scope="col" { "Target" } th scope="col" { "Command" }
                        th scope="col" { "Status" } th scope="col" { "Exit" } th scope="col" { "Submitter" }
                        th scope="col" { "Source" } th scope="col" { "Submitted" }
                    } }
                    tbody {
                        @for run in &runs {
                            tr {
                                td { a href={"/ui/runs/" (run.id)} { code { (run.id) } } }
                                td { (run.target) }
                                td { (command(&run.argv)) }
                                td { (page::status(run.status)) }
                                td { @if let Some(code) = run.exit_code { (code) } @else { "–" } }
                                td { (run.submitter) }
                                td { (run.source.as_str()) }
                                td { (time(run.created_at_ms)) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(href) = older_href {
            p { a href=(href) rel="next" { "Older runs →" } }
        }
    };
    Ok(page::page(&viewer, Section::Runs, "Runs", content))
}

/// Stored output from the start, in order, up to `INLINE_LOG_BYTES`: the
/// chunks, the `seq` after them, and whether that is all there is for now.
async fn stored_log(
    state: &AppState,
    who: &Member,
    id: &str,
    limit: usize,
) -> Result<(Vec<LogChunk>, u64, bool), PageError> {
    let mut chunks = Vec::new();
    let mut bytes = 0;
    let mut next = 0;
    loop {
        let page = state.control.log_page(who, id.to_owned(), next).await?;
        let got = !page.chunks.is_empty();
        for c in page.chunks {
            bytes += c.data.0.len();
            chunks.push(c);
        }
        next = page.next_seq;
        if !got || page.end.is_some() {
            return Ok((chunks, next, true));
        }
        if bytes >= limit {
            return Ok((chunks, next, false));
        }
    }
}

/// Chunks as text, each run of one stream decoded as UTF-8 together (a
/// character split between two chunks stays whole).
fn log_markup(chunks: &[LogChunk]) -> Markup {
    let mut runs: Vec<(StreamKind, Vec<u8>)> = Vec::new();
    for c in chunks {
        match runs.last_mut() {
            Some((stream, bytes)) if *stream == c.stream => bytes.extend_from_slice(&c.data.0),
            _ => runs.push((c.stream, c.data.0.clone())),
        }
    }
    html! {
        @for (stream, bytes) in &runs {
            span class=(stream_class(*stream)) { (String::from_utf8_lossy(bytes)) }
        }
    }
}

fn stream_class(stream: StreamKind) -> &'static str {
    match stream {
        StreamKind::Stdout => "out",
        StreamKind::Stderr => "err",
        StreamKind::System => "sys",
    }
}

/// `GET /ui/runs/{id}`.
pub(crate) async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let who = Member::from(&viewer.user);
    let run = state.control.run(&who, id.clone()).await?;
    // The approval request, for runs that had one (the timeline shows it);
    // a run without one has none to show.
    let approval = state.control.approval(&who, id.clone()).await.ok();
    let (chunks, next, complete) = stored_log(&state, &who, &id, INLINE_LOG_BYTES).await?;
    let live = !run.status.is_terminal();
    let may_cancel = Action::CancelRuns.allows(viewer.user.role) && live;
    let title = format!("Run {}", run.id);
    let content = html! {
        section aria-labelledby="spec" {
            h2 id="spec" { "What runs" }
            dl class="facts" {
                dt { "Target" } dd { (run.target) }
                dt { "Command" } dd { (command(&run.argv)) (argv_list(&run.argv)) }
                dt { "Image" } dd { code { (run.image) } }
                dt { "Secrets (names)" } dd {
                    @if run.secrets.is_empty() { "none" } @else {
                        @for (i, s) in run.secrets.iter().enumerate() { @if i > 0 { ", " } code { (s) } }
                    }
                }
                @if let Some(rb) = &run.runbook {
                    dt { "Runbook" } dd { (rb) @if let Some(v) = run.runbook_version { " v" (v) } }
                }
                dt { "Timeout" } dd { (run.timeout_secs) " s" }
                dt { "Submitted by" } dd { (run.submitter) " (" (run.source.as_str()) ")" }
            }
        }
        section aria-labelledby="outcome" {
            h2 id="outcome" { "Status" }
            dl class="facts" {
                dt { "Status" } dd id="run-status" { (page::status(run.status)) }
                dt { "Exit code" } dd id="exit-code" { @if let Some(c) = run.exit_code { (c) } @else { "–" } }
                @if let Some(e) = &run.error { dt { "Error" } dd id="run-error" { (e) } }
                dt { "Agent" } dd { @if let Some(a) = &run.agent { code { (a) } } @else { "–" } }
                dt { "Redactions" } dd {
                    @if let Some(r) = run.redactions {
                        (r.stdout) " in stdout, " (r.stderr) " in stderr"
                        @if r.stdout + r.stderr > 0 { " " strong { "(the command printed a secret)" } }
                    } @else { "counted when the run ends" }
                }
                dt { "Agent's report" } dd {
                    @if run.report.is_some() { "signed by the target's agent (" code { "sealrun runs show " (run.id) } " verifies it)" }
                    @else if live { "signed when the run ends (by agents that sign reports)" }
                    @else { "none" }
                }
            }
            h3 { "Timeline" }
            ol class="timeline" {
                li { "Submitted " (time(run.created_at_ms)) " by " (run.submitter) }
                @if let Some(a) = &approval {
                    @for given in &a.approvals {
                        li { "Approved " (time(given.at_ms)) " by " (given.user)
                            @if let Some(c) = &given.comment { ": “" (c) "”" } }
                    }
                    @if let Some(r) = &a.rejection {
                        li { "Rejected " (time(r.at_ms)) " by " (r.user) ": “" (r.reason) "”" }
                    }
                }
                @if let Some(t) = run.started_at_ms { li { "Started " (time(t)) } }
                @if let Some(t) = run.finished_at_ms { li { "Finished " (time(t)) " (" (run.status.as_str()) ")" } }
            }
            @if may_cancel {
                form method="post" action={"/ui/runs/" (run.id) "/cancel"} {
                    input type="hidden" name="csrf" value=(viewer.csrf());
                    button type="submit" class="danger" { "Cancel this run" }
                }
            }
        }
        section aria-labelledby="output" {
            h2 id="output" { "Output (redacted)" }
            p class="meta" {
                (run.log_bytes) " bytes stored"
                @if run.log_truncated { ", cut at the per-run limit" }
                " · " a href={"/ui/runs/" (run.id) "/log"} download { "Download the log" }
                @if live { " · " span id="live" aria-live="polite" { "following live" } }
            }
            @if !complete {
                p class="meta" { "Showing the first " (INLINE_LOG_BYTES / 1024) " KiB; the download has all of it." }
            }
            pre id="log" class="log" tabindex="0" aria-label="Run output"
                data-events=[live.then(|| format!("/ui/runs/{}/events?after={next}", run.id))] {
                (log_markup(&chunks))
            }
            @if chunks.is_empty() && !live { (empty("The command printed nothing.")) }
        }
    };
    Ok(page::page(&viewer, Section::Runs, &title, content))
}

/// `?after=` of the live log.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct After {
    #[serde(default)]
    after: u64,
}

/// An event's line for a chunk: its seq, stream and bytes (base64, decoded
/// by the page so a character split between chunks stays whole).
fn chunk_event(out: &mut String, chunk: &LogChunk) {
    let data = json!({
        "seq": chunk.seq,
        "stream": stream_class(chunk.stream),
        "b64": base64::engine::general_purpose::STANDARD.encode(&chunk.data.0),
    });
    out.push_str(&format!(
        "id: {}\nevent: chunk\ndata: {data}\n\n",
        chunk.seq
    ));
}

/// `GET /ui/runs/{id}/events`: the run's output from `after` as server-sent
/// events (`chunk`, then `end` with the outcome), until it ends. A browser
/// that reconnects sends `Last-Event-ID` (the last chunk's seq) and gets
/// what follows it.
pub(crate) async fn events(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Some(q.after), |seq| seq.checked_add(1))
        .filter(|&a| i64::try_from(a).is_ok())
        .ok_or_else(|| PageError::bad_request("the log position is out of range"))?;
    let follow = Follow::start(state, viewer.user, id, after).await?;
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let text = match f.next().await? {
            Followed::Events(events) => {
                let mut out = String::new();
                for event in &events {
                    match event {
                        LogEvent::Chunk(c) => chunk_event(&mut out, c),
                        LogEvent::End(end) => {
                            let data = json!({
                                "status": end.status.as_str(),
                                "exit_code": end.exit_code,
                                "error": end.error,
                            });
                            out.push_str(&format!("event: end\ndata: {data}\n\n"));
                        }
                    }
                }
                out
            }
            Followed::KeepAlive => ": keep-alive\n\n".to_owned(),
        };
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(text)), f))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /ui/runs/{id}/log`: the whole stored (redacted) output as a file.
pub(crate) async fn download(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let who = Member::from(&viewer.user);
    let (chunks, _, _) = stored_log(&state, &who, &id, usize::MAX).await?;
    let mut body = Vec::with_capacity(chunks.iter().map(|c| c.data.0.len()).sum());
    for c in &chunks {
        body.extend_from_slice(&c.data.0);
    }
    // Run ids are hex: safe in a header as they are.
    let disposition = format!(
        "attachment; filename=\"sealrun-run-{}.log\"",
        run_file_id(&id)
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// `id` with anything but letters, digits, `-` and `_` dropped (it was found
/// as a run, so it is one; this only keeps the header well-formed).
fn run_file_id(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect()
}

/// `POST /ui/runs/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, .. }: Posted<NoFields>,
) -> Result<Response, PageError> {
    let done = state
        .control
        .cancel_run(&Member::from(&viewer.user), id)
        .await?;
    Ok(Redirect::to(&format!("/ui/runs/{}", done.run.id)).into_response())
}
