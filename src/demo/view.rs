//! What the demo shows while it runs: a live table on a terminal, plain lines
//! otherwise. Never a Secret value: names, owners, targets and decisions only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use secret_relay_policy::{down_sync, is_adopted, keys};
use secret_relay_runtime::CancellationToken;

use super::Demo;

/// One line of the view.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Row {
    name: String,
    place: String,
    owner: String,
    targets: String,
    status: String,
}

fn label<'a>(s: &'a Secret, key: &str) -> Option<&'a str> {
    s.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Reads every place once.
pub(crate) async fn rows(demo: &Demo) -> Vec<Row> {
    let mut rows = Vec::new();
    let policy = demo.fleet.relay.policy.policy();
    let cp = policy.control_plane_namespace().to_owned();
    if let Ok(client) = demo.control_plane_client().await
        && let Ok(list) = Api::<Secret>::namespaced(client, &cp)
            .list(&ListParams::default())
            .await
    {
        for s in list.items {
            let name = s.metadata.name.clone().unwrap_or_default();
            let owner = match label(&s, keys::OWNER_LABEL) {
                Some(o) => o.trim_start_matches(keys::OWNER_CLUSTER_PREFIX).to_owned(),
                None => "control-plane".to_owned(),
            };
            let down = down_sync(&policy, &s);
            let targets = if down.targets.is_empty() {
                format!("none ({})", down.decision.rule)
            } else {
                down.targets.join(",")
            };
            let status = if is_adopted(&s) { "adopted" } else { "" }.to_owned();
            rows.push(Row {
                name,
                place: cp.clone(),
                owner,
                targets,
                status,
            });
        }
    }
    for c in &demo.fleet.clusters {
        let ns = policy.agent_namespace().to_owned();
        let Ok(client) = c.api.client().await else {
            continue;
        };
        let Ok(list) = Api::<Secret>::namespaced(client, &ns)
            .list(&ListParams::default())
            .await
        else {
            continue;
        };
        for s in list.items {
            let name = s.metadata.name.clone().unwrap_or_default();
            let opted = label(&s, keys::SECRET_SYNC_LABEL) == Some("true");
            let (owner, direction) = match label(&s, keys::OWNER_LABEL) {
                Some(origin) => (
                    format!(
                        "copy of {}",
                        origin.trim_start_matches(keys::OWNER_CLUSTER_PREFIX)
                    ),
                    "down",
                ),
                None if opted => ("local, opted in".to_owned(), "up"),
                None => ("local".to_owned(), "down"),
            };
            let status = match c.agent.status(&name, direction) {
                Some((state, rule)) if rule.is_empty() => format!("{direction}: {state}"),
                Some((state, rule)) => format!("{direction}: {state} ({rule})"),
                None => String::new(),
            };
            rows.push(Row {
                name,
                place: format!("{}/{ns}", c.name),
                owner,
                targets: String::new(),
                status,
            });
        }
    }
    rows.sort();
    rows
}

fn render(rows: &[Row], generation: u64, header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "secret-relay demo: policy generation {generation}   (Ctrl-C to stop)\n{header}\n"
    );
    let _ = writeln!(
        out,
        "{:<34} {:<20} {:<22} {:<24} STATUS / LAST DECISION",
        "SECRET", "WHERE", "OWNER", "GOES TO"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<34} {:<20} {:<22} {:<24} {}",
            r.name, r.place, r.owner, r.targets, r.status
        );
    }
    if rows.is_empty() {
        out.push_str("(no secrets yet: try the commands printed above)\n");
    }
    out
}

/// A table that refreshes every second on the terminal until `shutdown`.
pub(crate) async fn live(demo: &Demo, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let rows = rows(demo).await;
        let header = format!(
            "commands to try: {}/try.txt   Secrets page: {}",
            demo.fleet.dir.display(),
            demo.ui.as_ref().map_or("(not started)", |u| u.url.as_str())
        );
        // Clear the screen and home the cursor, then draw.
        print!(
            "\x1b[2J\x1b[H{}",
            render(&rows, demo.fleet.relay.policy.generation(), &header)
        );
    }
}

/// Plain lines, one per change of a row, until `shutdown` (for logs and pipes).
pub(crate) async fn plain(demo: &Demo, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last: BTreeMap<(String, String), Row> = BTreeMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now: BTreeMap<(String, String), Row> = rows(demo)
            .await
            .into_iter()
            .map(|r| ((r.place.clone(), r.name.clone()), r))
            .collect();
        for (key, row) in &now {
            if last.get(key) != Some(row) {
                println!(
                    "secret={} where={} owner={:?} goes-to={:?} status={:?}",
                    row.name, row.place, row.owner, row.targets, row.status
                );
            }
        }
        for key in last.keys() {
            if !now.contains_key(key) {
                println!("secret={} where={} gone", key.1, key.0);
            }
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_column_and_never_a_value() {
        let rows = vec![Row {
            name: "repo".into(),
            place: "argocd".into(),
            owner: "cluster1".into(),
            targets: "cluster2".into(),
            status: String::new(),
        }];
        let text = render(&rows, 3, "header");
        assert!(text.contains("policy generation 3"));
        assert!(text.contains("SECRET") && text.contains("GOES TO"));
        assert!(text.contains("repo") && text.contains("cluster2"));
    }
}
