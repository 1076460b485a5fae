//! The web console over real HTTPS, without a browser: sessions, CSRF, the
//! permission table, security headers, no secret material in any page, the
//! live log and the audit export. (`tests/console_browser.rs` drives the
//! same pages in headless Chromium.)

use reqwest::StatusCode;
use sealrun_testkit::console::{Console, SESSION_COOKIE, cookie_value};
use sealrun_testkit::{Client, InProcessWorld, World};
use sealrun_wire::admin::Role;
use sealrun_wire::audit::AuditEntry;
use sealrun_wire::run::RunStatus;

/// A console signed in as a new user of `role` (and that user's API client).
async fn signed_in(w: &InProcessWorld, name: &str, role: Role) -> (Console, Client) {
    let api = w.admin.token(name, role).await;
    let mut console = Console::new(&w.server.url, &w.server.ca_cert);
    console.sign_in(&api.token).await;
    (console, api)
}

fn admin_console(w: &InProcessWorld) -> Console {
    Console::new(&w.server.url, &w.server.ca_cert)
}

#[tokio::test]
async fn signing_in_sets_a_secure_http_only_strict_session_cookie_that_is_not_the_token() {
    let w = World::in_process().await;
    let console = admin_console(&w);
    let answer = console.try_sign_in(&w.admin.token).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    assert_eq!(answer.location(), Some("/ui/runs"));
    let cookies = answer.set_cookies();
    let session = cookies
        .iter()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("a session cookie");
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(session.contains(flag), "{session} lacks {flag}");
    }
    let value = cookie_value(&cookies, SESSION_COOKIE).unwrap();
    assert!(value.starts_with("srs_"), "a session token, not the user's");
    assert!(!cookies.iter().any(|c| c.contains(&w.admin.token)));
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_opens_no_session() {
    let w = World::in_process().await;
    let console = admin_console(&w);
    let forged = format!("srt_{}_{}", "0".repeat(16), "0".repeat(64));
    let answer = console.try_sign_in(&forged).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.text.contains("not valid"));
    assert!(cookie_value(&answer.set_cookies(), SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn an_agent_token_cannot_sign_in() {
    let w = World::in_process().await;
    let answer = admin_console(&w).try_sign_in(&w.agent.client.token).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(cookie_value(&answer.set_cookies(), SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn signing_in_without_the_forms_csrf_cookie_is_refused() {
    let w = World::in_process().await;
    let console = admin_console(&w);
    let answer = console
        .post_exactly(
            "/ui/login",
            &[("csrf", "made-up"), ("token", &w.admin.token)],
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(cookie_value(&answer.set_cookies(), SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn a_page_without_a_session_redirects_to_sign_in_and_back() {
    let w = World::in_process().await;
    let answer = admin_console(&w).get("/ui/runs?status=queued").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(
        answer.location(),
        Some("/ui/login?next=%2Fui%2Fruns%3Fstatus%3Dqueued")
    );
}

/// Every console page and asset, for a world with one run.
fn every_path(run: &str, target: &str) -> Vec<String> {
    vec![
        "/ui/runs".into(),
        format!("/ui/runs/{run}"),
        format!("/ui/runs/{run}/log"),
        "/ui/approvals".into(),
        "/ui/approvals?status=queued".into(),
        "/ui/audit".into(),
        "/ui/audit/export".into(),
        "/ui/targets".into(),
        format!("/ui/targets/{target}"),
        "/ui/runbooks".into(),
        "/ui/agents".into(),
        "/ui/passkeys".into(),
        "/ui/assets/console.css".into(),
        "/ui/assets/console.js".into(),
        "/ui/login".into(),
    ]
}

#[tokio::test]
async fn every_page_and_asset_carries_the_security_headers() {
    let w = World::in_process().await;
    let run = w.submit(&["true"]).await;
    let (console, _) = signed_in(&w, "ada", Role::Admin).await;
    for path in every_path(&run, &w.target) {
        let page = console.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        let h = |name: &str| {
            page.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let csp = h("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP {csp:?} lacks {directive}"
            );
        }
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(
            h("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(h("x-frame-options").as_deref(), Some("DENY"), "{path}");
        assert_eq!(
            h("referrer-policy").as_deref(),
            Some("no-referrer"),
            "{path}"
        );
        if !path.starts_with("/ui/assets/") {
            assert_eq!(h("cache-control").as_deref(), Some("no-store"), "{path}");
        }
    }
}

#[tokio::test]
async fn no_page_or_asset_shows_a_secret_value_or_its_ciphertext_to_any_role() {
    let w = World::in_process().await;
    let value = b"correct-horse-battery-staple-4242";
    let sealed = w.admin.set_secret(&w.target, "DB_PASSWORD", value).await;
    let run = w.admin.submit(&w.target, &["psql"], &["DB_PASSWORD"]).await;
    let value = std::str::from_utf8(value).unwrap();
    let mut seen_name = 0;
    for (name, role) in [
        ("ada", Role::Admin),
        ("oz", Role::Operator),
        ("aud", Role::Auditor),
    ] {
        let (console, _) = signed_in(&w, name, role).await;
        for path in every_path(&run, &w.target) {
            let page = console.get(&path).await;
            assert!(!page.text.contains(value), "{role} {path} shows the value");
            assert!(
                !page.text.contains(&sealed.ciphertext),
                "{role} {path} shows the ciphertext"
            );
            assert!(
                !page.text.contains(&sealed.ciphertext[10..40]),
                "{role} {path} shows a piece of the ciphertext"
            );
            seen_name += usize::from(page.text.contains("DB_PASSWORD"));
        }
    }
    // Positive control: the pages do show the secret by name.
    assert!(seen_name >= 6, "the secret's name shown {seen_name} times");
}

#[tokio::test]
async fn each_role_sees_the_pages_the_permission_table_gives_it() {
    let w = World::in_process().await;
    let run = w.submit(&["true"]).await;
    let (operator, _) = signed_in(&w, "oz", Role::Operator).await;
    let (auditor, _) = signed_in(&w, "aud", Role::Auditor).await;
    for path in every_path(&run, &w.target) {
        let expected = if path.starts_with("/ui/audit") {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        assert_eq!(
            operator.get(&path).await.status,
            expected,
            "operator {path}"
        );
        assert_eq!(
            auditor.get(&path).await.status,
            StatusCode::OK,
            "auditor {path}"
        );
    }
    // The navigation offers what the role may open.
    assert!(
        !operator
            .get("/ui/runs")
            .await
            .text
            .contains("href=\"/ui/audit\"")
    );
    assert!(
        auditor
            .get("/ui/runs")
            .await
            .text
            .contains("href=\"/ui/audit\"")
    );
}

#[tokio::test]
async fn an_auditor_sees_no_cancel_control_and_an_operator_does() {
    let w = World::in_process().await;
    let run = w.submit(&["sleep", "60"]).await;
    let (auditor, _) = signed_in(&w, "aud", Role::Auditor).await;
    let (operator, _) = signed_in(&w, "oz", Role::Operator).await;
    let cancel = format!("action=\"/ui/runs/{run}/cancel\"");
    assert!(
        !auditor
            .get(&format!("/ui/runs/{run}"))
            .await
            .text
            .contains(&cancel)
    );
    assert!(
        operator
            .get(&format!("/ui/runs/{run}"))
            .await
            .text
            .contains(&cancel)
    );
}

#[tokio::test]
async fn an_auditors_forged_cancel_is_refused_by_the_permission_table() {
    let w = World::in_process().await;
    let run = w.submit(&["sleep", "60"]).await;
    let (auditor, _) = signed_in(&w, "aud", Role::Auditor).await;
    let answer = auditor.post(&format!("/ui/runs/{run}/cancel"), &[]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.text.contains("auditor cannot cancel runs"),
        "{}",
        answer.text
    );
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Queued);
}

#[tokio::test]
async fn an_auditors_forged_reject_is_refused_by_the_permission_table() {
    let w = World::in_process().await;
    let run = w.submit(&["true"]).await;
    let (auditor, _) = signed_in(&w, "aud", Role::Auditor).await;
    let answer = auditor
        .post(&format!("/ui/approvals/{run}/reject"), &[("reason", "no")])
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.text.contains("auditor cannot approve runs"),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused() {
    let w = World::in_process().await;
    let run = w.submit(&["sleep", "60"]).await;
    let (operator, _) = signed_in(&w, "oz", Role::Operator).await;
    let path = format!("/ui/runs/{run}/cancel");
    for fields in [vec![], vec![("csrf", "0".repeat(64))]] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = operator.post_exactly(&path, &fields, &[]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{fields:?}");
        assert!(answer.text.contains("CSRF"));
    }
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Queued);
    // Positive control: with the session's token, the same form cancels.
    let answer = operator.post(&path, &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Canceled);
}

#[tokio::test]
async fn a_form_the_browser_marks_cross_site_is_refused_even_with_the_token() {
    let w = World::in_process().await;
    let run = w.submit(&["sleep", "60"]).await;
    let (operator, _) = signed_in(&w, "oz", Role::Operator).await;
    let answer = operator
        .post_exactly(
            &format!("/ui/runs/{run}/cancel"),
            &[("csrf", &operator.csrf)],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Queued);
}

#[tokio::test]
async fn signing_out_revokes_the_session_server_side() {
    let w = World::in_process().await;
    let (console, _) = signed_in(&w, "oz", Role::Operator).await;
    assert_eq!(console.get("/ui/runs").await.status, StatusCode::OK);
    let answer = console.post("/ui/logout", &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(
        answer
            .set_cookies()
            .iter()
            .any(|c| c.starts_with(SESSION_COOKIE) && c.contains("Max-Age=0"))
    );
    // The cookie, kept anyway, no longer opens anything.
    let after = console.get("/ui/runs").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(after.location().unwrap().starts_with("/ui/login"));
}

#[tokio::test]
async fn revoking_the_token_signed_in_with_ends_its_sessions() {
    let w = World::in_process().await;
    let (console, api) = signed_in(&w, "oz", Role::Operator).await;
    assert_eq!(console.get("/ui/runs").await.status, StatusCode::OK);
    let _ = api;
    let tokens = w.admin.get("/v1/tokens").await.json();
    let id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "oz")
        .expect("oz's token")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.admin.delete(&format!("/v1/tokens/{id}")).await.ok();
    assert_eq!(console.get("/ui/runs").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_session_token_is_refused_as_a_bearer_token_and_a_bearer_token_as_a_session() {
    let w = World::in_process().await;
    let (console, api) = signed_in(&w, "oz", Role::Operator).await;
    w.admin
        .with_token(&console.session)
        .get("/v1/whoami")
        .await
        .error(StatusCode::UNAUTHORIZED);
    let cookie = format!("{SESSION_COOKIE}={}", api.token);
    let answer = console.raw_get("/ui/runs", Some(&cookie)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    // Positive control: each in its own place works.
    api.get("/v1/whoami").await.ok();
    assert_eq!(console.get("/ui/runs").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_live_log_sends_each_chunk_then_the_end_as_server_sent_events() {
    let w = World::in_process().await;
    let run = w.submit(&["echo", "hi"]).await;
    let (console, _) = signed_in(&w, "aud", Role::Auditor).await;
    let assignment = w.agent.next_run().await;
    assert_eq!(assignment.run_id, run);
    w.agent.upload_ok(&run, &[(0, b"first *** line\n")]).await;
    let events = {
        let console = console.clone();
        let run = run.clone();
        tokio::spawn(async move { console.get(&format!("/ui/runs/{run}/events?after=0")).await })
    };
    w.agent.upload_ok(&run, &[(1, b"second\n")]).await;
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 2)
        .await
        .ok();
    let page = events.await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.headers.get("content-type").unwrap().to_str().unwrap(),
        "text/event-stream"
    );
    let text = page.text;
    let b64 = |s: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let first = text
        .find(&b64(b"first *** line\n"))
        .expect("the first chunk");
    let second = text.find(&b64(b"second\n")).expect("the second chunk");
    let end = text.find("event: end").expect("the end");
    assert!(first < second && second < end, "{text}");
    assert!(text.contains("\"status\":\"succeeded\""), "{text}");
    assert!(
        text.contains("id: 1\n"),
        "events carry their seq for reconnects"
    );
}

#[tokio::test]
async fn the_audit_export_is_the_whole_chain_one_entry_per_line() {
    let w = World::in_process().await;
    w.submit(&["true"]).await;
    let (console, api) = signed_in(&w, "aud", Role::Auditor).await;
    let export = console.get("/ui/audit/export").await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(
        export
            .headers
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let entries: Vec<AuditEntry> = export
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one entry per line"))
        .collect();
    let head = api.get("/v1/audit/verify").await.json();
    assert_eq!(entries.len() as u64, head["entries"].as_u64().unwrap());
    assert_eq!(entries.last().unwrap().hash, head["head"].as_str().unwrap());
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "a chain");
    }
}

#[tokio::test]
async fn the_runs_list_filters_by_submitter_and_source_and_pages_back() {
    let w = World::in_process().await;
    let (console, op) = signed_in(&w, "oz", Role::Operator).await;
    let mine = op.submit(&w.target, &["echo", "mine"], &[]).await;
    let theirs = w.submit(&["echo", "theirs"]).await;
    let page = console.get("/ui/runs?submitter=oz").await;
    assert!(page.text.contains(&mine) && !page.text.contains(&theirs));
    let page = console.get("/ui/runs?source=slack").await;
    assert!(!page.text.contains(&mine) && page.text.contains("No runs match"));
    let page = console.get("/ui/runs?source=carrier-pigeon").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.text.contains("unknown source"));
    let page = console.get("/ui/runs?since=2999-01-01").await;
    assert!(page.text.contains("No runs match"));
    let page = console.get("/ui/runs?since=not-a-date").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = console.get(&format!("/ui/runs?before={theirs}")).await;
    assert!(page.text.contains(&mine) && !page.text.contains(&format!(">{theirs}<")));
}

#[tokio::test]
async fn a_command_is_shown_quoted_and_element_by_element_with_controls_visible() {
    let w = World::in_process().await;
    let run = w
        .submit(&["sh", "-c", "echo a b\r\u{1b}[2Kls", "<script>x</script>"])
        .await;
    let (console, _) = signed_in(&w, "aud", Role::Auditor).await;
    let page = console.get(&format!("/ui/runs/{run}")).await.text;
    assert!(!page.contains("<script>x"), "escaped as HTML");
    assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(page.contains(r"\r\e[2K"), "control characters shown");
    assert!(
        page.contains("<code class=\"arg\">echo a b"),
        "an element with spaces in one box"
    );
    assert_eq!(
        page.matches("<li><code class=\"arg\">").count(),
        4,
        "one item per argument"
    );
}

/// Target `db` with one approval needed for ad-hoc runs.
async fn needing_approval(w: &InProcessWorld) {
    let answer = w
        .admin
        .put(
            "/v1/targets/db",
            serde_json::json!({"name": "db", "image": sealrun_testkit::IMAGE,
                "policy": {"approval": {"require": "ad_hoc", "approvals": 1}}}),
        )
        .await;
    assert!(answer.status.is_success(), "{}", answer.text);
}

#[tokio::test]
async fn an_auditor_sees_no_approve_or_reject_control_and_an_operator_does() {
    let w = World::in_process().await;
    needing_approval(&w).await;
    let run = w.submit(&["true"]).await;
    let (auditor, _) = signed_in(&w, "aud", Role::Auditor).await;
    let (operator, _) = signed_in(&w, "oz", Role::Operator).await;
    let path = format!("/ui/approvals/{run}");
    let seen = auditor.get(&path).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.text.contains("The exact spec being approved"));
    for control in ["/reject\"", "approve-passkey", "sealrun approvals approve"] {
        assert!(!seen.text.contains(control), "auditor sees {control}");
    }
    // Positive control: an operator may decide (no passkey yet: the CLI
    // command to approve, and the reject form).
    let seen = operator.get(&path).await.text;
    assert!(seen.contains(&format!("/ui/approvals/{run}/reject\"")));
    assert!(seen.contains(&format!("sealrun approvals approve {run} --digest sha256:")));
}

#[tokio::test]
async fn a_console_approval_without_a_passkey_signature_is_refused_and_approves_nothing() {
    let w = World::in_process().await;
    needing_approval(&w).await;
    let run = w.submit(&["true"]).await;
    let (operator, _) = signed_in(&w, "oz", Role::Operator).await;
    let digest = w.admin.get(&format!("/v1/approvals/{run}")).await.json()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // A click with no assertion (a forged form, or no authenticator).
    let answer = operator
        .post(
            &format!("/ui/approvals/{run}/approve"),
            &[("digest", &digest)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text.contains("passkey"), "{}", answer.text);
    // One made up, for a passkey no admin certified.
    let statement =
        format!(r#"{{"org":"acme","run_digest":"{digest}","approver":"oz","at_ms":1}}"#);
    let answer = operator
        .post(
            &format!("/ui/approvals/{run}/approve"),
            &[
                ("digest", &digest),
                ("statement", &statement),
                ("credential_id", "Y3JlZA"),
                ("authenticator_data", "AAAA"),
                ("client_data_json", "e30"),
                ("signature", "AAAA"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    assert!(answer.text.contains("certif"), "{}", answer.text);
    let view = w.admin.get(&format!("/v1/approvals/{run}")).await.json();
    assert_eq!(view["status"], "pending_approval");
    assert_eq!(view["approvals"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_passkey_registered_in_the_console_waits_for_an_admin_to_certify_it() {
    let w = World::in_process().await;
    let (operator, _) = signed_in(&w, "oz", Role::Operator).await;
    // A P-256 public key as a browser's getPublicKey() gives it (SPKI DER).
    let spki = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEU6Oq7RMQeAAkHdLbgx2vn71dIfMxX5pgD0qjfJDXCu-lBfTPQ4FrD7ei3kOR-SUHavV1rRLqhRgMjc8WitHFDA";
    let answer = operator
        .post(
            "/ui/passkeys",
            &[("credential_id", "Y3JlZA"), ("public_key", spki)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let page = operator.get("/ui/passkeys").await.text;
    assert!(
        page.contains("pk1_") && page.contains("waiting for an admin"),
        "{page}"
    );
    // What `sealrun user certify --passkey` picks from, for admins only.
    let listed = w.admin.get("/v1/users/oz/passkeys").await.json();
    assert_eq!(listed["passkeys"][0]["credential_id"], "Y3JlZA");
    assert_eq!(
        listed["passkeys"][0]["origin"].as_str().unwrap(),
        w.server.url
    );
    w.admin
        .token("oz2", Role::Operator)
        .await
        .get("/v1/users/oz/passkeys")
        .await
        .error(StatusCode::FORBIDDEN);
    // Not a key: refused, nothing registered.
    let answer = operator
        .post(
            "/ui/passkeys",
            &[("credential_id", "b3RoZXI"), ("public_key", "AAAA")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        w.admin.get("/v1/users/oz/passkeys").await.json()["passkeys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_admins_console_session_can_be_revoked_on_its_own() {
    let w = World::in_process().await;
    // The org's only admin token signed in: its session is still revocable.
    let mut console = admin_console(&w);
    console.sign_in(&w.admin.token).await;
    let id = console.session.split('_').nth(1).unwrap().to_owned();
    let answer = w.admin.delete(&format!("/v1/tokens/{id}")).await;
    assert!(answer.status.is_success(), "{}", answer.text);
    assert_eq!(console.get("/ui/runs").await.status, StatusCode::SEE_OTHER);
    // The admin token itself still works (and stays the last admin token).
    w.admin.get("/v1/whoami").await.ok();
}

#[tokio::test]
async fn a_log_or_audit_position_out_of_range_is_a_400() {
    let w = World::in_process().await;
    let run = w.submit(&["true"]).await;
    let (console, _) = signed_in(&w, "aud", Role::Auditor).await;
    for path in [
        format!("/ui/runs/{run}/events?after=18446744073709551615"),
        "/ui/audit?after=18446744073709551615".to_owned(),
    ] {
        assert_eq!(
            console.get(&path).await.status,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    // Positive control: in range, the stream answers (to its end: the run
    // ended).
    w.agent.next_run().await;
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 0)
        .await
        .ok();
    let answer = console.get(&format!("/ui/runs/{run}/events?after=0")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.text.contains("event: end"));
}

#[tokio::test]
async fn an_unknown_console_path_is_the_consoles_own_404_with_its_headers() {
    let w = World::in_process().await;
    let (console, _) = signed_in(&w, "aud", Role::Auditor).await;
    let page = console.get("/ui/no-such-page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.text.contains("no such page"));
    assert!(page.headers.contains_key("content-security-policy"));
    assert!(page.headers.contains_key("strict-transport-security"));
}

#[tokio::test]
async fn a_literal_backslash_in_an_argument_is_not_shown_as_an_escape() {
    let w = World::in_process().await;
    let run = w.submit(&["printf", "a\\nb", "a\nb"]).await;
    let (console, _) = signed_in(&w, "aud", Role::Auditor).await;
    let page = console.get(&format!("/ui/runs/{run}")).await.text;
    // The backslash and n, then the newline: two different arguments.
    assert!(page.contains(r#"<code class="arg">a\\nb</code>"#), "{page}");
    assert!(page.contains(r#"<code class="arg">a\nb</code>"#));
}

#[tokio::test]
async fn signing_in_again_ends_the_session_the_browser_had() {
    let w = World::in_process().await;
    let (first, api) = signed_in(&w, "oz", Role::Operator).await;
    // The same browser (its cookie) signs in again.
    let mut again = first.clone();
    let form = again.raw_get("/ui/login", None).await;
    let login = cookie_value(&form.set_cookies(), "__Host-sealrun-login").unwrap();
    let csrf = form.input_value("csrf").unwrap();
    let cookies = format!(
        "__Host-sealrun-login={login}; {SESSION_COOKIE}={}",
        first.session
    );
    let answer = again
        .raw_post_with_cookie(
            "/ui/login",
            &cookies,
            &[("csrf", &csrf), ("token", &api.token)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    again.session = cookie_value(&answer.set_cookies(), SESSION_COOKIE).unwrap();
    assert_eq!(
        first.get("/ui/runs").await.status,
        StatusCode::SEE_OTHER,
        "the old one ended"
    );
    assert_eq!(again.get("/ui/runs").await.status, StatusCode::OK);
}
