//! The `/verify` page (spec/receipts.md §2): a static page, its script and
//! style, and Candor's verifier compiled to WebAssembly (tools/build-web.sh),
//! all embedded in the binary. The page is served with the log's verifier key
//! and origin filled in: the key it pins is the one the log was started with,
//! never one a receipt or a later response names.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("../web/verify.html");
const SCRIPT: &str = include_str!("../web/verify.js");
const STYLE: &str = include_str!("../web/verify.css");
const GLUE: &str = include_str!("../web/pkg/candor_web.js");
const WASM: &[u8] = include_bytes!("../web/pkg/candor_web_bg.wasm");

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

/// The routes of the page, merged into the log's router.
pub fn routes<S: Clone + Send + Sync + 'static>(origin: &str, log_key: &str) -> Router<S> {
    let page = render_page(origin, log_key);
    Router::new()
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

/// The page with `{{ORIGIN}}` and `{{LOG_KEY}}` replaced by HTML-escaped values.
pub fn render_page(origin: &str, log_key: &str) -> String {
    PAGE.replace("{{ORIGIN}}", &escape_html(origin))
        .replace("{{LOG_KEY}}", &escape_html(log_key))
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
        let page = render_page("log.example/<x>", "log.example+0a1b2c3d+\"AQID&'");
        assert!(!page.contains("{{"), "a placeholder is left");
        assert!(page.contains("log.example/&lt;x&gt;"));
        assert!(page.contains("log.example+0a1b2c3d+&quot;AQID&amp;&#39;"));
        assert!(!page.contains("<x>"));
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
