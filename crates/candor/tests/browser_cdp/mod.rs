//! A minimal Chrome DevTools Protocol client for the browser tests: Debian's
//! headless Chromium started with `--remote-debugging-pipe`, which speaks CDP
//! as NUL-terminated JSON messages on file descriptors 3 (commands in) and 4
//! (responses and events out). A shell `exec` maps the child's stdin and
//! stdout onto those descriptors, so no WebSocket client is needed.
//!
//! Blocking; the tests call it from `spawn_blocking`.

#![allow(dead_code)] // each test crate uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Flags for every headless Chromium of the tests: no sandbox (CI runs as root), no
/// GPU, and none of the background connections this machine's closed network refuses.
pub const HEADLESS_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
];

/// Where screenshots are kept (uploaded by CI with the test output).
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/browser-screenshots");
    dir
}

/// One headless Chromium with one page attached (flat session mode).
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and opens a blank page of `width` × `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the browser tests need Debian's chromium package \
             (tools/test.sh installs it: apt-get install chromium)"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new("sh")
            .arg("-c")
            // fd 3 := our pipe into Chromium, fd 4 := Chromium's pipe to us.
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(CHROMIUM)
            .args(HEADLESS_FLAGS)
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromium");
        let to = child.stdin.take().expect("chromium's fd 3");
        let from = reader(child.stdout.take().expect("chromium's fd 4"));
        let mut b = Browser {
            child,
            to,
            from,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.browser_call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.browser_call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 }),
        );
        b
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("serialize");
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        self.to.flush().expect("flush to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match self.from.recv_timeout(left) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => panic!("chromium did not answer {method}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium exited during {method}"),
            };
            if m["id"] == id {
                if let Some(e) = m.get("error") {
                    panic!("{method} failed: {e}");
                }
                return m["result"].clone();
            }
            // Events are not needed: the tests poll the page's state.
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params)
    }

    /// A CDP command on the page; panics on a protocol error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    /// Navigates and waits until the new document's `readyState` is complete. The old
    /// document is marked first: right after `Page.navigate` it may still be the one
    /// answering (complete, with its old verdict), and a change of fragment only
    /// reloads the page once its `hashchange` handler runs.
    pub fn goto(&mut self, url: &str) {
        self.eval("window.__candorLeaving = true");
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_for(
            "!window.__candorLeaving && document.readyState === 'complete'",
            "the page to load",
        );
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            // userGesture: as if the person acted (the clipboard needs it).
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true, "userGesture": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is true (at most 20 s).
    pub fn wait_for(&mut self, expr: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        // A document still loading may lack what `expr` reads (no body yet): not yet.
        let poll =
            format!("(() => {{ try {{ return !!({expr}); }} catch (e) {{ return false; }} }})()");
        while self.eval(&poll) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page text:\n{}",
                self.eval("document.body ? document.body.innerText : ''")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the page decided (`document.body.dataset.verdict`) and
    /// returns the verdict.
    pub fn verdict(&mut self) -> String {
        self.wait_for("document.body.dataset.verdict", "a verdict");
        self.eval("document.body.dataset.verdict")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's visible text.
    pub fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a full-page screenshot as `name`.png under [`screenshot_dir`].
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// Presses and releases a key as the keyboard would (trusted events).
    pub fn key(&mut self, key: &str) {
        let (code, vk, text) = match key {
            "Tab" => ("Tab", 9, ""),
            "Enter" => ("Enter", 13, "\r"),
            " " => ("Space", 32, " "),
            other => panic!("no key mapping for {other:?}"),
        };
        let mut down = json!({
            "type": if text.is_empty() { "rawKeyDown" } else { "keyDown" },
            "key": key, "code": code, "windowsVirtualKeyCode": vk,
        });
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk }),
        );
    }

    /// Puts `text` on the system clipboard, focuses the element matching
    /// `selector` and presses Ctrl+V: a trusted `paste` event carrying the
    /// clipboard data, as when a person pastes.
    pub fn paste(&mut self, selector: &str, text: &str) {
        self.browser_call(
            "Browser.grantPermissions",
            json!({ "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"] }),
        );
        // The clipboard API needs a focused document; a headless page under load
        // may not have the focus yet.
        self.call("Page.bringToFront", json!({}));
        self.call(
            "Emulation.setFocusEmulationEnabled",
            json!({ "enabled": true }),
        );
        let wrote = self.eval(&format!(
            "navigator.clipboard.writeText({}).then(() => 'ok', (e) => String(e))",
            json!(text)
        ));
        assert_eq!(wrote, json!("ok"), "could not fill the clipboard");
        self.eval(&format!(
            "document.querySelector({}).focus()",
            json!(selector)
        ));
        let v = json!({ "key": "v", "code": "KeyV", "windowsVirtualKeyCode": 86, "modifiers": 2 });
        let mut down = v.clone();
        down["type"] = json!("rawKeyDown");
        down["commands"] = json!(["paste"]);
        self.call("Input.dispatchKeyEvent", down);
        let mut up = v;
        up["type"] = json!("keyUp");
        self.call("Input.dispatchKeyEvent", up);
    }

    /// Types `text` into the focused field (Input.insertText).
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// The element that has the focus: its id, or its tag and text.
    pub fn focused(&mut self) -> String {
        self.eval(
            "(() => { const e = document.activeElement; if (!e || e === document.body) return 'body'; \
             return e.id ? '#' + e.id : e.tagName.toLowerCase() + ':' + e.textContent.trim(); })()",
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The centre of the element matching `selector`, scrolled into view.
    pub fn centre(&mut self, selector: &str) -> (f64, f64) {
        let r = self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            s = json!(selector)
        ));
        (r[0].as_f64().expect("x"), r[1].as_f64().expect("y"))
    }

    /// Drags the files at `paths` onto the element matching `selector` and
    /// drops them there (Input.dispatchDragEvent: enter, over, drop).
    pub fn drop_files(&mut self, selector: &str, paths: &[&Path]) {
        let (x, y) = self.centre(selector);
        let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let data = json!({ "items": [], "files": files, "dragOperationsMask": 1 });
        for t in ["dragEnter", "dragOver", "drop"] {
            self.call(
                "Input.dispatchDragEvent",
                json!({ "type": t, "x": x, "y": y, "data": data }),
            );
        }
    }

    /// The full accessibility tree (Accessibility.getFullAXTree).
    pub fn ax_tree(&mut self) -> AxTree {
        self.call("Accessibility.enable", json!({}));
        let r = self.call("Accessibility.getFullAXTree", json!({}));
        AxTree {
            nodes: r["nodes"].as_array().expect("AX nodes").clone(),
        }
    }

    /// Each visible element matching one of `selectors` with text: (selector,
    /// its text, its computed colour, the computed background colour it is
    /// drawn on — the first non-transparent one up its ancestors).
    pub fn colours(&mut self, selectors: &[&str]) -> Vec<(String, String, String, String)> {
        let v = self.eval(&format!(
            "(() => {{ \
               const bg = (e) => {{ for (; e; e = e.parentElement) {{ \
                 const c = getComputedStyle(e).backgroundColor; \
                 if (c !== 'transparent' && !/^rgba\\(.*,\\s*0\\)$/.test(c)) return c; }} \
                 return 'rgb(255, 255, 255)'; }}; \
               const out = []; \
               for (const sel of {sels}) for (const e of document.querySelectorAll(sel)) {{ \
                 const t = e.textContent.trim(); \
                 if (!t || !e.getClientRects().length) continue; \
                 out.push([sel, t.slice(0, 60), getComputedStyle(e).color, bg(e)]); }} \
               return out; }})()",
            sels = json!(selectors)
        ));
        v.as_array()
            .expect("colours")
            .iter()
            .map(|r| {
                let s = |i: usize| r[i].as_str().unwrap_or_default().to_string();
                (s(0), s(1), s(2), s(3))
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits Chromium's output into messages on a reader thread.
fn reader(out: ChildStdout) -> Receiver<Value> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        loop {
            let mut buf = Vec::new();
            match r.read_until(0, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if buf.last() == Some(&0) {
                buf.pop();
            }
            let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
                continue;
            };
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    rx
}

/// An accessibility tree, as Accessibility.getFullAXTree returns it.
pub struct AxTree {
    pub nodes: Vec<Value>,
}

impl AxTree {
    /// The nodes a screen reader sees (not ignored).
    pub fn visible(&self) -> impl Iterator<Item = &Value> {
        self.nodes.iter().filter(|n| n["ignored"] != true)
    }

    fn node(&self, id: &Value) -> Option<&Value> {
        self.nodes.iter().find(|n| &n["nodeId"] == id)
    }

    /// The node's children that are not ignored (looking through ignored ones).
    pub fn children(&self, n: &Value) -> Vec<&Value> {
        let mut out = Vec::new();
        for id in n["childIds"].as_array().into_iter().flatten() {
            if let Some(c) = self.node(id) {
                if c["ignored"] == true {
                    out.extend(self.children(c));
                } else {
                    out.push(c);
                }
            }
        }
        out
    }

    /// The text a screen reader reads inside the node (its static text).
    pub fn text(&self, n: &Value) -> String {
        if role(n) == "StaticText" {
            return name(n).to_string();
        }
        self.children(n)
            .iter()
            .map(|c| self.text(c))
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// An AX node's role.
pub fn role(n: &Value) -> &str {
    n["role"]["value"].as_str().unwrap_or_default()
}

/// An AX node's computed accessible name.
pub fn name(n: &Value) -> &str {
    n["name"]["value"].as_str().unwrap_or_default()
}

/// An AX node's property `prop` (e.g. `live`, `focusable`).
pub fn property<'a>(n: &'a Value, prop: &str) -> Option<&'a Value> {
    n["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == prop)
        .map(|p| &p["value"]["value"])
}

/// WCAG 2.x relative luminance of an sRGB colour.
pub fn luminance(rgb: [f64; 3]) -> f64 {
    let lin = |c: f64| {
        let c = c / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(rgb[0]) + 0.7152 * lin(rgb[1]) + 0.0722 * lin(rgb[2])
}

/// WCAG 2.x contrast ratio of two colours.
pub fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// Parses a computed `rgb(r, g, b)` / `rgba(r, g, b, a)` colour.
pub fn parse_rgb(s: &str) -> [f64; 3] {
    let inner = s
        .trim()
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')');
    let v: Vec<f64> = inner
        .split(',')
        .map(|p| p.trim().parse().unwrap_or_else(|_| panic!("colour {s:?}")))
        .collect();
    [v[0], v[1], v[2]]
}
