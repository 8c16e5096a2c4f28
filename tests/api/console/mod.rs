//! The admin console over HTTP, as a browser without JavaScript uses it: cookie session, CSRF
//! tokens read from the pages, redirects looked at one by one. The same flows in a real
//! browser are in `browser`.

mod browser;
mod pages;
mod session;

use reqwest::{StatusCode, header, redirect::Policy};

use crate::support::*;

/// A browser's view of the console: one cookie jar, no redirect followed unasked.
pub struct Console<'a> {
    pub app: &'a TestApp,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
    /// The CSRF token of the last page that carried one.
    pub csrf: Option<String>,
}

impl<'a> Console<'a> {
    pub fn new(app: &'a TestApp) -> Console<'a> {
        let client = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        Console { app, client, cookies: Vec::new(), csrf: None }
    }

    /// Opens a console, signed in as `email` (with the test password).
    pub async fn signed_in(app: &'a TestApp, email: &str) -> Console<'a> {
        let mut console = Console::new(app);
        let res = console.sign_in(email, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{email} signs in to the console");
        console
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base)
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    /// Keeps what `Set-Cookie` says, as a browser does (an empty value or `Max-Age=0` deletes).
    fn remember(&mut self, res: &reqwest::Response) {
        for line in res.headers().get_all(header::SET_COOKIE) {
            let line = line.to_str().unwrap();
            let (pair, _) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !line.contains("Max-Age=0") {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        self.get_with(path, &[]).await
    }

    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.get(self.url(path)).header(header::COOKIE, self.cookie_header());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        self.remember(&res);
        res
    }

    /// GET that must answer 200; its HTML, with the page's CSRF token kept for the next form.
    pub async fn page(&mut self, path: &str) -> String {
        let res = self.get(path).await;
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        self.keep_csrf(&body);
        body
    }

    pub fn keep_csrf(&mut self, html: &str) {
        if let Some(token) = hidden(html, "csrf") {
            self.csrf = Some(token);
        }
    }

    /// POSTs a form as the page would, with the CSRF token it carried.
    pub async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = self.csrf.clone().expect("open a page with a form first");
        let mut all: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        all.extend_from_slice(fields);
        self.post_raw(path, &all, &[]).await
    }

    pub async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).header(header::COOKIE, self.cookie_header()).form(fields);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        self.remember(&res);
        res
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> reqwest::Response {
        let form = self.page("/admin/sign-in").await;
        let csrf = hidden(&form, "csrf").expect("the sign-in form carries a token");
        self.post_raw("/admin/sign-in", &[("csrf", &csrf), ("email", email), ("password", password)], &[]).await
    }
}

/// The value of the hidden input `name` in a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}
