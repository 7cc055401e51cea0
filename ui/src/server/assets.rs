//! The page itself: its HTML, script, styles and icon (compiled into the binary),
//! and the small HTML pages the guards answer with.

use http::Response;
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

use super::Body;
use super::wire::full;

const INDEX_HTML: &str = include_str!("../assets/index.html");
pub(super) const APP_JS: &str = include_str!("../assets/app.js");
pub(super) const STYLE_CSS: &str = include_str!("../assets/style.css");
pub(super) const ICON_SVG: &str = include_str!("../assets/icon.svg");

/// The page: nothing of the user's (its session token comes in the address's
/// fragment), so the access cookie alone reads nothing.
pub(super) fn index() -> Response<Body> {
    html(INDEX_HTML.to_owned())
}

/// A compiled-in asset; the browser revalidates it on every load.
pub(super) fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// A page of one message (escaped) in the page's styles.
pub(super) fn page_error(code: StatusCode, message: &str) -> Response<Body> {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>secret-relay</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head><body><main class=\"gate\"><h1>secret-relay</h1><p>{}</p></main></body></html>",
        escape(message)
    );
    let mut resp = html(body);
    *resp.status_mut() = code;
    resp
}

fn html(body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
