//! What runs where, read-only: targets (with their secrets' names, versions
//! and key ids; never a value or a ciphertext), runbooks and agents.

use super::error::PageError;
use super::page::{self, Section, command, empty, opt_time, time};
use super::session::Viewer;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;

/// `GET /ui/targets`.
pub(crate) async fn targets(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let targets = state.control.list_targets(&viewer.user).await?;
    let content = html! {
        @if targets.is_empty() { (empty("No targets yet: sealrun target apply -f targets.toml declares them.")) } @else {
            div class="scroll" {
                table {
                    thead { tr {
                        th scope="col" { "Target" } th scope="col" { "Pool" } th scope="col" { "Network" }
                        th scope="col" { "Image" } th scope="col" { "Key id" } th scope="col" { "Certified" } th scope="col" { "Updated" }
                    } }
                    tbody { @for t in &targets {
                        tr {
                            td { a href={"/ui/targets/" (t.spec.name)} { (t.spec.name) } }
                            td { (t.spec.pool) }
                            td { (t.spec.private_network) }
                            td { code { (t.spec.image) } }
                            td { @if let Some(k) = &t.public_key { code { (k.key_id) } } @else { "no agent key yet" } }
                            td { @if t.certificate.is_some() { "yes" } @else { "no" } }
                            td { (time(t.updated_at_ms)) }
                        }
                    } }
                }
            }
        }
    };
    Ok(page::page(&viewer, Section::Targets, "Targets", content))
}

/// `GET /ui/targets/{name}`: a target and its secrets' names.
pub(crate) async fn target(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let t = state.control.target(&viewer.user, name.clone()).await?;
    let secrets = state.control.list_secrets(&viewer.user, name).await?;
    let title = format!("Target {}", t.spec.name);
    let content = html! {
        dl class="facts" {
            dt { "Pool" } dd { (t.spec.pool) }
            dt { "Private network" } dd { (t.spec.private_network) }
            dt { "Image" } dd { code { (t.spec.image) } }
            dt { "Agent key id" } dd { @if let Some(k) = &t.public_key { code { (k.key_id) } } @else { "none yet" } }
            @if let Some(k) = &t.awaiting_key_id { dt { "Awaiting key" } dd { code { (k) } } }
            dt { "Certified by an admin" } dd { @if t.certificate.is_some() { "yes" } @else { "no" } }
            dt { "Updated" } dd { (time(t.updated_at_ms)) }
        }
        h2 { "Secrets" }
        p class="meta" { "Names, versions and the key each is sealed to. Values are sealed on the setter's machine; nobody can read them here." }
        @if secrets.is_empty() { (empty("No secrets on this target.")) } @else {
            div class="scroll" { table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Sealed to key" } th scope="col" { "Set by" } th scope="col" { "Updated" } } }
                tbody { @for s in &secrets {
                    tr { td { code { (s.name) } } td { (s.version) } td { code { (s.key_id) } } td { (s.updated_by) } td { (time(s.updated_at_ms)) } }
                } }
            } }
        }
    };
    Ok(page::page(&viewer, Section::Targets, &title, content))
}

/// `GET /ui/runbooks`.
pub(crate) async fn runbooks(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let runbooks = state.control.list_runbooks(&viewer.user).await?;
    let content = html! {
        @if runbooks.is_empty() { (empty("No runbooks yet: sealrun runbook apply -f runbooks.toml declares them.")) } @else {
            div class="scroll" { table {
                thead { tr { th scope="col" { "Runbook" } th scope="col" { "Version" } th scope="col" { "Targets" } th scope="col" { "Template" } th scope="col" { "Certified" } th scope="col" { "By" } th scope="col" { "Created" } } }
                tbody { @for r in &runbooks {
                    tr {
                        td { (r.spec.name) }
                        td { (r.version) }
                        td { @if r.spec.targets.is_empty() { "any" } @else { (r.spec.targets.join(", ")) } }
                        td { (command(&r.spec.argv)) }
                        td { @if r.certificate.is_some() { "yes" } @else { "no" } }
                        td { (r.created_by) }
                        td { (time(r.created_at_ms)) }
                    }
                } }
            } }
        }
    };
    Ok(page::page(&viewer, Section::Runbooks, "Runbooks", content))
}

/// `GET /ui/agents`.
pub(crate) async fn agents(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let agents = state.control.list_agents(&viewer.user).await?;
    let content = html! {
        @if agents.is_empty() { (empty("No agents enrolled yet.")) } @else {
            div class="scroll" { table {
                thead { tr { th scope="col" { "Agent" } th scope="col" { "Online" } th scope="col" { "Version" } th scope="col" { "Pool" } th scope="col" { "Targets" } th scope="col" { "Last seen" } } }
                tbody { @for a in &agents {
                    tr {
                        td { (a.name) br; code class="meta" { (a.id) } }
                        td { @if a.connected { span class="badge ok" { "online" } } @else { span class="badge" { "offline" } } }
                        td { @if let Some(v) = &a.version { (v) } @else { "–" } }
                        td { (a.pool) }
                        td { (a.targets.join(", ")) }
                        td { (opt_time(a.last_seen_ms)) }
                    }
                } }
            } }
        }
    };
    Ok(page::page(&viewer, Section::Agents, "Agents", content))
}
