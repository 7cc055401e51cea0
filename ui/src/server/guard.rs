//! The guards every request passes, in order: the Host header (DNS rebinding), the
//! trade of the printed address's token for a cookie, the access token cookie, for
//! every `/api/` request the page's session token, and for writes the Origin,
//! `Sec-Fetch-Site` and a JSON body; and the security headers every answer carries.
//!
//! The cookie alone opens nothing but the page, which holds nothing of the user's.
//! A browser sends a `127.0.0.1` cookie to every port of `127.0.0.1`, so a page
//! served from another local port could make it send the cookie to a listener of
//! its own. The session token (`X-CSRF-Token`) reaches the page only in the
//! fragment of the redirect that sets the cookie; the page keeps it in
//! `sessionStorage`, which is the page's own origin's, port included.

use std::net::SocketAddr;

use base64::Engine as _;
use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, HeaderValue, LOCATION, ORIGIN, SET_COOKIE,
};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Body;
use super::assets::page_error;
use super::wire::{empty, json_response, text};

/// Nothing but the binary's own script, styles and images; no inline code, no
/// frames, no plugins, forms only to itself, and DOM sinks only through
/// Trusted Types (the script builds the page with `textContent`).
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// The checks every request passes.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    token: String,
    csrf: String,
    cookie: String,
    /// Host header values accepted; empty when bound to a non-loopback address.
    hosts: Vec<String>,
}

impl Guard {
    pub(crate) fn new(addr: SocketAddr, token: String, csrf: String) -> Guard {
        let port = addr.port();
        let hosts = if addr.ip().is_loopback() {
            let mut hosts = vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ];
            // Another loopback address it was bound to (127.0.0.2, ...): the one printed.
            if !hosts.contains(&addr.to_string()) {
                hosts.push(addr.to_string());
            }
            hosts
        } else {
            Vec::new()
        };
        Guard {
            token,
            csrf,
            // Cookies ignore ports: one name per port keeps two pages apart.
            cookie: format!("secret_relay_ui_{port}"),
            hosts,
        }
    }
}

/// A random URL-safe token of 256 bits.
pub(crate) fn random_token() -> Option<String> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The answer to a request the guards stop or answer themselves: a foreign Host
/// header, the printed address (its token traded for a cookie), no access cookie, a
/// write not from the page. `None` lets the request through to its route.
pub(super) fn check(req: &Request<Incoming>, guard: &Guard) -> Option<Response<Body>> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !guard.hosts.is_empty() && !guard.hosts.iter().any(|h| h == host) {
        return Some(text(
            StatusCode::MISDIRECTED_REQUEST,
            "this page answers only on its loopback address (unexpected Host header)\n",
        ));
    }
    let method = req.method();
    let path = req.uri().path();
    // The address printed at start carries the token: trade it for a cookie.
    if *method == Method::GET
        && path == "/"
        && let Some(offered) = query_param(req.uri().query(), "token")
    {
        return Some(trade_token(guard, &offered));
    }
    // The static assets hold nothing of the user's: the error pages use the styles.
    let is_asset = *method == Method::GET && path.starts_with("/assets/");
    if !is_asset && !has_cookie(req, &guard.cookie, &guard.token) {
        return Some(page_error(
            StatusCode::UNAUTHORIZED,
            "Open the address that secret-relay ui printed when it started: it carries the access token.",
        ));
    }
    if path.starts_with("/api/") && !has_session(req, &guard.csrf) {
        return Some(json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": {"code": 403, "reason": "CSRF", "message": "missing or wrong X-CSRF-Token: the page's session token, which the printed address gives the page; open that address again"}}),
        ));
    }
    if *method != Method::GET
        && *method != Method::HEAD
        && let Err(why) = check_write(req, host)
    {
        return Some(json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": {"code": 403, "reason": "CSRF", "message": why}}),
        ));
    }
    None
}

/// The headers every answer carries: the [`CSP`], no sniffing, no framing, no
/// referrer, no cross-origin use, and no caching unless the answer says otherwise.
pub(super) fn secure_headers(h: &mut http::HeaderMap) {
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), clipboard-read=()",
    );
    if !h.contains_key(CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
}

/// The printed address's token, `offered`: a redirect to the page that sets the
/// access cookie, or the page saying it is not valid.
fn trade_token(guard: &Guard, offered: &str) -> Response<Body> {
    if !same(offered, &guard.token) {
        return page_error(
            StatusCode::FORBIDDEN,
            "This access token is not valid. Open the address that secret-relay ui printed when it started.",
        );
    }
    let mut resp = empty(StatusCode::SEE_OTHER);
    // The session token goes in the fragment: the browser keeps it for the page and
    // never sends it back in a request line, a Referer or a history entry of it.
    if let Ok(v) = HeaderValue::from_str(&format!("/#csrf={}", guard.csrf)) {
        resp.headers_mut().insert(LOCATION, v);
    }
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        guard.cookie, guard.token
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}

/// Whether an `/api/` request carries the page's session token: the
/// `X-CSRF-Token` header, or for the live stream (an `EventSource` sends no
/// header) the `csrf` query parameter of `GET /api/events`.
fn has_session(req: &Request<Incoming>, csrf: &str) -> bool {
    let header = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok());
    let offered = match header {
        Some(h) => Some(h.to_owned()),
        None if *req.method() == Method::GET && req.uri().path() == "/api/events" => {
            query_param(req.uri().query(), "csrf")
        }
        None => None,
    };
    offered.is_some_and(|o| same(&o, csrf))
}

/// A write must come from the page itself (its session token is checked for every
/// `/api/` request): a JSON body, and no cross-site Origin or `Sec-Fetch-Site`.
fn check_write(req: &Request<Incoming>, host: &str) -> Result<(), String> {
    let headers = req.headers();
    if let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok())
        && origin != format!("http://{host}")
    {
        return Err(format!("cross-origin write from {origin} refused"));
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
    {
        return Err(format!("a {site} write is refused"));
    }
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if req.method() != Method::DELETE && !json {
        return Err("writes must send application/json".to_owned());
    }
    Ok(())
}

fn has_cookie(req: &Request<Incoming>, name: &str, token: &str) -> bool {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == name && same(v, token))
}

/// Constant-time string equality (tokens).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn the_loopback_guard_accepts_only_its_own_host_names() {
        let g = Guard::new("127.0.0.1:8090".parse().unwrap(), "t".into(), "c".into());
        assert!(g.hosts.contains(&"localhost:8090".to_owned()));
        assert!(!g.hosts.contains(&"evil.example:8090".to_owned()));
        let other = Guard::new("127.0.0.2:8090".parse().unwrap(), "t".into(), "c".into());
        assert!(other.hosts.contains(&"127.0.0.2:8090".to_owned()));
        let open = Guard::new("0.0.0.0:8090".parse().unwrap(), "t".into(), "c".into());
        assert!(open.hosts.is_empty());
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token().unwrap());
    }
}
