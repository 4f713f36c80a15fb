//! The `/verify` page (spec/receipts.md §4): a static page, its script and
//! style, and Candor's verifier compiled to WebAssembly (tools/build-web.sh),
//! all embedded in the binary. The page is served with the log's verifier key
//! and origin filled in, and for a log with witnesses its trust policy (C2SP
//! tlog-policy: the log key and `--witness-quorum` of the witnesses): the key
//! and policy it pins are the ones the log was started with, never ones a
//! receipt or a later response names. The policy is also served as text at
//! `/verify/trust-policy`, for `candor verify --trust-policy`.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("../web/verify.html");
const SCRIPT: &str = include_str!("../web/verify.js");
const STYLE: &str = include_str!("../web/verify.css");
const GLUE: &str = include_str!("../../candor-web/pkg/candor_web.js");
const WASM: &[u8] = include_bytes!("../../candor-web/pkg/candor_web_bg.wasm");

/// Nothing but this origin's own script, style, wasm and API; no inline code,
/// no framing, no form posts. `'wasm-unsafe-eval'` lets the page compile its
/// WebAssembly without allowing JavaScript `eval`.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The page embeds the log's key, which never changes for a data directory,
/// but a short lifetime keeps a rotated deployment honest.
const PAGE_CACHE: &str = "public, max-age=300";
/// Assets change only with the binary.
const ASSET_CACHE: &str = "public, max-age=3600";

/// The routes of the page, merged into the log's router. `policy` is the
/// log's trust policy text, for a log with witnesses.
pub fn routes<S: Clone + Send + Sync + 'static>(
    origin: &str,
    log_key: &str,
    policy: Option<&str>,
) -> Router<S> {
    let page = render_page(origin, log_key, policy);
    let mut router = Router::new();
    if let Some(policy) = policy {
        let policy = policy.to_string();
        router = router.route(
            "/verify/trust-policy",
            get(move || {
                let policy = policy.clone();
                async move { respond("text/plain; charset=utf-8", PAGE_CACHE, policy.into_bytes()) }
            }),
        );
    }
    router
        .route(
            "/verify",
            get(move || {
                let page = page.clone();
                async move { respond("text/html; charset=utf-8", PAGE_CACHE, page.into_bytes()) }
            }),
        )
        .route(
            "/verify/verify.js",
            get(|| async { respond("text/javascript; charset=utf-8", ASSET_CACHE, SCRIPT) }),
        )
        .route(
            "/verify/verify.css",
            get(|| async { respond("text/css; charset=utf-8", ASSET_CACHE, STYLE) }),
        )
        .route(
            "/verify/candor_web.js",
            get(|| async { respond("text/javascript; charset=utf-8", ASSET_CACHE, GLUE) }),
        )
        .route(
            "/verify/candor_web_bg.wasm",
            get(|| async { respond("application/wasm", ASSET_CACHE, WASM) }),
        )
}

/// The page with `{{ORIGIN}}`, `{{LOG_KEY}}` and `{{POLICY}}` replaced by
/// HTML-escaped values. Without a policy its section stays `hidden` and
/// empty, which the page's script reads as "no witnesses required".
pub fn render_page(origin: &str, log_key: &str, policy: Option<&str>) -> String {
    PAGE.replace("{{ORIGIN}}", &escape_html(origin))
        .replace("{{LOG_KEY}}", &escape_html(log_key))
        .replace(
            "{{POLICY_HIDDEN}}",
            if policy.is_some() { "" } else { " hidden" },
        )
        .replace("{{POLICY}}", &escape_html(policy.unwrap_or("")))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn respond(content_type: &'static str, cache: &'static str, body: impl IntoResponse) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_escaped() {
        let page = render_page("log.example/<x>", "log.example+0a1b2c3d+\"AQID&'", None);
        assert!(!page.contains("{{"), "a placeholder is left");
        assert!(page.contains("log.example/&lt;x&gt;"));
        assert!(page.contains("log.example+0a1b2c3d+&quot;AQID&amp;&#39;"));
        assert!(!page.contains("<x>"));
        assert!(page.contains("<section id=\"policy-box\" hidden"));
        assert!(page.contains("<pre id=\"trust-policy\"></pre>"));

        let policy = "log k\nwitness w0 <k0>\nquorum w0\n";
        let page = render_page("log.example", "k", Some(policy));
        assert!(!page.contains("{{"), "a placeholder is left");
        assert!(page.contains("<section id=\"policy-box\" aria-labelledby"));
        assert!(
            page.contains(
                "<pre id=\"trust-policy\">log k\nwitness w0 &lt;k0&gt;\nquorum w0\n</pre>"
            )
        );
    }

    #[test]
    fn page_has_no_inline_code_or_third_party_assets() {
        // The CSP forbids inline script and style; the page must not need them.
        assert!(!PAGE.contains("<style"));
        assert!(!PAGE.contains(" style="));
        assert!(PAGE.contains("<script type=\"module\" src=\"verify/verify.js\"></script>"));
        assert_eq!(PAGE.matches("<script").count(), 1);
        for text in [PAGE, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(WASM.starts_with(b"\0asm"));
    }
}
