//! A real browser for the web console's tests: headless Chromium driven
//! through W3C WebDriver (Debian's `chromium` and `chromium-driver`, which
//! `scripts/provision.sh` installs).
//!
//! A browser test starts with
//!
//! ```no_run
//! # async fn t() {
//! use sealrun_testkit::browser::{Browser, require_browser};
//! use std::time::Duration;
//!
//! if !require_browser() {
//!     return;
//! }
//! let browser = Browser::start().await.expect("a headless Chromium");
//! browser.goto("https://localhost:8443/ui/").await.expect("the console");
//! browser.find("input[name=token]").await.unwrap().send_keys("srt_...").await.unwrap();
//! browser.find("button[type=submit]").await.unwrap().click().await.unwrap();
//! browser
//!     .wait_for_text("h1", "Runs", Duration::from_secs(10))
//!     .await
//!     .unwrap();
//! # }
//! ```
//!
//! **The skip rule.** Without `/usr/bin/chromium` or `/usr/bin/chromedriver`,
//! [`require_browser`] prints one `*** SKIPPED <test>: ... ***` line and
//! returns `false`; under `SEALRUN_REQUIRE_BROWSER` (`scripts/test.sh` sets
//! it) or `CI=true` it fails the test instead, as `require_docker` does for
//! Docker.
//!
//! **What a [`Browser`] is.** `chromedriver --port=<free port>` as a child of
//! the test, in a process group of its own, with a session of headless
//! Chromium ([`CHROMIUM_ARGS`], a fresh profile in a temporary directory,
//! `HOME` there too, `acceptInsecureCerts`, since the console is served over
//! HTTPS under sealrun's own test CA). Dropping it, also while a test
//! panics, deletes the session (Chromium quits), kills the process group,
//! reaps chromedriver, kills any process still naming the profile directory
//! and removes the directory: no process is left behind. On a panic the
//! tail of chromedriver's log is printed.
//!
//! **Why a client of our own rather than `fantoccini`.** WebDriver is JSON
//! over HTTP on loopback, and the kit already has `reqwest` and
//! `serde_json`; the commands the tests need fit in this module and add no
//! crate to the build. `fantoccini` (0.22) with `rustls-tls` brings
//! `hyper-rustls` with its default features, so `aws-lc-rs` (a C and cmake
//! build) and the native root store, plus Mozilla's `webdriver` crate with
//! `time`, `cookie`, `url` and `mime`; and it has no WebAuthn commands, which
//! the approval tests need (they would be custom commands anyway).
//!
//! **WebAuthn.** Chromium implements the W3C WebAuthn WebDriver extension:
//! [`Browser::add_virtual_authenticator`] gives the page a CTAP2 platform
//! authenticator (resident keys, user verification that always succeeds), so
//! `navigator.credentials.create` and `.get` run without a person;
//! [`Browser::credentials`] lists what it holds. It works on
//! `https://localhost` under an untrusted CA too (checked by
//! `testkit/tests/browser.rs`), thanks to `acceptInsecureCerts`.
//!
//! Every command is bounded: the HTTP request by [`COMMAND_TIMEOUT`], the
//! waits by the timeout given. Errors are [`BrowserError`]s, which name the
//! WebDriver command and what chromedriver answered (its `error` code and
//! `message`).

use crate::docker::skip_or_fail_unless;
use crate::process::free_port;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Debian's Chromium, the browser every browser test drives.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package `chromium-driver`), the same build as
/// [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// What Chromium is started with, besides its `--user-data-dir`: headless,
/// no sandbox (tests run as root in containers), nothing that talks to the
/// network on its own, `/tmp` rather than a small `/dev/shm`, and a laptop's
/// window ([`Browser::set_window_size`] makes it a phone's).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// How long one WebDriver request may take (a page load included) before it
/// fails with [`BrowserError::Transport`].
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long chromedriver may take to answer `/status` after it starts.
const DRIVER_START: Duration = Duration::from_secs(20);

/// How often the `wait_for*` methods look again.
const POLL: Duration = Duration::from_millis(50);

/// The key under which WebDriver identifies an element in JSON (W3C's web
/// element identifier).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether browser tests can run here: `true` when [`CHROMIUM`] and
/// [`CHROMEDRIVER`] are executable files. Otherwise one `*** SKIPPED <test>:
/// ... ***` line on stderr and `false`, or, when `SEALRUN_REQUIRE_BROWSER`
/// or `CI` is set (to anything but empty, `0` or `false`), a failed test.
pub fn require_browser() -> bool {
    match missing_browser() {
        None => true,
        Some(why) => {
            skip_or_fail_unless(&why, "SEALRUN_REQUIRE_BROWSER");
            false
        }
    }
}

/// Why the browser cannot run here, or `None` when both binaries are there.
fn missing_browser() -> Option<String> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !is_executable(Path::new(path)))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "no {} (Debian's chromium and chromium-driver; scripts/provision.sh installs them)",
            missing.join(" nor ")
        )
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What went wrong driving the browser. Each names what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// [`CHROMIUM`] or [`CHROMEDRIVER`] is not installed.
    #[error("cannot start a browser: {0}")]
    Missing(String),
    /// chromedriver could not be started, or stopped, or never answered.
    #[error("chromedriver: {what}; its log:\n{log}")]
    Driver {
        /// What happened.
        what: String,
        /// The end of chromedriver's output.
        log: String,
    },
    /// chromedriver answered a command with a WebDriver error.
    #[error("WebDriver {command}: {error}: {message}")]
    WebDriver {
        /// The command: its method, its path in the session, and what it was for.
        command: String,
        /// The HTTP status.
        status: u16,
        /// The WebDriver error code (`no such element`, `invalid argument`...).
        error: String,
        /// chromedriver's message.
        message: String,
    },
    /// The request did not get an answer (refused, timed out...).
    #[error("WebDriver {command}: no answer from chromedriver: {source}")]
    Transport {
        /// The command.
        command: String,
        /// What reqwest saw.
        #[source]
        source: reqwest::Error,
    },
    /// chromedriver answered with something this client does not understand.
    #[error("WebDriver {command}: unexpected answer: {detail}")]
    Protocol {
        /// The command.
        command: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// A `wait_for*` gave up.
    #[error("timed out after {timeout:?} waiting for {what}{}", last.as_deref().map(|l| format!(" (last seen: {l})")).unwrap_or_default())]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it waited.
        timeout: Duration,
        /// What it saw last, if anything.
        last: Option<String>,
    },
    /// Writing a file (a screenshot) failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl BrowserError {
    /// The WebDriver error code, when chromedriver answered with one
    /// (`"no such element"`, `"stale element reference"`...).
    pub fn webdriver_error(&self) -> Option<&str> {
        match self {
            BrowserError::WebDriver { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The result of a browser command.
pub type BrowserResult<T> = Result<T, BrowserError>;

/// A cookie as the browser holds it (WebDriver's serialized cookie).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// `Path`.
    #[serde(default)]
    pub path: Option<String>,
    /// `Domain` (the host it was set by, when it named none).
    #[serde(default)]
    pub domain: Option<String>,
    /// `Secure`.
    #[serde(default)]
    pub secure: bool,
    /// `HttpOnly`.
    #[serde(default)]
    pub http_only: bool,
    /// `SameSite`: `"Strict"`, `"Lax"` or `"None"`.
    #[serde(default)]
    pub same_site: Option<String>,
    /// When it expires (seconds since the epoch); `None` for a session cookie.
    #[serde(default)]
    pub expiry: Option<u64>,
}

/// A virtual authenticator's id, from [`Browser::add_virtual_authenticator`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuthenticatorId(String);

impl AuthenticatorId {
    /// The id chromedriver gave it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AuthenticatorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A credential a virtual authenticator holds (its private key left out).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    /// The credential id, base64url without padding: what
    /// `PublicKeyCredential.id` is on the page.
    pub credential_id: String,
    /// Whether it is a discoverable (resident) credential.
    pub is_resident_credential: bool,
    /// The relying party it is for (`localhost` for a page on localhost).
    #[serde(default)]
    pub rp_id: Option<String>,
    /// The user handle, base64url, for a resident credential.
    #[serde(default)]
    pub user_handle: Option<String>,
    /// How many assertions it has signed.
    #[serde(default)]
    pub sign_count: u64,
}

/// The WebDriver session: what [`Browser`] and its [`Element`]s send
/// commands through.
#[derive(Debug)]
struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    url: String,
}

impl Session {
    /// Sends `method path` (relative to the session) with `body` and
    /// returns the answer's `value`. `what` says what the command is for,
    /// for error messages.
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> BrowserResult<Value> {
        let command = format!("{method} {path} ({what})");
        let url = format!("{}{path}", self.url);
        send(&self.http, method, &url, body, command).await
    }

    async fn get(&self, path: &str, what: &str) -> BrowserResult<Value> {
        self.command(reqwest::Method::GET, path, None, what).await
    }

    async fn post(&self, path: &str, body: Value, what: &str) -> BrowserResult<Value> {
        self.command(reqwest::Method::POST, path, Some(body), what)
            .await
    }

    async fn delete(&self, path: &str, what: &str) -> BrowserResult<Value> {
        self.command(reqwest::Method::DELETE, path, None, what)
            .await
    }

    /// `POST /elements`: every element matching `css`.
    async fn find_all(self: &Arc<Self>, css: &str) -> BrowserResult<Vec<Element>> {
        let found = self
            .post(
                "/elements",
                json!({"using": "css selector", "value": css}),
                &format!("find all `{css}`"),
            )
            .await?;
        let Value::Array(items) = found else {
            return Err(protocol(
                &format!("POST /elements (find all `{css}`)"),
                "not an array",
                &found,
            ));
        };
        items
            .iter()
            .map(|item| Element::from_reference(self, css, item))
            .collect()
    }
}

/// Sends one request to chromedriver and unwraps its `value`.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
    command: String,
) -> BrowserResult<Value> {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(source) => return Err(BrowserError::Transport { command, source }),
    };
    let status = answer.status();
    let mut answer: Value = match answer.json().await {
        Ok(json) => json,
        Err(source) => return Err(BrowserError::Transport { command, source }),
    };
    let Some(value) = answer.get_mut("value").map(Value::take) else {
        return Err(protocol(
            &command,
            &format!("HTTP {status}, no value"),
            &answer,
        ));
    };
    if status.is_success() {
        return Ok(value);
    }
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    match field("error") {
        Some(error) => Err(BrowserError::WebDriver {
            command,
            status: status.as_u16(),
            error,
            message: field("message").unwrap_or_default(),
        }),
        None => Err(protocol(&command, &format!("HTTP {status}"), &value)),
    }
}

fn protocol(command: &str, detail: &str, value: &Value) -> BrowserError {
    let mut shown = value.to_string();
    if shown.len() > 300 {
        let mut end = 300;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push_str("...");
    }
    BrowserError::Protocol {
        command: command.to_owned(),
        detail: format!("{detail}: {shown}"),
    }
}

fn as_string(command: &str, value: Value) -> BrowserResult<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(protocol(command, "not a string", &other)),
    }
}

/// chromedriver, its temporary directory and the session it serves, as
/// cleaned up on drop (also when starting fails half-way).
#[derive(Debug)]
struct Driver {
    child: Option<Child>,
    port: u16,
    /// Set once the session exists, so that dropping deletes it.
    session: Option<String>,
    /// `profile/` (Chromium's user data), `home/` (its `HOME`) and
    /// `chromedriver.log`; removed last.
    dir: tempfile::TempDir,
}

impl Driver {
    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("chromedriver.log")
    }

    fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn error(&self, what: impl Into<String>) -> BrowserError {
        BrowserError::Driver {
            what: what.into(),
            log: self.tail(30),
        }
    }

    /// Starts chromedriver on a free port (up to three ports, in case
    /// another process takes one between the check and the bind).
    async fn start() -> BrowserResult<Driver> {
        let dir = tempfile::Builder::new()
            .prefix("sealrun-browser-")
            .tempdir()
            .map_err(|source| BrowserError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let mut driver = Driver {
            child: None,
            port: 0,
            session: None,
            dir,
        };
        let home = driver.dir.path().join("home");
        std::fs::create_dir(&home).map_err(|source| BrowserError::Io {
            path: home.clone(),
            source,
        })?;
        let mut last = None;
        for _ in 0..3 {
            match driver.spawn(&home).await {
                Ok(()) => return Ok(driver),
                Err(e) => {
                    driver.kill();
                    last = Some(e);
                }
            }
        }
        // The loop ran at least once and each failed run set `last`.
        Err(last.unwrap_or_else(|| driver.error("not started")))
    }

    async fn spawn(&mut self, home: &Path) -> BrowserResult<()> {
        self.port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .map_err(|source| BrowserError::Io {
                path: self.log(),
                source,
            })?;
        let stderr = log.try_clone().map_err(|source| BrowserError::Io {
            path: self.log(),
            source,
        })?;
        // Chromium makes its scoped directories under TMPDIR and leaves them
        // when it is killed: there, they go with the temporary directory.
        let tmp = home.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|source| BrowserError::Io {
            path: tmp.clone(),
            source,
        })?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", self.port))
            // Chromium inherits this environment: its crash reports, caches
            // and scratch directories stay in the temporary directory.
            .env("HOME", home)
            .env("TMPDIR", &tmp)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            // Its own process group: dropping kills chromedriver and every
            // Chromium process it started, and nothing else.
            .process_group(0)
            .spawn()
            .map_err(|e| self.error(format!("cannot start {CHROMEDRIVER}: {e}")))?;
        self.child = Some(child);
        let status_url = format!("http://127.0.0.1:{}/status", self.port);
        let http = client()?;
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(self.error(format!("exited at start ({status})")));
                }
            }
            let ready = http
                .get(&status_url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(answer) = ready {
                if let Ok(json) = answer.json::<Value>().await {
                    if json["value"]["ready"] == true {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(self.error(format!(
                    "did not answer {status_url} within {DRIVER_START:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kills chromedriver's process group and reaps chromedriver.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group's id is chromedriver's pid (`process_group(0)`).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Deletes the session without a runtime (drop may run on a runtime's
    /// only thread): one HTTP/1.1 request by hand. Chromium quits before
    /// chromedriver answers.
    fn delete_session(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            read_answer(&mut stream);
        }
    }

    /// Kills whatever process still names the temporary directory on its
    /// command line (a Chromium helper that left the process group, such as
    /// the crash handler, whose database is under `HOME`), until none is
    /// left or 5 s have passed.
    fn kill_stragglers(&self) {
        let needle = self.dir.path().as_os_str().as_encoded_bytes();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = pids_naming(needle);
            if pids.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.delete_session();
        self.kill();
        self.kill_stragglers();
        if std::thread::panicking() {
            eprintln!(
                "----- chromedriver log ({}) -----\n{}\n-----",
                self.log().display(),
                self.tail(40)
            );
        }
    }
}

/// Reads one HTTP/1.1 answer with a `Content-Length` (chromedriver keeps
/// the connection open after it, whatever the request's `Connection`),
/// until its end, an error or the stream's read timeout.
fn read_answer(stream: &mut TcpStream) {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
        let Some(head_end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if answer.len() >= head_end + 4 + length {
            return;
        }
    }
}

/// The pids of the live processes whose command line contains `needle`
/// (a zombie's command line is empty).
pub(crate) fn pids_naming(needle: &[u8]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// The HTTP client for chromedriver: loopback only, never through a proxy.
fn client() -> BrowserResult<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(COMMAND_TIMEOUT)
        .build()
        .map_err(|source| BrowserError::Transport {
            command: "building the HTTP client".to_owned(),
            source,
        })
}

/// Headless Chromium with a WebDriver session: see the [module
/// docs](self). Everything it started is gone once it is dropped.
#[derive(Debug)]
pub struct Browser {
    session: Arc<Session>,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session
    /// ([`CHROMIUM_ARGS`], a fresh profile, `acceptInsecureCerts`).
    /// Call [`require_browser`] first: without the binaries this is
    /// [`BrowserError::Missing`].
    pub async fn start() -> BrowserResult<Browser> {
        if let Some(why) = missing_browser() {
            return Err(BrowserError::Missing(why));
        }
        let mut driver = Driver::start().await?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", driver.profile().display()));
        let http = client()?;
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": true,
                    "pageLoadStrategy": "normal",
                    "timeouts": {"pageLoad": 30_000, "script": 30_000, "implicit": 0},
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
                }
            }
        });
        let base = format!("http://127.0.0.1:{}", driver.port);
        let created = send(
            &http,
            reqwest::Method::POST,
            &format!("{base}/session"),
            Some(capabilities),
            "POST /session (new headless Chromium session)".to_owned(),
        )
        .await
        .map_err(|e| driver.error(e.to_string()))?;
        let Some(id) = created["sessionId"].as_str() else {
            return Err(protocol("POST /session", "no sessionId", &created));
        };
        driver.session = Some(id.to_owned());
        Ok(Browser {
            session: Arc::new(Session {
                http,
                url: format!("{base}/session/{id}"),
            }),
            driver,
        })
    }

    /// Chromium's profile directory (`--user-data-dir`), unique to this
    /// browser: every process of it names it on its command line.
    pub fn user_data_dir(&self) -> PathBuf {
        self.driver.profile()
    }

    /// The port chromedriver listens on (`--port=` on its command line).
    pub fn driver_port(&self) -> u16 {
        self.driver.port
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> BrowserResult<()> {
        self.session
            .post("/url", json!({"url": url}), &format!("goto {url}"))
            .await
            .map(drop)
    }

    /// The URL of the page shown (after redirects).
    pub async fn current_url(&self) -> BrowserResult<String> {
        let value = self.session.get("/url", "current URL").await?;
        as_string("GET /url", value)
    }

    /// The page's `<title>`.
    pub async fn title(&self) -> BrowserResult<String> {
        let value = self.session.get("/title", "title").await?;
        as_string("GET /title", value)
    }

    /// The first element matching the CSS selector `css`, now (a
    /// `no such element` error when there is none; see
    /// [`Browser::wait_for`]).
    pub async fn find(&self, css: &str) -> BrowserResult<Element> {
        let what = format!("find `{css}`");
        let found = self
            .session
            .post(
                "/element",
                json!({"using": "css selector", "value": css}),
                &what,
            )
            .await?;
        Element::from_reference(&self.session, css, &found)
    }

    /// Every element matching `css`, in document order (none is not an
    /// error).
    pub async fn find_all(&self, css: &str) -> BrowserResult<Vec<Element>> {
        self.session.find_all(css).await
    }

    /// Polls (every 50 ms) until an element matches `css`; the first one.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> BrowserResult<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(first) = self.find_all(css).await?.into_iter().next() {
                return Ok(first);
            }
            if Instant::now() > deadline {
                return Err(BrowserError::Timeout {
                    what: format!("an element matching `{css}`"),
                    timeout,
                    last: None,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls (every 50 ms) until an element matching `css` has a rendered
    /// text containing `needle`; that element. On a timeout the error shows
    /// the texts last seen.
    pub async fn wait_for_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> BrowserResult<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for element in self.find_all(css).await? {
                match element.text().await {
                    Ok(text) if text.contains(needle) => return Ok(element),
                    Ok(text) => seen.push(text),
                    // Replaced by a script between the find and the read.
                    Err(e) if e.webdriver_error() == Some("stale element reference") => {}
                    Err(e) => return Err(e),
                }
            }
            if Instant::now() > deadline {
                return Err(BrowserError::Timeout {
                    what: format!("`{css}` to contain {needle:?}"),
                    timeout,
                    last: Some(if seen.is_empty() {
                        "no element".to_owned()
                    } else {
                        format!("{seen:?}")
                    }),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The page's current DOM, serialized.
    pub async fn page_source(&self) -> BrowserResult<String> {
        let value = self.session.get("/source", "page source").await?;
        as_string("GET /source", value)
    }

    /// Runs `script` as the body of a function called with `args` (an
    /// element is passed as [`Element::as_arg`]) and returns what it
    /// returns, as JSON; when it returns a promise, what the promise
    /// resolves to (a rejection is a `javascript error`).
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> BrowserResult<Value> {
        self.session
            .post(
                "/execute/sync",
                json!({"script": script, "args": args}),
                "execute script",
            )
            .await
    }

    /// The cookies visible to the current page, `HttpOnly` ones included.
    pub async fn cookies(&self) -> BrowserResult<Vec<Cookie>> {
        let value = self.session.get("/cookie", "cookies").await?;
        serde_json::from_value(value.clone())
            .map_err(|e| protocol("GET /cookie", &format!("not cookies ({e})"), &value))
    }

    /// Deletes the cookies visible to the current page.
    pub async fn delete_cookies(&self) -> BrowserResult<()> {
        self.session
            .delete("/cookie", "delete all cookies")
            .await
            .map(drop)
    }

    /// A PNG of the viewport.
    pub async fn screenshot_png(&self) -> BrowserResult<Vec<u8>> {
        let value = self.session.get("/screenshot", "screenshot").await?;
        let encoded = as_string("GET /screenshot", value)?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| BrowserError::Protocol {
                command: "GET /screenshot".to_owned(),
                detail: format!("not base64: {e}"),
            })
    }

    /// Writes [`Browser::screenshot_png`] to `path` (creating its
    /// directory), e.g. `docs/screenshots/runs.png`.
    pub async fn save_screenshot(&self, path: impl AsRef<Path>) -> BrowserResult<()> {
        let path = path.as_ref();
        let png = self.screenshot_png().await?;
        let io = |source| BrowserError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, png).map_err(io)
    }

    /// Sizes the window so that the page's viewport is `width` x `height`
    /// CSS pixels, e.g. 390 x 844 for a phone: a screenshot then has this
    /// size. (Even headless, Chromium's window has a toolbar's height above
    /// the viewport; the window is resized once more by what is measured.)
    pub async fn set_window_size(&self, width: u32, height: u32) -> BrowserResult<()> {
        self.set_window_rect(width, height).await?;
        let inner = self
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await?;
        let (Some(inner_width), Some(inner_height)) = (inner[0].as_u64(), inner[1].as_u64()) else {
            return Err(protocol(
                "POST /execute/sync (viewport size)",
                "not two numbers",
                &inner,
            ));
        };
        let outer = |want: u32, got: u64| (2 * u64::from(want)).saturating_sub(got);
        if (inner_width, inner_height) != (u64::from(width), u64::from(height)) {
            let (w, h) = (outer(width, inner_width), outer(height, inner_height));
            self.set_window_rect(
                u32::try_from(w).unwrap_or(u32::MAX),
                u32::try_from(h).unwrap_or(u32::MAX),
            )
            .await?;
        }
        Ok(())
    }

    async fn set_window_rect(&self, width: u32, height: u32) -> BrowserResult<()> {
        self.session
            .post(
                "/window/rect",
                json!({"width": width, "height": height}),
                &format!("set window size {width}x{height}"),
            )
            .await
            .map(drop)
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver
    /// (`goog/cdp/execute`), for what WebDriver has no command for, e.g.
    /// `Emulation.setTimezoneOverride` with `{"timezoneId": "Asia/Tokyo"}`;
    /// its result.
    pub async fn cdp(&self, command: &str, params: Value) -> BrowserResult<Value> {
        self.session
            .post(
                "/goog/cdp/execute",
                json!({"cmd": command, "params": params}),
                &format!("DevTools {command}"),
            )
            .await
    }

    /// Gives the browser a virtual WebAuthn authenticator: CTAP2, internal
    /// (a platform authenticator, like a laptop's), with resident keys and
    /// user verification that succeeds. Pages then create and use passkeys
    /// without a person.
    pub async fn add_virtual_authenticator(&self) -> BrowserResult<AuthenticatorId> {
        let value = self
            .session
            .post(
                "/webauthn/authenticator",
                json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                }),
                "add virtual authenticator",
            )
            .await?;
        as_string("POST /webauthn/authenticator", value).map(AuthenticatorId)
    }

    /// The credentials the virtual authenticator `id` holds.
    pub async fn credentials(&self, id: &AuthenticatorId) -> BrowserResult<Vec<Credential>> {
        let path = format!("/webauthn/authenticator/{id}/credentials");
        let value = self.session.get(&path, "list credentials").await?;
        serde_json::from_value(value.clone()).map_err(|e| {
            protocol(
                &format!("GET {path}"),
                &format!("not credentials ({e})"),
                &value,
            )
        })
    }

    /// Removes the virtual authenticator `id` (and its credentials).
    pub async fn remove_virtual_authenticator(&self, id: &AuthenticatorId) -> BrowserResult<()> {
        self.session
            .delete(
                &format!("/webauthn/authenticator/{id}"),
                "remove virtual authenticator",
            )
            .await
            .map(drop)
    }
}

/// An element of the page, found by a CSS selector. It refers to that DOM
/// node: once a script or a navigation replaces it, commands on it fail
/// with `stale element reference`.
#[derive(Clone, Debug)]
pub struct Element {
    session: Arc<Session>,
    id: String,
    /// The selector it was found by, for error messages.
    css: String,
}

impl Element {
    fn from_reference(session: &Arc<Session>, css: &str, value: &Value) -> BrowserResult<Element> {
        let Some(id) = value.get(ELEMENT_KEY).and_then(Value::as_str) else {
            return Err(protocol(
                &format!("find `{css}`"),
                "not an element reference",
                value,
            ));
        };
        Ok(Element {
            session: Arc::clone(session),
            id: id.to_owned(),
            css: css.to_owned(),
        })
    }

    /// This element as an argument of [`Browser::execute`].
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// Clicks it (scrolled into view; an `element click intercepted` error
    /// when something covers it).
    pub async fn click(&self) -> BrowserResult<()> {
        self.session
            .post(
                &format!("/element/{}/click", self.id),
                json!({}),
                &format!("click `{}`", self.css),
            )
            .await
            .map(drop)
    }

    /// Types `text` into it, after what it already holds.
    pub async fn send_keys(&self, text: &str) -> BrowserResult<()> {
        self.session
            .post(
                &format!("/element/{}/value", self.id),
                json!({"text": text}),
                &format!("type into `{}`", self.css),
            )
            .await
            .map(drop)
    }

    /// Empties an input or a text area.
    pub async fn clear(&self) -> BrowserResult<()> {
        self.session
            .post(
                &format!("/element/{}/clear", self.id),
                json!({}),
                &format!("clear `{}`", self.css),
            )
            .await
            .map(drop)
    }

    /// Its rendered text (as a person sees it: hidden parts left out).
    pub async fn text(&self) -> BrowserResult<String> {
        let path = format!("/element/{}/text", self.id);
        let value = self
            .session
            .get(&path, &format!("text of `{}`", self.css))
            .await?;
        as_string(&format!("GET {path}"), value)
    }

    /// Its attribute `name` as written in the HTML, or `None` when it has
    /// none. (A form field's current value, what was typed, is the
    /// [`Element::property`] `value`.)
    pub async fn attr(&self, name: &str) -> BrowserResult<Option<String>> {
        let path = format!("/element/{}/attribute/{name}", self.id);
        match self
            .session
            .get(&path, &format!("attribute {name} of `{}`", self.css))
            .await?
        {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(protocol(&format!("GET {path}"), "not a string", &other)),
        }
    }

    /// Its DOM property `name` (`value`, `checked`, `disabled`...), as
    /// JSON; `null` when it has none.
    pub async fn property(&self, name: &str) -> BrowserResult<Value> {
        self.session
            .get(
                &format!("/element/{}/property/{name}", self.id),
                &format!("property {name} of `{}`", self.css),
            )
            .await
    }
}
