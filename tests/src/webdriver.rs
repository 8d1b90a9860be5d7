//! Debian's `chromium` driven through `chromedriver` over the W3C WebDriver protocol: the few
//! commands the console's tests use, over the reqwest client the harness already has (a WebDriver
//! crate's dependencies rebuilt the whole tree for a dozen JSON calls).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{ChildGuard, free_port, wait_for_port};

/// The key W3C WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; the driver and the browser stop when it is dropped.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: ChildGuard,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts `chromedriver` and a headless Chromium of `width`×`height`; its log goes to `log`.
    pub async fn start(log: &Path, width: u32, height: u32) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("chromedriver log"))
            .spawn()
            .expect("chromedriver is missing: run `make deps` (Debian's chromium-driver)");
        let driver = ChildGuard(driver);
        wait_for_port(port, Duration::from_secs(20), "chromedriver");
        let http = reqwest::Client::new();
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--window-size={width},{height}")],
            },
        } } });
        let answer = http
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers");
        let body: Value = answer.json().await.expect("a JSON answer");
        let session = body["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {body}")).to_owned();
        Self { http, session: format!("http://127.0.0.1:{port}/session/{session}"), _driver: driver }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.map_err(|e| e.to_string())?;
        let ok = answer.status().is_success();
        let body: Value = answer.json().await.map_err(|e| e.to_string())?;
        if ok { Ok(body["value"].clone()) } else { Err(body["value"].to_string()) }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Opens `url`.
    pub async fn go(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The browser's back button.
    pub async fn back(&self) {
        self.post("/back", json!({})).await;
    }

    /// The page's URL.
    pub async fn url(&self) -> String {
        let url = self.command(reqwest::Method::GET, "/url", None).await.expect("the URL");
        url.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and answers what it returns.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let found =
            self.command(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css })));
        found.await.ok().and_then(|v| v[ELEMENT].as_str().map(|id| Element(id.to_owned())))
    }

    /// Waits up to `timeout` for an element matching `css` whose text contains `text`.
    pub async fn wait_for(&self, css: &str, text: &str, timeout: Duration) -> Element {
        let start = Instant::now();
        loop {
            let script = "for (const e of document.querySelectorAll(arguments[0])) { if (e.textContent.includes(arguments[1])) return e; } return null;";
            let found = self.run(script, vec![json!(css), json!(text)]).await;
            if let Some(id) = found[ELEMENT].as_str() {
                return Element(id.to_owned());
            }
            if start.elapsed() > timeout {
                let page = self.run("return document.body.innerText", vec![]).await;
                panic!(
                    "no {css} with {text:?} after {timeout:?} on {}:\n{}",
                    self.url().await,
                    page.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into `element`.
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.post(&format!("/element/{}/clear", element.0), json!({})).await;
        self.post(&format!("/element/{}/value", element.0), json!({ "text": text })).await;
    }

    /// Types into the input named `name` of the form labelled `form`.
    pub async fn fill(&self, form: &str, name: &str, text: &str) {
        let css = format!("form[aria-label=\"{form}\"] [name=\"{name}\"]");
        let element = self.find(&css).await.unwrap_or_else(|| panic!("no {css}"));
        self.type_into(&element, text).await;
    }

    /// Picks `value` in the select named `name` of the form labelled `form`.
    pub async fn choose(&self, form: &str, name: &str, value: &str) {
        let script = "const s = document.querySelector(arguments[0]); s.value = arguments[1]; return s.value;";
        let css = format!("form[aria-label=\"{form}\"] select[name=\"{name}\"]");
        let chosen = self.run(script, vec![json!(css), json!(value)]).await;
        assert_eq!(chosen, json!(value), "{css} has no option {value}");
    }

    /// Submits the form labelled `form`, as its button would.
    pub async fn submit(&self, form: &str) {
        let css = format!("form[aria-label=\"{form}\"] button[type=submit]");
        let button = self.find(&css).await.unwrap_or_else(|| panic!("no {css}"));
        self.click(&button).await;
    }

    /// Clicks `element`.
    pub async fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({})).await;
    }

    /// The element's visible text.
    pub async fn text(&self, element: &Element) -> String {
        let text = self.command(reqwest::Method::GET, &format!("/element/{}/text", element.0), None).await;
        text.expect("the element's text").as_str().unwrap_or_default().to_owned()
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height })).await;
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await.expect("a screenshot");
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).expect("base64 PNG");
        std::fs::write(path, bytes).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session, which closes the browser; the driver is then killed by its guard.
        // Plain blocking HTTP: a drop cannot await, and may run while a test panics.
        use std::io::{Read, Write};
        let Some(rest) = self.session.strip_prefix("http://") else { return };
        let Some((address, path)) = rest.split_once('/') else { return };
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request =
                format!("DELETE /{path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
    }
}
