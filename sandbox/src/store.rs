//! In-memory storage: schemaless objects per kind, one global resourceVersion counter,
//! a bounded event history per kind for watch resume.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::resource::{KINDS, NAMESPACES, ResourceKind};

/// Capacity of each kind's live event channel; a watcher that falls this far behind gets 410.
const CHANNEL_CAPACITY: usize = 16 * 1024;

/// A change to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One stored change, as watchers see it.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) rv: u64,
    pub(crate) kind: EventType,
    /// The object after the change (for a deletion: the last state, at the deletion's RV).
    pub(crate) object: Value,
    /// The object before the change (None for a creation).
    pub(crate) old: Option<Value>,
}

/// Object key: (namespace, name); namespace is "" for cluster-scoped kinds.
pub(crate) type Key = (String, String);

struct Store {
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    /// Events with an RV at or below this are gone from history.
    compacted: u64,
    tx: broadcast::Sender<Arc<Event>>,
}

/// All stores behind one lock, so a write and its event are atomic.
pub(crate) struct Db {
    rv: u64,
    history_limit: usize,
    stores: Vec<Store>,
}

/// Why a write was refused by the store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// The object exists (create).
    Exists,
    /// The object does not exist (update/delete).
    Missing,
    /// The object changed since the caller read it.
    Stale,
    /// The namespace does not exist.
    NoNamespace,
}

/// The start of a watch: what to send first, and the live channel.
pub(crate) struct WatchStart {
    /// Objects to send as ADDED first (RV "0"/unset or sendInitialEvents).
    pub(crate) initial: Vec<Value>,
    /// Stored events after the requested RV.
    pub(crate) backlog: Vec<Arc<Event>>,
    pub(crate) rx: broadcast::Receiver<Arc<Event>>,
    /// The RV the watch is current at once initial and backlog are sent.
    pub(crate) rv: u64,
}

impl Db {
    /// A database holding the `default` and `kube-system` namespaces.
    pub(crate) fn new(history_limit: usize, now: &str) -> Self {
        let stores = KINDS
            .iter()
            .map(|_| Store {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 0,
                tx: broadcast::channel(CHANNEL_CAPACITY).0,
            })
            .collect();
        let mut db = Db {
            rv: 0,
            history_limit: history_limit.max(1),
            stores,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "uid": crate::meta::new_uid(),
                    "creationTimestamp": now,
                    "labels": { "kubernetes.io/metadata.name": ns },
                },
                "spec": { "finalizers": ["kubernetes"] },
                "status": { "phase": "Active" },
            });
            // The store is empty and the namespace kind needs no namespace: cannot fail.
            let _ = db.create(&NAMESPACES, obj);
        }
        db
    }

    /// The current (latest) resourceVersion.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn get(&self, kind: &ResourceKind, ns: &str, name: &str) -> Option<&Value> {
        self.stores[kind.index]
            .objects
            .get(&(ns.to_owned(), name.to_owned()))
    }

    pub(crate) fn namespace_exists(&self, ns: &str) -> bool {
        self.get(&NAMESPACES, "", ns).is_some()
    }

    /// Objects of a kind, optionally in one namespace, from `start` (inclusive), sorted by key.
    pub(crate) fn range<'a>(
        &'a self,
        kind: &ResourceKind,
        ns: Option<&'a str>,
        start: Option<&Key>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        let objects = &self.stores[kind.index].objects;
        let iter: Box<dyn Iterator<Item = (&Key, &Value)>> = match start {
            Some(key) => Box::new(objects.range(key.clone()..)),
            None => Box::new(objects.iter()),
        };
        iter.filter(move |(k, _)| ns.is_none_or(|n| k.0 == n))
    }

    pub(crate) fn compacted(&self, kind: &ResourceKind) -> u64 {
        self.stores[kind.index].compacted
    }

    /// Stores a new object; sets its resourceVersion.
    pub(crate) fn create(
        &mut self,
        kind: &ResourceKind,
        mut obj: Value,
    ) -> Result<Value, WriteError> {
        let key = key_of(kind, &obj);
        if kind.namespaced && !self.namespace_exists(&key.0) {
            return Err(WriteError::NoNamespace);
        }
        if self.stores[kind.index].objects.contains_key(&key) {
            return Err(WriteError::Exists);
        }
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        self.stores[kind.index].objects.insert(key, obj.clone());
        self.record(kind, EventType::Added, obj.clone(), None);
        Ok(obj)
    }

    /// Replaces an object that is still at `base_rv`.
    pub(crate) fn update(
        &mut self,
        kind: &ResourceKind,
        mut obj: Value,
        base_rv: u64,
    ) -> Result<Value, WriteError> {
        let key = key_of(kind, &obj);
        let old = self.stores[kind.index]
            .objects
            .get(&key)
            .ok_or(WriteError::Missing)?;
        if rv_of(old) != base_rv {
            return Err(WriteError::Stale);
        }
        let old = old.clone();
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        self.stores[kind.index].objects.insert(key, obj.clone());
        self.record(kind, EventType::Modified, obj.clone(), Some(old));
        Ok(obj)
    }

    /// Removes an object that is still at `base_rv`; returns it at the deletion's RV.
    pub(crate) fn delete(
        &mut self,
        kind: &ResourceKind,
        ns: &str,
        name: &str,
        base_rv: u64,
    ) -> Result<Value, WriteError> {
        let key = (ns.to_owned(), name.to_owned());
        let current = self.stores[kind.index]
            .objects
            .get(&key)
            .ok_or(WriteError::Missing)?;
        if rv_of(current) != base_rv {
            return Err(WriteError::Stale);
        }
        let Some(mut obj) = self.stores[kind.index].objects.remove(&key) else {
            return Err(WriteError::Missing);
        };
        let old = obj.clone();
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        self.record(kind, EventType::Deleted, obj.clone(), Some(old));
        Ok(obj)
    }

    fn record(
        &mut self,
        kind: &ResourceKind,
        event_type: EventType,
        object: Value,
        old: Option<Value>,
    ) {
        let limit = self.history_limit;
        let store = &mut self.stores[kind.index];
        let event = Arc::new(Event {
            rv: self.rv,
            kind: event_type,
            object,
            old,
        });
        store.history.push_back(event.clone());
        while store.history.len() > limit {
            if let Some(dropped) = store.history.pop_front() {
                store.compacted = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = store.tx.send(event);
    }

    /// Drops all watch history: a watch or continue from an older RV is then 410 Expired.
    pub(crate) fn compact(&mut self) {
        let rv = self.rv;
        for store in &mut self.stores {
            store.history.clear();
            store.compacted = rv;
        }
    }

    /// Starts a watch from `rv` (None: from now with the current objects as ADDED).
    /// `Err(oldest)` when `rv` is older than the retained history.
    pub(crate) fn watch(
        &self,
        kind: &ResourceKind,
        rv: Option<u64>,
        send_initial: bool,
    ) -> Result<WatchStart, u64> {
        let store = &self.stores[kind.index];
        let rx = store.tx.subscribe();
        match rv {
            Some(rv) if !send_initial => {
                if rv < store.compacted {
                    return Err(store.compacted + 1);
                }
                let backlog = store
                    .history
                    .iter()
                    .filter(|e| e.rv > rv)
                    .cloned()
                    .collect();
                Ok(WatchStart {
                    initial: Vec::new(),
                    backlog,
                    rx,
                    rv: self.rv,
                })
            }
            _ => Ok(WatchStart {
                initial: store.objects.values().cloned().collect(),
                backlog: Vec::new(),
                rx,
                rv: self.rv,
            }),
        }
    }

    /// The webhook configurations, sorted by name.
    pub(crate) fn objects(&self, kind: &ResourceKind) -> Vec<Value> {
        self.stores[kind.index].objects.values().cloned().collect()
    }
}

/// The store key of an object.
pub(crate) fn key_of(kind: &ResourceKind, obj: &Value) -> Key {
    let meta = &obj["metadata"];
    let ns = if kind.namespaced {
        meta["namespace"].as_str().unwrap_or_default()
    } else {
        ""
    };
    (
        ns.to_owned(),
        meta["name"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `metadata.resourceVersion` as a number (0 when absent).
pub(crate) fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::SECRETS;

    fn secret(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"}})
    }

    #[test]
    fn writes_bump_one_global_resource_version() {
        let mut db = Db::new(10, "t");
        let start = db.rv();
        let a = db.create(&SECRETS, secret("a")).unwrap();
        assert_eq!(rv_of(&a), start + 1);
        assert_eq!(db.create(&SECRETS, secret("a")), Err(WriteError::Exists));
        let b = db.update(&SECRETS, secret("a"), start + 1).unwrap();
        assert_eq!(rv_of(&b), start + 2);
        assert_eq!(
            db.update(&SECRETS, secret("a"), start + 1),
            Err(WriteError::Stale)
        );
        let d = db.delete(&SECRETS, "default", "a", start + 2).unwrap();
        assert_eq!(rv_of(&d), start + 3);
        assert!(db.get(&SECRETS, "default", "a").is_none());
    }

    #[test]
    fn create_in_missing_namespace_fails() {
        let mut db = Db::new(10, "t");
        let mut s = secret("a");
        s["metadata"]["namespace"] = json!("nope");
        assert_eq!(db.create(&SECRETS, s), Err(WriteError::NoNamespace));
    }

    #[test]
    fn watch_from_compacted_rv_is_too_old() {
        let mut db = Db::new(2, "t");
        let base = db.rv();
        for n in ["a", "b", "c"] {
            db.create(&SECRETS, secret(n)).unwrap();
        }
        // history keeps the last two events: b and c
        assert!(db.watch(&SECRETS, Some(base), false).is_err());
        let start = db.watch(&SECRETS, Some(base + 1), false).ok().unwrap();
        assert_eq!(start.backlog.len(), 2);
        db.compact();
        assert!(db.watch(&SECRETS, Some(base + 1), false).is_err());
        assert!(db.watch(&SECRETS, Some(db.rv()), false).is_ok());
    }
}
