//! The web console as a program sees it (no browser): signing in through the
//! real sign-in form, then pages and forms with the session's cookie and
//! CSRF token. The browser tests drive the same pages in Chromium.

use crate::client::https_client_with;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use std::path::Path;

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "__Host-sealrun-session";

/// An answer of the console: status, headers, body.
#[derive(Debug)]
pub struct Page {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub text: String,
}

impl Page {
    /// The `Location` a redirect sends to.
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The value of the first `<input name="NAME" ... value="...">` of the page.
    pub fn input_value(&self, name: &str) -> Option<String> {
        let at = self.text.find(&format!("name=\"{name}\""))?;
        let tag_start = self.text[..at].rfind('<')?;
        let tag_end = at + self.text[at..].find('>')?;
        let tag = &self.text[tag_start..tag_end];
        let v = tag.find("value=\"")? + "value=\"".len();
        let end = tag[v..].find('"')?;
        Some(tag[v..v + end].to_owned())
    }
}

/// A console client: HTTPS pinned to the server's CA, redirects not
/// followed (tests look at them), and the session cookie once signed in.
#[derive(Debug, Clone)]
pub struct Console {
    url: String,
    http: reqwest::Client,
    /// The session cookie's value (empty before sign-in).
    pub session: String,
    /// The CSRF token of the session's forms (read off a page).
    pub csrf: String,
}

/// The value of cookie `name` in `Set-Cookie` headers.
pub fn cookie_value(set_cookies: &[String], name: &str) -> Option<String> {
    set_cookies.iter().find_map(|c| {
        let (pair, _) = c.split_once(';').unwrap_or((c, ""));
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_owned())
    })
}

impl Console {
    /// A client of the console at `url` (the server's, without `/ui`).
    pub fn new(url: &str, ca_cert: &Path) -> Console {
        Console {
            url: url.to_owned(),
            http: https_client_with(ca_cert, reqwest::redirect::Policy::none()),
            session: String::new(),
            csrf: String::new(),
        }
    }

    /// Signs in with `token` through the sign-in form; panics unless it
    /// worked. Returns the sign-in answer (a redirect).
    pub async fn sign_in(&mut self, token: &str) -> Page {
        let page = self.try_sign_in(token).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "sign-in failed: {}",
            page.text
        );
        self.session = cookie_value(&page.set_cookies(), SESSION_COOKIE)
            .expect("the sign-in sets the session cookie");
        let runs = self.get("/ui/runs").await;
        self.csrf = runs
            .input_value("csrf")
            .expect("a page has the sign-out form");
        page
    }

    /// Posts the sign-in form with `token`, whatever comes of it.
    pub async fn try_sign_in(&self, token: &str) -> Page {
        let form = self.raw_get("/ui/login", None).await;
        let login_cookie = cookie_value(&form.set_cookies(), "__Host-sealrun-login")
            .expect("the sign-in form sets its CSRF cookie");
        let csrf = form
            .input_value("csrf")
            .expect("the sign-in form has a CSRF field");
        self.raw_post(
            "/ui/login",
            Some(&format!("__Host-sealrun-login={login_cookie}")),
            &[("csrf", &csrf), ("token", token)],
            &[],
        )
        .await
    }

    /// `GET path` with the session's cookie.
    pub async fn get(&self, path: &str) -> Page {
        self.raw_get(path, self.cookie().as_deref()).await
    }

    /// `POST path` with the session's cookie and `fields` (form-encoded),
    /// adding the session's CSRF token unless `fields` has a `csrf`.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            all.push(("csrf", &self.csrf));
        }
        self.raw_post(path, self.cookie().as_deref(), &all, &[])
            .await
    }

    /// `POST path` with the session's cookie, exactly `fields` and extra
    /// `headers`.
    pub async fn post_exactly(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        self.raw_post(path, self.cookie().as_deref(), fields, headers)
            .await
    }

    /// `POST path` with exactly `cookie` (a `Cookie` header value) and
    /// `fields`.
    pub async fn raw_post_with_cookie(
        &self,
        path: &str,
        cookie: &str,
        fields: &[(&str, &str)],
    ) -> Page {
        self.raw_post(path, Some(cookie), fields, &[]).await
    }

    fn cookie(&self) -> Option<String> {
        (!self.session.is_empty()).then(|| format!("{SESSION_COOKIE}={}", self.session))
    }

    /// `GET path` with `cookie` (a `Cookie` header value), if any.
    pub async fn raw_get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        Self::page(req, path).await
    }

    async fn raw_post(
        &self,
        path: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::page(req, path).await
    }

    async fn page(req: reqwest::RequestBuilder, path: &str) -> Page {
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("console {path}: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("console {path}: reading the body: {e}"));
        Page {
            status,
            headers,
            text,
        }
    }
}
