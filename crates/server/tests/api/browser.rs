//! A real browser for the page tests: Debian's `chromium`, headless, driven
//! through `chromedriver` (WebDriver) with fantoccini, against the real server
//! on its random port. Nothing is installed here: `scripts/test` and `.ci/run`
//! install chromium, chromium-driver and axe-core. Without them these tests
//! print `SKIPPED (browser)` and pass, except in CI (`CI` set), where they fail.
//!
//! At most two browsers run at once (the machine has two cores).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, SemaphorePermit};

static SLOTS: Semaphore = Semaphore::const_new(2);

/// chromedriver: `WAYMARK_CHROMEDRIVER`, else Debian's.
fn driver_path() -> PathBuf {
    std::env::var_os("WAYMARK_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// chromium: `WAYMARK_CHROMIUM`, else Debian's.
fn chromium_path() -> PathBuf {
    std::env::var_os("WAYMARK_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// axe-core's script: `WAYMARK_AXE`, else where `scripts/test` installs it.
fn axe_path() -> PathBuf {
    std::env::var_os("WAYMARK_AXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/browser-tools/node_modules/axe-core/axe.min.js")
        })
}

fn missing(what: &str) -> Option<Browser> {
    if std::env::var_os("CI").is_some() {
        panic!(
            "{what} is missing: .ci/run installs Debian's chromium and chromium-driver and axe-core (see scripts/test)"
        );
    }
    eprintln!("SKIPPED (browser): {what} is missing; run scripts/test to install it");
    None
}

/// A headless chromium with its own profile, closed when dropped.
pub struct Browser {
    pub c: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    _slot: SemaphorePermit<'static>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group: end chromium with it.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

/// Starts a browser, or `None` (skipped) when chromium is not installed.
pub async fn browser() -> Option<Browser> {
    browser_with(false).await
}

/// A browser that prefers the dark colour scheme (`prefers-color-scheme: dark`).
pub async fn dark_browser() -> Option<Browser> {
    browser_with(true).await
}

async fn browser_with(dark: bool) -> Option<Browser> {
    let driver = driver_path();
    let chromium = chromium_path();
    if !driver.exists() {
        return missing(&format!("chromedriver ({})", driver.display()));
    }
    if !chromium.exists() {
        return missing(&format!("chromium ({})", chromium.display()));
    }
    let slot = SLOTS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    use std::os::unix::process::CommandExt;
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{url}/status")).send().await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "chromedriver did not answer on port {port}");
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--window-size=1280,1000".into(),
        "--no-first-run".into(),
        "--disable-extensions".into(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    if dark {
        // Blink's preferred colour scheme: 0 is dark.
        args.push("--blink-settings=preferredColorScheme=0".into());
    }
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": chromium.to_string_lossy(), "args": args},
    });
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(caps.as_object().unwrap().clone());
    let c = builder
        .connect(&url)
        .await
        .expect("open a chromium session");
    Some(Browser {
        c,
        driver: child,
        _profile: profile,
        _slot: slot,
    })
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.c
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "no element {css} on {}: {e}\n{}",
                self.url().await,
                self.c.source().await.unwrap_or_default()
            ),
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// Clicks (a submit button or a link) and waits until the page it leads
    /// to has loaded: the old document is marked first, so its own
    /// `readyState` is never taken for the new one's.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.c
            .execute("window.__waymarkOld = true;", vec![])
            .await
            .unwrap();
        e.click().await.unwrap();
        for _ in 0..400 {
            let loaded = self
                .c
                .execute(
                    "return window.__waymarkOld === undefined && document.readyState === 'complete'",
                    vec![],
                )
                .await
                .unwrap_or(Value::Bool(false));
            if loaded == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("clicking {css} led to no new page within 10 s");
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// The visible text of the page.
    pub async fn body(&self) -> String {
        self.text("body").await
    }

    pub async fn url(&self) -> String {
        self.c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    pub async fn title(&self) -> String {
        self.c.title().await.unwrap()
    }

    /// Signs in through the form.
    pub async fn sign_in(&self, base: &str, email: &str, password: &str) {
        self.goto(&format!("{base}/login")).await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("form[action='/login'] button[type=submit]")
            .await;
    }

    /// Runs axe-core on the page: panics listing every serious or critical
    /// violation.
    pub async fn assert_accessible(&self) {
        let path = axe_path();
        let Ok(axe) = std::fs::read_to_string(&path) else {
            if std::env::var_os("CI").is_some() {
                panic!("axe-core is missing at {}", path.display());
            }
            eprintln!(
                "SKIPPED (axe): {} is missing; run scripts/test",
                path.display()
            );
            return;
        };
        self.c.execute(&axe, vec![]).await.expect("load axe-core");
        let result = self
            .c
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                   .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => ({id: v.id, impact: v.impact, help: v.help,
                                 nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))))
                   .catch(e => done([{id: 'axe-error', help: String(e)}]));",
                vec![],
            )
            .await
            .expect("run axe-core");
        let violations = result.as_array().cloned().unwrap_or_default();
        assert!(
            violations.is_empty(),
            "axe found serious or critical violations on {}: {:#}",
            self.url().await,
            Value::Array(violations)
        );
    }

    /// Whether the page renders in the dark scheme.
    pub async fn is_dark(&self) -> bool {
        self.c
            .execute(
                "return matchMedia('(prefers-color-scheme: dark)').matches",
                vec![],
            )
            .await
            .unwrap()
            == Value::Bool(true)
    }

    /// Narrows the window to a phone's width (375 px) or back.
    pub async fn set_width(&self, width: u32) {
        self.c.set_window_size(width, 900).await.unwrap();
    }

    /// The elements that make the page wider than the window (a horizontal
    /// scroll bar): none when it fits.
    pub async fn overflowing(&self) -> Vec<String> {
        let found = self
            .c
            .execute(
                "const w = document.documentElement.clientWidth;
                 if (document.documentElement.scrollWidth <= w) { return []; }
                 return [...document.querySelectorAll('body *')]
                   .filter(e => e.getBoundingClientRect().right > w + 1)
                   .slice(0, 8)
                   .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + e.className);",
                vec![],
            )
            .await
            .unwrap();
        found
            .as_array()
            .map(|a| a.iter().map(|v| v.to_string()).collect())
            .unwrap_or_default()
    }

    /// Saves a PNG of the page (for the docs) when `WAYMARK_SCREENSHOTS` names
    /// a folder.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("WAYMARK_SCREENSHOTS") else {
            return;
        };
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(self) {
        let _ = self.c.clone().close().await;
    }
}
