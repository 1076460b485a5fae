//! The web console in a real headless Chromium (through chromedriver),
//! against `sealrun dev`: a real control plane, a real agent with a trust
//! file running commands in Docker. Auditors, operators and approvers sign
//! in; a live run's masked output appears without a reload; an approver
//! approves with a passkey (Chromium's virtual authenticator) and the
//! trusted agent runs the run; an auditor has no controls and a forged post
//! from their session is refused; a form without the CSRF token is refused
//! and signing out ends the session.
//!
//! Screenshots of the main pages are taken on the way, into a temporary
//! directory, or into `docs/screenshots/` with `SEALRUN_UPDATE_SCREENSHOTS=1`
//! (how the README's were made).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::browser::{Browser, require_browser};
use sealrun_testkit::{Client, DevProcess, WAIT, https_client, require_docker, workspace_root};
use sealrun_wire::admin::Role;
use sealrun_wire::run::RunStatus;
use std::path::PathBuf;
use std::time::Duration;

/// `sealrun dev`, its admin's API client, and a browser.
struct Console {
    browser: Browser,
    admin: Client,
    url: String,
    dev: DevProcess,
    shots: ShotDir,
}

/// Where screenshots go.
enum ShotDir {
    Docs(PathBuf),
    Temp(tempfile::TempDir),
}

impl Console {
    /// `None` (the test skips loudly, or fails under CI) without Docker or
    /// Chromium.
    async fn start() -> Option<Console> {
        if !require_docker() || !require_browser() {
            return None;
        }
        let dev = DevProcess::start();
        let url = dev.cli.url.clone();
        let admin = Client::new(&url, https_client(&dev.cli.ca_cert), &dev.cli.token);
        // Wait until the dev's agent serves `demo` (dev.env is written then,
        // but be sure the target is there for the API).
        admin.get("/v1/targets/demo").await.ok();
        let browser = Browser::start().await.expect("headless Chromium starts");
        // Tall enough for a run's page with its log in one screenshot.
        browser.set_window_size(1280, 1300).await.unwrap();
        let shots = if std::env::var("SEALRUN_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            ShotDir::Docs(workspace_root().join("docs/screenshots"))
        } else {
            ShotDir::Temp(tempfile::tempdir().unwrap())
        };
        Some(Console {
            browser,
            admin,
            url,
            dev,
            shots,
        })
    }

    /// Signs the browser in with `token` through the sign-in form.
    async fn sign_in(&self, token: &str) {
        let b = &self.browser;
        b.goto(&format!("{}/ui/login", self.url)).await.unwrap();
        b.find("#token")
            .await
            .unwrap()
            .send_keys(token)
            .await
            .unwrap();
        self.click("form button[type=submit]").await;
        b.wait_for("header.top .who", WAIT).await.unwrap();
    }

    async fn goto(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.url))
            .await
            .unwrap();
    }

    /// A new user of `role`, and their token.
    async fn person(&self, name: &str, role: Role) -> String {
        self.admin.token(name, role).await.token
    }

    /// A run the dev's admin submits (signed with the dev's admin key, as
    /// `sealrun run` does), not waiting for it.
    fn submit(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "--target", "demo", "--detach"];
        all.extend_from_slice(args);
        self.dev.cli.ok(&all).trim().to_owned()
    }

    /// Saves a screenshot `name` (a PNG, checked).
    async fn shot(&self, name: &str) {
        let dir = match &self.shots {
            ShotDir::Docs(d) => d.clone(),
            ShotDir::Temp(t) => t.path().to_owned(),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.browser.screenshot_png().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
        std::fs::write(dir.join(name), png).unwrap();
    }

    /// The status of a same-origin form post made from the page with
    /// `fields` (form-encoded), as a forged or stripped request would be.
    async fn post_from_page(&self, path: &str, fields: &str) -> u64 {
        let script = "var x = new XMLHttpRequest(); x.open('POST', arguments[0], false); \
             x.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded'); \
             x.send(arguments[1]); return x.status;";
        self.browser
            .execute(script, vec![path.into(), fields.into()])
            .await
            .unwrap()
            .as_u64()
            .unwrap()
    }

    /// Clicks the element `css` selects.
    async fn click(&self, css: &str) {
        self.browser.find(css).await.unwrap().click().await.unwrap();
    }

    /// Signs in as a new `role` user `name` and opens the page of a run
    /// that goes on for 30 s (the dev's admin's); its id.
    async fn on_a_running_runs_page(&self, name: &str, role: Role) -> String {
        let id = self.submit(&["--", "sleep", "30"]);
        let token = self.person(name, role).await;
        self.sign_in(&token).await;
        self.goto(&format!("/ui/runs/{id}")).await;
        self.browser.wait_for("#log", WAIT).await.unwrap();
        id
    }

    /// The page's CSRF token (from its sign-out form).
    async fn csrf(&self) -> String {
        self.browser
            .find("form[action='/ui/logout'] input[name=csrf]")
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_sees_a_live_runs_masked_output_appear_without_reloading() {
    let Some(c) = Console::start().await else {
        return;
    };
    let secret = "hunter2-correct-horse-battery";
    c.dev.cli.set_secret("demo", "DB_PASSWORD", secret);
    let operator = c.person("olga", Role::Operator).await;
    c.sign_in(&operator).await;
    let id = c.submit(&[
        "--secret",
        "DB_PASSWORD",
        "--",
        "sh",
        "-c",
        "echo \"password: $DB_PASSWORD\"; sleep 4; echo second-line",
    ]);
    c.goto(&format!("/ui/runs/{id}")).await;
    let b = &c.browser;
    // Loaded while the run goes: the page follows it.
    let log = b.find("#log").await.unwrap();
    assert!(
        log.attr("data-events").await.unwrap().is_some(),
        "the page was loaded after the run ended; it should have been live"
    );
    b.execute(
        "window.sealrunMarker = 'not reloaded'; return null;",
        vec![],
    )
    .await
    .unwrap();
    b.wait_for_text("#log", "password: ***", WAIT)
        .await
        .unwrap();
    c.shot("run-live.png").await;
    b.wait_for_text("#log", "second-line", WAIT).await.unwrap();
    b.wait_for_text("#run-status", "succeeded", WAIT)
        .await
        .unwrap();
    let marker = b
        .execute("return window.sealrunMarker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(
        marker, "not reloaded",
        "the output arrived without a reload"
    );
    let text = log.text().await.unwrap();
    assert!(!text.contains(secret), "the secret is masked: {text}");
    assert!(!b.page_source().await.unwrap().contains(secret));
    c.goto("/ui/runs").await;
    b.wait_for_text("table.runs", &id, WAIT).await.unwrap();
    c.shot("runs.png").await;
    // Readable on a phone: the page fits its width (tables scroll in their
    // own box, not the page).
    b.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("/ui/runs/{id}")).await;
    b.wait_for_text("#log", "second-line", WAIT).await.unwrap();
    let overflow = b
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, 0, "no sideways scrolling of the page on a phone");
    c.shot("run-phone.png").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_approves_with_a_passkey_and_the_trusted_agent_runs_the_run() {
    let Some(c) = Console::start().await else {
        return;
    };
    // `demo` now needs one approval for ad-hoc runs, re-certified with the
    // dev's admin key by `target apply` (its agent trusts only that).
    let file = c.dev.dir.path().join("targets.toml");
    std::fs::write(
        &file,
        "[[target]]\nname = \"demo\"\nimage = \"sealrun/busybox:latest\"\nprivate_network = \"local\"\n\
         timeout_secs = 600\n[target.policy.approval]\nrequire = \"ad_hoc\"\napprovals = 1\n",
    )
    .unwrap();
    c.dev
        .cli
        .ok(&["target", "apply", "-f", file.to_str().unwrap()]);
    let approver = c.person("val", Role::Operator).await;
    c.sign_in(&approver).await;
    let b = &c.browser;

    // Val registers a passkey (the virtual authenticator verifies the user).
    let authenticator = b.add_virtual_authenticator().await.unwrap();
    c.goto("/ui/passkeys").await;
    c.click("#register-passkey button[type=submit]").await;
    b.wait_for_text("table", "waiting for an admin", WAIT)
        .await
        .unwrap();
    let fingerprint = b
        .find("code.fingerprint")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fingerprint.starts_with("pk1_"), "{fingerprint}");
    assert_eq!(b.credentials(&authenticator).await.unwrap().len(), 1);

    // The admin certifies val's key and that passkey (the fingerprint val
    // showed them).
    let key_file = c.dev.dir.path().join("val.key");
    let key_path = key_file.to_str().unwrap();
    c.dev.cli.ok(&["keys", "init", "--key-file", key_path]);
    let public = c.dev.cli.ok(&["keys", "show", "--key-file", key_path]);
    c.dev.cli.ok(&[
        "user",
        "certify",
        "val",
        "--key",
        public.trim(),
        "--passkey",
        &fingerprint,
    ]);
    c.goto("/ui/passkeys").await;
    b.wait_for_text("table", "certified", WAIT).await.unwrap();

    // The admin's signed run waits for approval.
    let id = c.submit(&["--", "echo", "approved-in-the-browser"]);
    c.admin.wait_status(&id, RunStatus::PendingApproval).await;
    c.goto(&format!("/ui/approvals/{id}")).await;
    b.wait_for("#approve-passkey", WAIT).await.unwrap();
    c.shot("approval.png").await;
    c.click("#approve-passkey button[type=submit]").await;
    // Dispatched, and run by the agent that counts only signed approvals.
    let run = c.admin.wait_terminal(&id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(c.admin.stdout(&id).await, "approved-in-the-browser\n");
    c.goto(&format!("/ui/runs/{id}")).await;
    b.wait_for_text("#log", "approved-in-the-browser", WAIT)
        .await
        .unwrap();
    b.wait_for_text(".timeline", "Approved", WAIT)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_has_no_controls_and_a_forged_post_from_their_session_is_refused() {
    let Some(c) = Console::start().await else {
        return;
    };
    let id = c.on_a_running_runs_page("aud", Role::Auditor).await;
    let b = &c.browser;
    let source = b.page_source().await.unwrap();
    assert!(
        !source.contains("/cancel"),
        "no cancel control for an auditor"
    );
    // A post forged from the auditor's own session, CSRF token and all.
    let csrf = c.csrf().await;
    let status = c
        .post_from_page(&format!("/ui/runs/{id}/cancel"), &format!("csrf={csrf}"))
        .await;
    assert_eq!(status, 403);
    assert_ne!(c.admin.run(&id).await.status, RunStatus::Canceled);
    c.goto("/ui/audit").await;
    b.wait_for_text("main", "Intact", WAIT).await.unwrap();
    c.shot("audit.png").await;
    // Positive control: the admin's own cancel works.
    c.admin.cancel(&id).await;
    c.admin.wait_terminal(&id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_without_the_csrf_token_is_refused_and_signing_out_ends_the_session() {
    let Some(c) = Console::start().await else {
        return;
    };
    let id = c.on_a_running_runs_page("olga", Role::Operator).await;
    let b = &c.browser;
    let path = format!("/ui/runs/{id}/cancel");
    assert_eq!(c.post_from_page(&path, "").await, 403);
    assert_eq!(c.post_from_page(&path, "csrf=0000").await, 403);
    assert_ne!(c.admin.run(&id).await.status, RunStatus::Canceled);
    // Positive control: the page's own Cancel button.
    c.click("form[action$='/cancel'] button").await;
    let run = c.admin.wait_terminal(&id).await;
    assert_eq!(run.status, RunStatus::Canceled);

    let cookies = b.cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name == "__Host-sealrun-session")
        .expect("the session cookie");
    assert!(session.http_only && session.secure, "{session:?}");
    c.click("form[action='/ui/logout'] button").await;
    b.wait_for("#token", WAIT).await.unwrap();
    c.goto("/ui/runs").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = b.current_url().await.unwrap();
    assert!(
        url.contains("/ui/login"),
        "signed out, back to sign-in: {url}"
    );
}
