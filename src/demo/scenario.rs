//! `secret-relay demo --scenario`: the behaviour of DESIGN.md, end to end through
//! the Kubernetes API, as a pass/fail table.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::conditions::is_deleted;
use kube::runtime::wait::await_condition;
use kube::{Api, Client};

use super::{Demo, EXAMPLE_POLICY};

/// How long one expectation may take.
const WAIT: Duration = Duration::from_secs(20);

type Check<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

struct Ctx {
    hub: Api<Secret>,
    c1: Api<Secret>,
    c2: Api<Secret>,
    admin: Client,
}

fn secret(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    value: &str,
) -> Secret {
    let map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": map(labels), "annotations": map(annotations)},
        "stringData": {"value": value},
    }))
    .unwrap_or_default()
}

const OPT_IN: (&str, &str) = ("akuity.io/secret-sync", "true");
const REPO_CREDS: (&str, &str) = ("argocd.argoproj.io/secret-type", "repo-creds");
const ALL: (&str, &str) = ("akuity.io/managed-secret-allowed-clusters", "ALL");

fn owner(s: &Secret) -> Option<&str> {
    s.metadata
        .labels
        .as_ref()?
        .get("secret-relay.io/owner")
        .map(String::as_str)
}

fn value(s: &Secret) -> Vec<u8> {
    s.data
        .as_ref()
        .and_then(|d| d.get("value"))
        .map(|v| v.0.clone())
        .unwrap_or_default()
}

async fn appears(
    api: &Api<Secret>,
    name: &str,
    pred: impl Fn(&Secret) -> bool + Send + 'static,
) -> Result<Secret, String> {
    match tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), name, move |s: Option<&Secret>| {
            s.is_some_and(&pred)
        }),
    )
    .await
    {
        Ok(Ok(Some(s))) => Ok(s),
        Ok(Ok(None)) => Err(format!("{name} vanished")),
        Ok(Err(e)) => Err(format!("watching {name}: {e}")),
        Err(_) => Err(format!(
            "{name} did not reach the expected state within {WAIT:?}"
        )),
    }
}

async fn gone(api: &Api<Secret>, name: &str) -> Result<(), String> {
    match tokio::time::timeout(WAIT, await_condition(api.clone(), name, is_deleted(""))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("watching {name}: {e}")),
        Err(_) => Err(format!("{name} was not deleted within {WAIT:?}")),
    }
}

async fn create(api: &Api<Secret>, s: &Secret) -> Result<(), String> {
    api.create(&PostParams::default(), s)
        .await
        .map(|_| ())
        .map_err(|e| format!("create: {e}"))
}

/// Waits until `demo`'s agent `cluster` reports `state` with `rule` for `name`.
async fn agent_reports(
    demo: &Demo,
    cluster: &str,
    name: &str,
    direction: &'static str,
    state: &str,
    rule: &str,
) -> Result<(), String> {
    let agent = demo
        .fleet
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .map(|c| c.agent.clone())
        .ok_or_else(|| format!("no cluster {cluster}"))?;
    let mut rx = agent.subscribe();
    let wait = async {
        loop {
            if let Some((s, r)) = agent.status(name, direction)
                && s == state
                && r == rule
            {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.map_err(|_| {
        format!(
            "{cluster} did not report {direction} {state} ({rule}) for {name}: {:?}",
            agent.status(name, direction)
        )
    })
}

async fn set_policy(admin: &Client, text: &str) -> Result<(), String> {
    secret_relay_devstack::stack::store_policy(admin, text)
        .await
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

/// Runs every check, prints the table, and says whether all passed.
pub(crate) async fn run(demo: &Demo) -> bool {
    let Some(ctx) = prepare(demo).await else {
        return false;
    };
    report(checks(demo, &ctx)).await
}

/// The clients of the checks, once the example policy is served.
async fn prepare(demo: &Demo) -> Option<Ctx> {
    let (Some(c1), Some(c2)) = (
        demo.fleet.clusters.iter().find(|c| c.name == "cluster1"),
        demo.fleet.clusters.iter().find(|c| c.name == "cluster2"),
    ) else {
        println!("--scenario needs the example policy's clusters cluster1 and cluster2");
        return None;
    };
    let (Ok(admin), Ok(c1_client), Ok(c2_client)) = (
        demo.control_plane_client().await,
        c1.api.client().await,
        c2.api.client().await,
    ) else {
        println!("failed to build the clients");
        return None;
    };
    // The example policy, whatever the demo started with.
    let generation = demo.fleet.relay.policy.generation();
    if let Err(e) = set_policy(&admin, EXAMPLE_POLICY).await {
        println!("{e}");
        return None;
    }
    let mut generations = demo.fleet.relay.policy.subscribe();
    let _ = tokio::time::timeout(
        WAIT,
        generations.wait_for(|g| {
            *g > generation || demo.fleet.relay.policy.policy().clusters().count() == 2
        }),
    )
    .await;
    Some(Ctx {
        hub: Api::namespaced(admin.clone(), "argocd"),
        c1: Api::namespaced(c1_client, "akuity"),
        c2: Api::namespaced(c2_client, "akuity"),
        admin,
    })
}

/// Every check of DESIGN.md's behaviour, named as the table prints it.
fn checks<'a>(demo: &'a Demo, ctx: &'a Ctx) -> Vec<(&'static str, Check<'a>)> {
    vec![
        (
            "repository credentials from cluster1 appear in argocd, owned by cluster1",
            Box::pin(up_sync(ctx)),
        ),
        (
            "nobody edits a copy a cluster owns (the webhook refuses the control plane)",
            Box::pin(ownership_lock(ctx)),
        ),
        (
            "a blocked secret never moves (rule blocked-name)",
            Box::pin(blocked(demo, ctx)),
        ),
        (
            "cluster1 adopts argocd-notifications-secret; the control plane cannot edit it",
            Box::pin(adopt(ctx)),
        ),
        (
            "a release returns the adopted secret with its data kept",
            Box::pin(release_returns(ctx)),
        ),
        (
            "a managed secret for ALL reaches every cluster",
            Box::pin(managed_all(ctx)),
        ),
        (
            "a managed secret with a selector reaches only matching clusters",
            Box::pin(managed_selector(demo, ctx)),
        ),
        (
            "cluster1 -> cluster2 through allowed-clusters",
            Box::pin(cluster_to_cluster(ctx)),
        ),
        (
            "a Secret created before its Secret Source syncs after the policy change",
            Box::pin(before_source(demo, ctx)),
        ),
        ("deletes propagate up and down", Box::pin(deletes(ctx))),
        (
            "a cluster admin cannot edit or delete a down copy (rule ownership-lock)",
            Box::pin(down_copy_lock(ctx)),
        ),
        (
            "a local Secret the agent did not write is kept (conflict reported)",
            Box::pin(conflict(demo, ctx)),
        ),
    ]
}

/// Runs `checks` one after another, printing a row each, and says whether all passed.
async fn report(checks: Vec<(&str, Check<'_>)>) -> bool {
    let mut passed = 0;
    let total = checks.len();
    println!("\n{:<4} {:<80} RESULT", "#", "BEHAVIOUR");
    for (i, (name, check)) in checks.into_iter().enumerate() {
        let result = check.await;
        match &result {
            Ok(()) => {
                passed += 1;
                println!("{:<4} {name:<80} pass", i + 1);
            }
            Err(why) => println!("{:<4} {name:<80} FAIL: {why}", i + 1),
        }
    }
    println!("\n{passed}/{total} passed");
    passed == total
}

async fn up_sync(ctx: &Ctx) -> Result<(), String> {
    create(
        &ctx.c1,
        &secret(
            "repo-creds",
            &[OPT_IN, REPO_CREDS],
            &[],
            "https://example.invalid/repo.git",
        ),
    )
    .await?;
    appears(&ctx.hub, "repo-creds", |s| {
        owner(s) == Some("cluster.cluster1")
    })
    .await?;
    Ok(())
}

async fn ownership_lock(ctx: &Ctx) -> Result<(), String> {
    match ctx
        .hub
        .patch(
            "repo-creds",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"value": "edited"}})),
        )
        .await
    {
        Ok(_) => Err("the control plane edited cluster1's copy".to_owned()),
        Err(kube::Error::Api(e)) if e.message.contains("denied the request") => Ok(()),
        Err(e) => Err(format!("unexpected error: {e}")),
    }
}

async fn blocked(demo: &Demo, ctx: &Ctx) -> Result<(), String> {
    create(
        &ctx.c1,
        &secret("argocd-secret", &[OPT_IN, REPO_CREDS], &[], "x"),
    )
    .await?;
    agent_reports(
        demo,
        "cluster1",
        "argocd-secret",
        "up",
        "denied",
        "blocked-name",
    )
    .await?;
    match ctx.hub.get_opt("argocd-secret").await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err("argocd-secret reached the control plane".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

async fn adopt(ctx: &Ctx) -> Result<(), String> {
    create(
        &ctx.hub,
        &secret(
            "argocd-notifications-secret",
            &[],
            &[],
            "from-control-plane",
        ),
    )
    .await?;
    create(
        &ctx.c1,
        &secret(
            "argocd-notifications-secret",
            &[
                OPT_IN,
                ("app.kubernetes.io/component", "notifications-controller"),
            ],
            &[],
            "from-cluster1",
        ),
    )
    .await?;
    appears(&ctx.hub, "argocd-notifications-secret", |s| {
        owner(s) == Some("cluster.cluster1")
    })
    .await?;
    match ctx
        .hub
        .patch(
            "argocd-notifications-secret",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
    {
        Ok(_) => Err("the control plane edited an adopted secret".to_owned()),
        Err(_) => Ok(()),
    }
}

async fn release_returns(ctx: &Ctx) -> Result<(), String> {
    ctx.c1
        .delete("argocd-notifications-secret", &DeleteParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let back = appears(&ctx.hub, "argocd-notifications-secret", |s| {
        owner(s).is_none()
    })
    .await?;
    if value(&back) != b"from-cluster1" {
        return Err("the data was not kept".to_owned());
    }
    Ok(())
}

async fn managed_all(ctx: &Ctx) -> Result<(), String> {
    create(&ctx.hub, &secret("shared", &[], &[ALL], "for-everyone")).await?;
    for api in [&ctx.c1, &ctx.c2] {
        appears(api, "shared", |s| owner(s) == Some("control-plane")).await?;
    }
    Ok(())
}

async fn managed_selector(demo: &Demo, ctx: &Ctx) -> Result<(), String> {
    create(
        &ctx.hub,
        &secret(
            "prod-only",
            &[],
            &[(
                "akuity.io/managed-secret-allowed-cluster-selector",
                "env=prod",
            )],
            "p",
        ),
    )
    .await?;
    create(
        &ctx.hub,
        &secret(
            "marker",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "cluster2")],
            "m",
        ),
    )
    .await?;
    appears(&ctx.c1, "prod-only", |_| true).await?;
    // cluster2 has processed a later change: prod-only would be there by now.
    appears(&ctx.c2, "marker", |_| true).await?;
    agent_reports(demo, "cluster2", "marker", "down", "synced", "").await?;
    match ctx.c2.get_opt("prod-only").await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err("prod-only reached cluster2 (env=staging)".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

async fn cluster_to_cluster(ctx: &Ctx) -> Result<(), String> {
    create(
        &ctx.c1,
        &secret(
            "for-cluster2",
            &[OPT_IN, REPO_CREDS],
            &[("akuity.io/managed-secret-allowed-clusters", "cluster2")],
            "c2c",
        ),
    )
    .await?;
    appears(&ctx.c2, "for-cluster2", |s| {
        owner(s) == Some("cluster.cluster1")
    })
    .await?;
    Ok(())
}

async fn before_source(demo: &Demo, ctx: &Ctx) -> Result<(), String> {
    create(
        &ctx.c2,
        &secret("staging-repo", &[OPT_IN, REPO_CREDS], &[], "s"),
    )
    .await?;
    agent_reports(
        demo,
        "cluster2",
        "staging-repo",
        "up",
        "denied",
        "no-matching-source",
    )
    .await?;
    let policy = format!(
        "{EXAMPLE_POLICY}  - clusterSelector: env=staging\n    labelSelector: argocd.argoproj.io/secret-type=repo-creds\n"
    );
    set_policy(&ctx.admin, &policy).await?;
    appears(&ctx.hub, "staging-repo", |s| {
        owner(s) == Some("cluster.cluster2")
    })
    .await?;
    Ok(())
}

async fn deletes(ctx: &Ctx) -> Result<(), String> {
    ctx.c1
        .delete("for-cluster2", &DeleteParams::default())
        .await
        .map_err(|e| e.to_string())?;
    gone(&ctx.hub, "for-cluster2").await?;
    gone(&ctx.c2, "for-cluster2").await?;
    ctx.hub
        .delete("shared", &DeleteParams::default())
        .await
        .map_err(|e| e.to_string())?;
    gone(&ctx.c1, "shared").await?;
    Ok(())
}

/// The managed cluster's webhook refuses a cluster admin's edit and delete of a down
/// copy, while the agent's own writes go on: the copy follows the control plane.
async fn down_copy_lock(ctx: &Ctx) -> Result<(), String> {
    let refused = |what: &str, result: Result<(), kube::Error>| match result {
        Ok(()) => Err(format!(
            "the cluster admin's {what} of the down copy passed"
        )),
        Err(kube::Error::Api(e)) if e.message.contains("rule ownership-lock") => Ok(()),
        Err(e) => Err(format!("unexpected error on the {what}: {e}")),
    };
    create(&ctx.hub, &secret("locked", &[], &[ALL], "hub-value")).await?;
    appears(&ctx.c2, "locked", |_| true).await?;
    let edit = ctx
        .c2
        .patch(
            "locked",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"value": "edited"}})),
        )
        .await
        .map(|_| ());
    refused("edit", edit)?;
    let delete = ctx
        .c2
        .delete("locked", &DeleteParams::default())
        .await
        .map(|_| ());
    refused("delete", delete)?;
    ctx.hub
        .patch(
            "locked",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"value": "rotated"}})),
        )
        .await
        .map_err(|e| e.to_string())?;
    appears(&ctx.c2, "locked", |s| value(s) == b"rotated").await?;
    Ok(())
}

async fn conflict(demo: &Demo, ctx: &Ctx) -> Result<(), String> {
    create(&ctx.c2, &secret("taken", &[], &[], "local")).await?;
    create(&ctx.hub, &secret("taken", &[], &[ALL], "hub")).await?;
    agent_reports(
        demo,
        "cluster2",
        "taken",
        "down",
        "conflict",
        "down-sync-conflict",
    )
    .await?;
    let local = ctx.c2.get("taken").await.map_err(|e| e.to_string())?;
    if value(&local) != b"local" {
        return Err("the local Secret was overwritten".to_owned());
    }
    Ok(())
}
