//! The page's data: once (`GET /api/state`) or as a live stream of Server-Sent
//! Events (`GET /api/events`) that follows every change.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use tokio_util::sync::CancellationToken;

use super::Body;
use super::wire::json_response;
use crate::state::Shared;
use crate::view;

/// `GET /api/state`: the whole view, once.
pub(super) fn state(shared: &Shared) -> Response<Body> {
    json_response(StatusCode::OK, &view::build(&shared.snapshot()))
}

/// The live stream: the whole view on connect and after every change
/// (coalesced), a comment every 20 s to keep the connection open.
pub(super) fn events(shared: Arc<Shared>, shutdown: CancellationToken) -> Response<Body> {
    struct Live {
        shared: Arc<Shared>,
        rx: tokio::sync::watch::Receiver<u64>,
        first: bool,
        shutdown: CancellationToken,
    }
    let rx = shared.subscribe();
    let live = Live {
        shared,
        rx,
        first: true,
        shutdown,
    };
    let stream = futures::stream::unfold(live, |mut live| async move {
        if live.first {
            live.first = false;
            live.rx.borrow_and_update();
            let frame = state_event(&live.shared);
            return Some((Ok::<_, Infallible>(Frame::data(frame)), live));
        }
        let next = tokio::select! {
            () = live.shutdown.cancelled() => None,
            changed = live.rx.changed() => match changed {
                Ok(()) => {
                    // Coalesce a burst (a list, a policy reload) into one message.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    live.rx.borrow_and_update();
                    Some(state_event(&live.shared))
                }
                Err(_) => None,
            },
            () = tokio::time::sleep(Duration::from_secs(20)) => Some(Bytes::from_static(b": keep-alive\n\n")),
        };
        next.map(|bytes| (Ok(Frame::data(bytes)), live))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    resp
}

fn state_event(shared: &Shared) -> Bytes {
    let view = view::build(&shared.snapshot());
    let json = serde_json::to_string(&view).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("retry: 2000\nevent: state\ndata: {json}\n\n"))
}
