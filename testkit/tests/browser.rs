//! The browser kit itself (`sealrun_testkit::browser`), against a tiny site
//! this file serves over HTTPS under a self-signed certificate (which the
//! browser accepts: `acceptInsecureCerts`, as for the console under the test
//! CA). One behaviour per test; each skips (or, under
//! `SEALRUN_REQUIRE_BROWSER` or `CI`, fails) without Chromium.

use axum::response::{AppendHeaders, Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Form, Router};
use sealrun_testkit::browser::{Browser, BrowserError, require_browser};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Long enough for a loaded machine, short enough to fail a broken test.
const WAIT: Duration = Duration::from_secs(10);

/// One browser at a time in this file: the tests' machines have 2 cores,
/// and a dozen Chromiums at once only make each test slower.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HOME: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>sealrun kit</title></head>
<body>
<h1>Hello from the kit</h1>
<form method="post" action="/greet">
  <label for="name">Name</label>
  <input id="name" name="name" value="nobody">
  <button id="greet" type="submit">Greet</button>
</form>
<p id="late">loading</p>
<script>setTimeout(() => { document.getElementById("late").textContent = "ready"; }, 300);</script>
</body>
</html>"#;

#[derive(serde::Deserialize)]
struct Greet {
    name: String,
}

async fn greet(Form(form): Form<Greet>) -> Html<String> {
    let name = form
        .name
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    Html(format!(
        "<!doctype html><title>greeted</title><p id=\"greeting\">Hello, {name}</p>"
    ))
}

async fn cookie() -> impl IntoResponse {
    (
        AppendHeaders([
            (
                "set-cookie",
                "session=s3cr3t; Path=/; HttpOnly; Secure; SameSite=Strict",
            ),
            ("set-cookie", "theme=dark; Path=/; SameSite=Lax"),
        ]),
        Html("<!doctype html><title>cookies</title><p>set</p>"),
    )
}

/// Serves the site on `https://localhost:<port>`; its base URL. The server
/// lives as long as the test's runtime.
fn serve() -> String {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .expect("a server configuration");
    let app = Router::new()
        .route("/", get(|| async { Html(HOME) }))
        .route("/greet", post(greet))
        .route("/cookie", get(cookie));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("its address").port();
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
    )
    .expect("an HTTPS server");
    tokio::spawn(async move {
        let _ = server.serve(app.into_make_service()).await;
    });
    format!("https://localhost:{port}")
}

/// The site and a browser on its home page; `None` when skipping.
async fn home() -> Option<(String, Browser)> {
    if !require_browser() {
        return None;
    }
    let site = serve();
    let browser = Browser::start().await.expect("a headless Chromium");
    browser
        .goto(&format!("{site}/"))
        .await
        .expect("the home page");
    Some((site, browser))
}

/// Processes whose command line matches `pattern` (`pgrep -f`).
fn pgrep(pattern: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-f", "--", pattern])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The width and height a PNG's IHDR chunk states.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24, "too short for a PNG: {} bytes", png.len());
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

#[tokio::test]
async fn goto_find_and_text_read_a_page_served_over_https_under_an_untrusted_certificate() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((site, browser)) = home().await else {
        return;
    };
    assert_eq!(browser.current_url().await.unwrap(), format!("{site}/"));
    assert_eq!(browser.title().await.unwrap(), "sealrun kit");
    let h1 = browser.find("h1").await.unwrap();
    assert_eq!(h1.text().await.unwrap(), "Hello from the kit");
    let labels = browser.find_all("label, button").await.unwrap();
    let mut texts = Vec::new();
    for element in &labels {
        texts.push(element.text().await.unwrap());
    }
    assert_eq!(texts, ["Name", "Greet"]);
    assert!(browser.find_all("table").await.unwrap().is_empty());
    assert!(
        browser
            .page_source()
            .await
            .unwrap()
            .contains("<h1>Hello from the kit</h1>")
    );
}

#[tokio::test]
async fn send_keys_and_click_submit_a_form() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((site, browser)) = home().await else {
        return;
    };
    let name = browser.find("#name").await.unwrap();
    assert_eq!(name.attr("value").await.unwrap().as_deref(), Some("nobody"));
    name.clear().await.unwrap();
    name.send_keys("Ada <L>").await.unwrap();
    assert_eq!(name.property("value").await.unwrap(), json!("Ada <L>"));
    assert_eq!(name.attr("value").await.unwrap().as_deref(), Some("nobody"));
    assert_eq!(name.attr("data-missing").await.unwrap(), None);
    browser.find("#greet").await.unwrap().click().await.unwrap();
    let greeting = browser
        .wait_for_text("#greeting", "Hello, Ada <L>", WAIT)
        .await
        .unwrap();
    assert_eq!(greeting.text().await.unwrap(), "Hello, Ada <L>");
    assert_eq!(
        browser.current_url().await.unwrap(),
        format!("{site}/greet")
    );
}

#[tokio::test]
async fn wait_for_text_sees_what_a_script_writes_later() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    let late = browser.wait_for("#late", WAIT).await.unwrap();
    late.text().await.unwrap(); // "loading" or already "ready"
    let ready = browser.wait_for_text("#late", "ready", WAIT).await.unwrap();
    assert_eq!(ready.text().await.unwrap(), "ready");
}

#[tokio::test]
async fn waits_time_out_with_what_they_waited_for() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    let short = Duration::from_millis(300);
    let err = browser.wait_for("#absent", short).await.unwrap_err();
    assert!(matches!(err, BrowserError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("`#absent`"), "{err}");
    let err = browser
        .wait_for_text("h1", "Goodbye", short)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("Goodbye") && message.contains("Hello from the kit"),
        "the timeout shows the text last seen: {message}"
    );
}

#[tokio::test]
async fn errors_name_the_command_and_chromedrivers_error() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    let err = browser.find("#absent").await.unwrap_err();
    assert_eq!(err.webdriver_error(), Some("no such element"), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("WebDriver POST /element (find `#absent`): no such element: "),
        "{message}"
    );
    let err = browser
        .execute("throw new Error('boom')", vec![])
        .await
        .unwrap_err();
    assert_eq!(err.webdriver_error(), Some("javascript error"), "{err}");
    assert!(err.to_string().contains("boom"), "{err}");
}

#[tokio::test]
async fn execute_passes_arguments_and_returns_values_and_promises() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    let sum = browser
        .execute(
            "return arguments[0] + arguments[1].n",
            vec![json!(40), json!({"n": 2})],
        )
        .await
        .unwrap();
    assert_eq!(sum, json!(42));
    let h1 = browser.find("h1").await.unwrap();
    let tag = browser
        .execute("return arguments[0].tagName", vec![h1.as_arg()])
        .await
        .unwrap();
    assert_eq!(tag, json!("H1"));
    let later = browser
        .execute(
            "return new Promise(ok => setTimeout(() => ok({done: true}), 50))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(later, json!({"done": true}));
}

#[tokio::test]
async fn an_http_only_cookie_is_listed_with_its_flags_and_hidden_from_scripts() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((site, browser)) = home().await else {
        return;
    };
    browser.goto(&format!("{site}/cookie")).await.unwrap();
    let mut cookies = browser.cookies().await.unwrap();
    cookies.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = cookies.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["session", "theme"], "{cookies:?}");
    let (session, theme) = (&cookies[0], &cookies[1]);
    assert_eq!(session.value, "s3cr3t");
    assert!(session.http_only && session.secure, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"));
    assert_eq!(session.path.as_deref(), Some("/"));
    assert_eq!(session.expiry, None, "a session cookie");
    assert!(!theme.http_only && !theme.secure, "{theme:?}");
    assert_eq!(theme.same_site.as_deref(), Some("Lax"));
    let visible = browser
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert_eq!(visible, json!("theme=dark"));
    browser.delete_cookies().await.unwrap();
    assert!(browser.cookies().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_screenshot_is_a_png_and_is_saved_where_asked() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    let png = browser.screenshot_png().await.unwrap();
    assert!(png.starts_with(PNG_MAGIC), "not a PNG: {:?}", &png[..8]);
    // The default window is 1280x900; a toolbar takes some of its height.
    assert_eq!(png_size(&png).0, 1280);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shots/home.png");
    browser.save_screenshot(&path).await.unwrap();
    let saved = std::fs::read(&path).unwrap();
    assert!(saved.starts_with(PNG_MAGIC));
}

#[tokio::test]
async fn a_phone_sized_window_gives_a_phone_sized_screenshot() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    browser.set_window_size(390, 844).await.unwrap();
    let viewport = browser
        .execute("return [window.innerWidth, window.innerHeight]", vec![])
        .await
        .unwrap();
    assert_eq!(viewport, json!([390, 844]));
    let png = browser.screenshot_png().await.unwrap();
    assert_eq!(png_size(&png), (390, 844));
}

#[tokio::test]
async fn cdp_overrides_the_pages_time_zone() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    browser
        .cdp(
            "Emulation.setTimezoneOverride",
            json!({"timezoneId": "Asia/Tokyo"}),
        )
        .await
        .unwrap();
    let zone = browser
        .execute(
            "return Intl.DateTimeFormat().resolvedOptions().timeZone",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(zone, json!("Asia/Tokyo"));
}

/// Registers a passkey for `localhost` with user verification; resolves to
/// the new credential's id (base64url).
const CREATE_PASSKEY: &str = r#"
return navigator.credentials.create({ publicKey: {
  challenge: crypto.getRandomValues(new Uint8Array(32)),
  rp: { name: "sealrun kit" },
  user: { id: new Uint8Array([1, 2, 3, 4]), name: "ada", displayName: "Ada" },
  pubKeyCredParams: [{ type: "public-key", alg: -7 }],
  authenticatorSelection: { residentKey: "required", userVerification: "required" },
} }).then(credential => credential.id);
"#;

#[tokio::test]
async fn a_virtual_authenticator_registers_a_passkey_the_page_creates() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    let secure = browser
        .execute("return window.isSecureContext", vec![])
        .await
        .unwrap();
    assert_eq!(secure, json!(true));
    let authenticator = browser.add_virtual_authenticator().await.unwrap();
    assert!(
        browser
            .credentials(&authenticator)
            .await
            .unwrap()
            .is_empty(),
        "a new authenticator holds nothing"
    );
    let created = browser.execute(CREATE_PASSKEY, vec![]).await.unwrap();
    let created = created.as_str().expect("a credential id");
    let credentials = browser.credentials(&authenticator).await.unwrap();
    assert_eq!(credentials.len(), 1, "{credentials:?}");
    let credential = &credentials[0];
    assert_eq!(credential.credential_id, created);
    assert!(credential.is_resident_credential);
    assert_eq!(credential.rp_id.as_deref(), Some("localhost"));
    assert_eq!(credential.user_handle.as_deref(), Some("AQIDBA"));
    browser
        .remove_virtual_authenticator(&authenticator)
        .await
        .unwrap();
    let err = browser.credentials(&authenticator).await.unwrap_err();
    assert_eq!(err.webdriver_error(), Some("invalid argument"), "{err}");
}

/// Asserts that a browser's processes are running: Chromium's, naming its
/// profile directory, and chromedriver on its port.
fn assert_processes_while_alive(profile: &Path, port: u16) {
    assert!(
        !pgrep(&profile.display().to_string()).is_empty(),
        "Chromium is running with {}",
        profile.display()
    );
    assert_eq!(pgrep(&format!("chromedriver --port={port}$")).len(), 1);
}

/// Asserts that none of a browser's processes is left, nor its profile.
fn assert_no_process_left(profile: &Path, port: u16) {
    let left = pgrep(&profile.display().to_string());
    assert!(left.is_empty(), "Chromium processes left: {left:?}");
    let left = pgrep(&format!("chromedriver --port={port}$"));
    assert!(left.is_empty(), "chromedriver left: {left:?}");
    assert!(!profile.exists(), "the profile directory was removed");
}

#[tokio::test]
async fn dropping_the_browser_leaves_no_process_behind() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    let (profile, port) = (browser.user_data_dir(), browser.driver_port());
    assert_processes_while_alive(&profile, port);
    drop(browser);
    assert_no_process_left(&profile, port);
}

#[tokio::test]
async fn a_test_panicking_with_a_browser_leaves_no_process_behind() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((_site, browser)) = home().await else {
        return;
    };
    let (profile, port) = (browser.user_data_dir(), browser.driver_port());
    assert_processes_while_alive(&profile, port);
    let failed = tokio::spawn(async move {
        let _browser = browser;
        panic!("a failing browser test (on purpose)");
    })
    .await;
    assert!(failed.is_err_and(|e| e.is_panic()));
    assert_no_process_left(&profile, port);
}
