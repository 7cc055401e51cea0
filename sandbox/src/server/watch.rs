//! Watches: selector-aware event conversion, bookmarks, timeouts and the chunked stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::objects::meta_str;
use super::request::{
    Req, field_extras, list_query_conversion, parse_resource_version, validate_list_options,
};
use super::response::plain_error;
use super::{Body, DEFAULT_WATCH_TIMEOUT, Shared};
use crate::resource::ResourceKind;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::Status;
use crate::store::{self, Event, EventType};
use crate::table;

/// Which objects a watch sees.
struct WatchFilter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| meta_str(obj, "namespace") == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }

    /// The event a watcher with this filter sees for a stored change, as kube's cacher decides it.
    fn convert(&self, event: &Event) -> Option<(&'static str, Value)> {
        let now = self.matches(&event.object);
        match event.kind {
            EventType::Added => now.then(|| ("ADDED", event.object.clone())),
            EventType::Deleted => now.then(|| ("DELETED", event.object.clone())),
            EventType::Modified => {
                let before = event.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some(("MODIFIED", event.object.clone())),
                    (false, true) => Some(("ADDED", event.object.clone())),
                    (true, false) => {
                        // the previous state, at this event's resourceVersion
                        let mut old = event.old.clone().unwrap_or(Value::Null);
                        old["metadata"]["resourceVersion"] =
                            event.object["metadata"]["resourceVersion"].clone();
                        Some(("DELETED", old))
                    }
                    (false, false) => None,
                }
            }
        }
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark(kind: &ResourceKind, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta}),
    )
}

pub(super) fn start_watch(
    shared: Arc<Shared>,
    req: &Req,
    kind: ResourceKind,
    ns: Option<&str>,
) -> Result<Response<Body>, Status> {
    list_query_conversion(req)?;
    let filter = WatchFilter {
        namespace: ns.map(str::to_owned),
        labels: LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())?,
        fields: FieldSelector::parse(
            req.query.get("fieldSelector").unwrap_or_default(),
            field_extras(&kind),
        )?,
    };
    validate_list_options(req, true)?;
    // The watch cache's ParseResourceVersion error reaches the client as a plain error.
    let rv = parse_resource_version(req.query.get("resourceVersion")).map_err(plain_error)?;
    let send_initial = req.query.flag("sendInitialEvents");
    let bookmarks = req.query.flag("allowWatchBookmarks");
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let start = shared.db().watch(&kind, rv, send_initial);
    shared.watches_started.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    match start {
        Err(oldest) => {
            let status = Status::expired(format!(
                "too old resource version: {} ({oldest})",
                rv.unwrap_or_default()
            ));
            // The channel has room: this is the first message.
            let _ = tx.try_send(event_line("ERROR", &status.to_json()));
        }
        Ok(start) => {
            let render = Render {
                kind,
                table: req.table(),
                metadata_only: req.metadata_only(),
                first: true,
            };
            tokio::spawn(run_watch(
                shared,
                render,
                filter,
                start,
                tx,
                WatchOptions {
                    bookmarks,
                    send_initial,
                    timeout,
                },
            ));
        }
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

struct WatchOptions {
    bookmarks: bool,
    send_initial: bool,
    timeout: Duration,
}

/// Encodes watch events: the object itself, or a one-row Table (columns in the first only).
struct Render {
    kind: ResourceKind,
    table: Option<table::IncludeObject>,
    metadata_only: bool,
    first: bool,
}

impl Render {
    fn line(&mut self, event_type: &str, obj: &Value) -> Bytes {
        match self.table {
            None if self.metadata_only => event_line(event_type, &table::partial(obj)),
            None => event_line(event_type, obj),
            Some(include) => {
                let meta = json!({"resourceVersion": meta_str(obj, "resourceVersion")});
                let t = table::table(&self.kind, &[obj], meta, include, self.first);
                self.first = false;
                event_line(event_type, &t)
            }
        }
    }
}

async fn run_watch(
    shared: Arc<Shared>,
    mut render: Render,
    filter: WatchFilter,
    start: store::WatchStart,
    tx: mpsc::Sender<Bytes>,
    options: WatchOptions,
) {
    let WatchOptions {
        bookmarks,
        send_initial,
        timeout,
    } = options;
    let kind = render.kind;
    let store::WatchStart {
        initial,
        backlog,
        mut rx,
        rv,
    } = start;
    let mut last_rv = rv;
    let mut shutdown = shared.shutdown.clone();
    let interval = shared.bookmark_interval;
    drop(shared);
    for obj in initial.iter().filter(|o| filter.matches(o)) {
        if tx.send(render.line("ADDED", obj)).await.is_err() {
            return;
        }
    }
    if send_initial && bookmarks && tx.send(bookmark(&kind, last_rv, true)).await.is_err() {
        return;
    }
    for event in &backlog {
        if let Some((t, obj)) = filter.convert(event)
            && tx.send(render.line(t, &obj)).await.is_err()
        {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if bookmarks => {
                if tx.send(bookmark(&kind, last_rv, false)).await.is_err() {
                    return;
                }
            }
            received = rx.recv() => match received {
                Ok(event) => {
                    last_rv = last_rv.max(event.rv);
                    if let Some((t, obj)) = filter.convert(&event)
                        && tx.send(render.line(t, &obj)).await.is_err() {
                            return;
                        }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let status = Status::expired(format!("too old resource version: {last_rv} ({})", last_rv + 1));
                    let _ = tx.send(event_line("ERROR", &status.to_json())).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_exit_is_a_deleted_event_with_the_new_rv() {
        let filter = WatchFilter {
            namespace: None,
            labels: LabelSelector::parse("a=1").unwrap(),
            fields: FieldSelector::default(),
        };
        let old = json!({"metadata": {"name": "x", "labels": {"a": "1"}, "resourceVersion": "5"}});
        let new = json!({"metadata": {"name": "x", "labels": {"a": "2"}, "resourceVersion": "6"}});
        let ev = Event {
            rv: 6,
            kind: EventType::Modified,
            object: new.clone(),
            old: Some(old.clone()),
        };
        let (t, obj) = filter.convert(&ev).unwrap();
        assert_eq!(t, "DELETED");
        assert_eq!(obj["metadata"]["labels"]["a"], "1");
        assert_eq!(obj["metadata"]["resourceVersion"], "6");
        let back = Event {
            rv: 7,
            kind: EventType::Modified,
            object: old,
            old: Some(new),
        };
        assert_eq!(filter.convert(&back).unwrap().0, "ADDED");
    }
}
