//! What every console page shares: the document around a page's content
//! (navigation by role, sign-out), and how values are shown: times (UTC in
//! the markup, the viewer's time zone once the script runs), commands
//! (quoted exactly, control characters made visible), statuses.
//!
//! Every value goes through maud, which escapes it for HTML: nothing a run,
//! a target or a person wrote can become markup.

use super::document::head;
use super::session::Viewer;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use sealrun_control::Action;
use sealrun_wire::run::RunStatus;
use sealrun_wire::text::{escape_controls, utc};

/// The console's sections, in navigation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    Runs,
    Approvals,
    Audit,
    Targets,
    Runbooks,
    Agents,
    Passkeys,
}

impl Section {
    const ALL: [Section; 7] = [
        Section::Runs,
        Section::Approvals,
        Section::Audit,
        Section::Targets,
        Section::Runbooks,
        Section::Agents,
        Section::Passkeys,
    ];

    fn label(self) -> &'static str {
        match self {
            Section::Runs => "Runs",
            Section::Approvals => "Approvals",
            Section::Audit => "Audit trail",
            Section::Targets => "Targets",
            Section::Runbooks => "Runbooks",
            Section::Agents => "Agents",
            Section::Passkeys => "Passkeys",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Section::Runs => "/ui/runs",
            Section::Approvals => "/ui/approvals",
            Section::Audit => "/ui/audit",
            Section::Targets => "/ui/targets",
            Section::Runbooks => "/ui/runbooks",
            Section::Agents => "/ui/agents",
            Section::Passkeys => "/ui/passkeys",
        }
    }

    /// What a role must be allowed to see the section (the one permission
    /// table decides; the page itself is refused the same way); `None`:
    /// everyone's own (their passkeys).
    fn needs(self) -> Option<Action> {
        match self {
            Section::Runs => Some(Action::ReadRuns),
            Section::Approvals => Some(Action::ReadApprovals),
            Section::Audit => Some(Action::ReadAudit),
            Section::Targets => Some(Action::ReadTargets),
            Section::Runbooks => Some(Action::ReadRunbooks),
            Section::Agents => Some(Action::ReadAgents),
            Section::Passkeys => None,
        }
    }
}

/// A whole page: `content` inside the console's document.
pub(crate) fn page(viewer: &Viewer, section: Section, title: &str, content: Markup) -> Response {
    let role = viewer.user.role;
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    nav aria-label="Sections" {
                        a class="brand" href="/ui/runs" { "sealrun" }
                        ul {
                            @for s in Section::ALL {
                                @if s.needs().is_none_or(|a| a.allows(role)) {
                                    li {
                                        a href=(s.href()) aria-current=[(s == section).then_some("page")] { (s.label()) }
                                    }
                                }
                            }
                        }
                    }
                    div class="who" {
                        span { (viewer.user.user) " · " span class="role" { (role.as_str()) } " · " (viewer.user.org) }
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf());
                            button type="submit" class="link" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    };
    html_response(doc)
}

/// `markup` as a `text/html` answer.
pub(crate) fn html_response(markup: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A time: ISO-8601 UTC in the markup (readable without the script), shown
/// in the viewer's own time zone by the script.
pub(crate) fn time(ms: i64) -> Markup {
    let iso = utc(ms);
    html! { time datetime=(iso) { (iso) } }
}

/// [`time`], or a dash.
pub(crate) fn opt_time(ms: Option<i64>) -> Markup {
    match ms {
        Some(ms) => time(ms),
        None => html! { "–" },
    }
}

/// A command on one line, quoted as a shell would need it (the exact,
/// reversible form), with control characters shown visibly.
pub(crate) fn command(argv: &[String]) -> Markup {
    let joined = sealrun_wire::shell::join(argv);
    html! { code class="cmd" { (escape_controls(&joined)) } }
}

/// A command element by element: what approving means approving, with no
/// doubt where one argument ends (each in its own item and its own box,
/// spaces kept as they are inside it, with its length; control characters
/// made visible).
pub(crate) fn argv_list(argv: &[String]) -> Markup {
    html! {
        ol class="argv" start="0" {
            @for arg in argv {
                li {
                    code class="arg" { (visible(arg)) }
                    " "
                    span class="meta" { "(" (arg.chars().count()) " characters)" }
                }
            }
        }
    }
}

/// `s` with control characters (and bidi overrides) escaped, and its own
/// backslashes doubled so that `\n` written out is not taken for a newline,
/// so that nothing in it acts instead of showing and nothing reads as what
/// it is not; where it starts and ends, and so any leading or trailing
/// space, the box around it shows (`code.arg`).
pub(crate) fn visible(s: &str) -> String {
    escape_controls(&s.replace('\\', "\\\\")).into_owned()
}

/// A run's status as a badge.
pub(crate) fn status(status: RunStatus) -> Markup {
    let class = match status {
        RunStatus::Succeeded => "ok",
        RunStatus::Running | RunStatus::Queued | RunStatus::PendingApproval => "live",
        _ if status.is_terminal() => "bad",
        _ => "live",
    };
    html! { span class={"badge " (class)} data-status=(status.as_str()) { (status.as_str()) } }
}

/// A table's empty state.
pub(crate) fn empty(message: &str) -> Markup {
    html! { p class="empty" { (message) } }
}
