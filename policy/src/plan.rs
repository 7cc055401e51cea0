//! A policy change, planned before it is saved: what it does over the live hub
//! copies, row by row, each with its rule, decided by the functions the relay and
//! the agents decide with ([`down_sync`], [`down_sync_to`], [`revocation`]).
//!
//! What the control plane cannot see is said, not guessed: a Secret on a cluster
//! that a new Secret Source admits syncs up within seconds, but the control plane
//! does not list the clusters' Secrets, so the plan has no row for it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;

use crate::decision::{Owner, ReleaseAction, Rule, down_sync, down_sync_to, owner, revocation};
use crate::document::Policy;
use crate::meta;

/// The waits the plan counts with: the relay's and the agents' settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanSettings {
    /// The relay's revocation grace, in seconds.
    pub revocation_grace_seconds: u64,
    /// The agents' deletion grace, in seconds.
    pub deletion_grace_seconds: u64,
    /// The agents' deletion budget: this share of a cluster's down copies (at
    /// least one) per window; beyond it, deletions are held.
    pub budget_percent: u32,
    /// How long a removed cluster's agent waits, refused, before it deletes its
    /// down copies, in seconds.
    pub unregistered_grace_seconds: u64,
}

impl Default for PlanSettings {
    /// The shipped defaults of the relay and the agent.
    fn default() -> PlanSettings {
        PlanSettings {
            revocation_grace_seconds: 60,
            deletion_grace_seconds: 60,
            budget_percent: 20,
            unregistered_grace_seconds: 600,
        }
    }
}

/// What one row says will happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// The hub copy starts going to the cluster: its agent writes a down copy.
    DownCopyCreated,
    /// The hub copy stops going to the cluster: its agent deletes the down copy.
    DownCopyDeleted,
    /// The policy no longer admits the hub copy from its owner: the relay
    /// releases it (deleted, or returned if adopted).
    Revoked,
    /// A copy the live policy revokes is admitted again: it stays.
    RevocationCancelled,
    /// The owner cluster leaves the registry: its copy stays on the hub,
    /// orphaned, and stops going down.
    Orphaned,
}

/// When a row happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    /// As soon as the relay and the agents see the new policy.
    Now,
    /// After the relay's revocation grace (and it stays if the policy admits it
    /// again within it).
    AfterRevocationGrace,
    /// After the agent's deletion grace, within its budget.
    AfterDeletionGrace,
    /// After the relay's revocation grace, then the agent's deletion grace.
    AfterRevocationThenDeletionGrace,
    /// Held by the agent beyond its deletion budget until a cluster admin
    /// confirms it (or the copy comes back).
    HeldBeyondBudget,
    /// After the removed cluster's agent has been refused for its grace.
    AfterUnregisteredGrace,
}

impl Change {
    /// The kebab-case word, as in the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::DownCopyCreated => "down-copy-created",
            Change::DownCopyDeleted => "down-copy-deleted",
            Change::Revoked => "revoked",
            Change::RevocationCancelled => "revocation-cancelled",
            Change::Orphaned => "orphaned",
        }
    }
}

impl When {
    /// The kebab-case word, as in the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            When::Now => "now",
            When::AfterRevocationGrace => "after-revocation-grace",
            When::AfterDeletionGrace => "after-deletion-grace",
            When::AfterRevocationThenDeletionGrace => "after-revocation-then-deletion-grace",
            When::HeldBeyondBudget => "held-beyond-budget",
            When::AfterUnregisteredGrace => "after-unregistered-grace",
        }
    }
}

/// One thing the change does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanRow {
    /// What happens.
    pub change: Change,
    /// The hub copy's name.
    pub secret: String,
    /// The cluster it happens on (the owner for a revocation).
    pub cluster: String,
    /// The rule that decides it under the new policy.
    pub rule: Rule,
    /// Why, in the words of the decision.
    pub reason: String,
    /// When.
    pub when: When,
}

/// A planned policy change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Every row, sorted by change, secret and cluster.
    pub rows: Vec<PlanRow>,
    /// Clusters the new policy registers that the live one does not, and the reverse.
    pub clusters_added: Vec<String>,
    /// Clusters the new policy removes.
    pub clusters_removed: Vec<String>,
    /// What the plan cannot show.
    pub notes: Vec<String>,
}

/// One hub copy and where it goes under the live and the new policy.
struct HubCopy<'a> {
    hub: &'a Secret,
    name: String,
    before: BTreeSet<String>,
    after: BTreeSet<String>,
}

/// What changing the live policy `old` to `new` does over the hub copies `hub`
/// (the Secrets of the control-plane namespace), with the waits of `settings`.
pub fn plan(old: &Policy, new: &Policy, hub: &[Secret], settings: PlanSettings) -> Plan {
    let mut rows = Vec::new();
    // Per cluster: its down copies today, and the deletions the agent counts
    // against its budget.
    let mut current: BTreeMap<String, usize> = BTreeMap::new();
    let mut deletions: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for h in hub {
        let copy = HubCopy {
            hub: h,
            name: meta::name(&h.metadata).to_owned(),
            before: down_sync(old, h).targets.into_iter().collect(),
            after: down_sync(new, h).targets.into_iter().collect(),
        };
        for c in &copy.before {
            *current.entry(c.clone()).or_default() += 1;
        }
        let released = owner_rows(old, new, &copy, &mut rows);
        created_rows(new, &copy, released, &mut rows);
        deleted_rows(new, &copy, released, &mut rows, &mut deletions);
    }
    hold_beyond_budget(&mut rows, deletions, &current, settings);
    rows.sort_by(|a, b| (a.change, &a.secret, &a.cluster).cmp(&(b.change, &b.secret, &b.cluster)));
    let names = |p: &Policy| -> BTreeSet<String> { p.clusters().map(|c| c.name.clone()).collect() };
    let (before, after) = (names(old), names(new));
    Plan {
        rows,
        clusters_added: after.difference(&before).cloned().collect(),
        clusters_removed: before.difference(&after).cloned().collect(),
        notes: notes(settings),
    }
}

/// The rows of the hub copy's owner: its revocation (or the revocation the
/// new policy cancels), and its orphaning when the owner leaves the registry.
/// Whether the copy is revoked and deleted, taking its down copies with it.
fn owner_rows(old: &Policy, new: &Policy, copy: &HubCopy, rows: &mut Vec<PlanRow>) -> bool {
    let (h, name) = (copy.hub, &copy.name);
    let revoked = revocation(new, h);
    let was_revoked = revocation(old, h).is_some();
    match (&revoked, was_revoked, owner(h)) {
        (Some(r), false, Owner::Cluster(o)) => rows.push(PlanRow {
            change: Change::Revoked,
            secret: name.clone(),
            cluster: o,
            rule: r.decision.rule,
            reason: r.decision.reason.clone(),
            when: When::AfterRevocationGrace,
        }),
        (None, true, Owner::Cluster(o)) if new.cluster(&o).is_some() => rows.push(PlanRow {
            change: Change::RevocationCancelled,
            secret: name.clone(),
            cluster: o,
            rule: Rule::UpSyncOwner,
            reason: format!(
                "the new policy admits {name} from cluster {} again: it stays",
                owner_name(h)
            ),
            when: When::Now,
        }),
        _ => {}
    }
    if let Owner::Cluster(o) = owner(h)
        && old.cluster(&o).is_some()
        && new.cluster(&o).is_none()
    {
        rows.push(PlanRow {
            change: Change::Orphaned,
            secret: name.clone(),
            cluster: o.clone(),
            rule: Rule::OrphanedOwner,
            reason: format!(
                "cluster {o} leaves the registry: {name} stays on the hub, orphaned, and stops going down; the control plane may delete it or take it over"
            ),
            when: When::Now,
        });
    }
    // A revoked copy that is deleted takes all its down copies with it; a
    // returned one goes where its restored metadata says (not known here).
    revoked
        .as_ref()
        .is_some_and(|r| r.action == Some(ReleaseAction::Delete))
}

/// The down copies the new policy creates, unless the copy is `released`.
fn created_rows(new: &Policy, copy: &HubCopy, released: bool, rows: &mut Vec<PlanRow>) {
    let (h, name) = (copy.hub, &copy.name);
    for c in &copy.after {
        if !copy.before.contains(c) && !released {
            let d = down_sync_to(new, h, c);
            rows.push(PlanRow {
                change: Change::DownCopyCreated,
                secret: name.clone(),
                cluster: c.clone(),
                rule: d.decision.rule,
                reason: d.decision.reason,
                when: When::Now,
            });
        }
    }
}

/// The down copies that go: those the new policy no longer sends, and all of
/// a `released` copy's. Each deletion the agent counts against its budget is
/// noted in `deletions` by row index.
fn deleted_rows(
    new: &Policy,
    copy: &HubCopy,
    released: bool,
    rows: &mut Vec<PlanRow>,
    deletions: &mut BTreeMap<String, Vec<usize>>,
) {
    let (h, name, after) = (copy.hub, &copy.name, &copy.after);
    for c in &copy.before {
        let (rule, reason, when) = if released && after.contains(c) {
            (
                Rule::Revoked,
                format!("{name} is revoked, so its down copy on cluster {c} goes with it"),
                When::AfterRevocationThenDeletionGrace,
            )
        } else if !after.contains(c) {
            let d = down_sync_to(new, h, c);
            let when = if new.cluster(c).is_none() {
                When::AfterUnregisteredGrace
            } else {
                When::AfterDeletionGrace
            };
            (d.decision.rule, d.decision.reason, when)
        } else {
            continue;
        };
        if when != When::AfterUnregisteredGrace {
            deletions.entry(c.clone()).or_default().push(rows.len());
        }
        rows.push(PlanRow {
            change: Change::DownCopyDeleted,
            secret: name.clone(),
            cluster: c.clone(),
            rule,
            reason,
            when,
        });
    }
}

/// The agent's budget: beyond it, deletions wait for a confirmation. Deletions
/// are taken in name order (the agent takes them as they come).
fn hold_beyond_budget(
    rows: &mut [PlanRow],
    deletions: BTreeMap<String, Vec<usize>>,
    current: &BTreeMap<String, usize>,
    settings: PlanSettings,
) {
    for (cluster, mut rows_of) in deletions {
        let total = current.get(&cluster).copied().unwrap_or(0);
        let budget = (total * settings.budget_percent as usize)
            .div_ceil(100)
            .max(1);
        rows_of.sort_by(|a, b| rows[*a].secret.cmp(&rows[*b].secret));
        for &i in rows_of.iter().skip(budget) {
            rows[i].when = When::HeldBeyondBudget;
            rows[i].reason.push_str(&format!(
                "; held: more than {budget} of cluster {cluster}'s {total} down copies would go at once (budget {}%), until a cluster admin confirms it",
                settings.budget_percent
            ));
        }
    }
}

/// What the plan cannot show, and the waits it counts with.
fn notes(settings: PlanSettings) -> Vec<String> {
    let mut notes = vec![
        "Secrets on managed clusters that a new Secret Source admits sync up within seconds of the change; the control plane does not list them, so they have no row here.".to_owned(),
    ];
    if settings.revocation_grace_seconds > 0 {
        notes.push(format!(
            "Revocations wait {}s (the relay's grace); fixing the policy within it revokes nothing.",
            settings.revocation_grace_seconds
        ));
    }
    notes.push(format!(
        "Down copies wait {}s (the agents' grace) before they go, at most {}% of a cluster's down copies per window.",
        settings.deletion_grace_seconds, settings.budget_percent
    ));
    notes
}

fn owner_name(h: &Secret) -> String {
    match owner(h) {
        Owner::Cluster(c) => c,
        o => o.label_value(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::testutil::hub;

    fn policy(text: &str) -> Policy {
        Policy::from_yaml(text).unwrap()
    }

    const OLD: &str = "
clusters:
  - { name: cluster1, labels: { env: prod } }
  - { name: cluster2, labels: { env: staging } }
  - { name: cluster3, labels: { env: staging } }
secretSources:
  - labelSelector: team=a
";

    fn find<'a>(p: &'a Plan, change: Change, secret: &str, cluster: &str) -> &'a PlanRow {
        p.rows
            .iter()
            .find(|r| r.change == change && r.secret == secret && r.cluster == cluster)
            .unwrap_or_else(|| panic!("no {change:?} {secret} {cluster} in {:#?}", p.rows))
    }

    #[test]
    fn a_change_plans_revocations_and_the_down_copies_that_come_and_go() {
        let old = policy(OLD);
        // cluster2 becomes prod; team=a is admitted only from staging clusters now.
        let new = policy(
            "
clusters:
  - { name: cluster1, labels: { env: prod } }
  - { name: cluster2, labels: { env: prod } }
  - { name: cluster3, labels: { env: staging } }
secretSources:
  - clusterSelector: env=staging
    labelSelector: team=a
",
        );
        let copies = [
            // cluster1's, sent to cluster3: revoked, its copy on cluster3 goes after.
            hub("repo")
                .owner("cluster1")
                .label("team", "a")
                .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "cluster3")
                .build(),
            // The control plane's, to prod clusters: now cluster2 too.
            hub("prod-only")
                .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env=prod")
                .build(),
            // To staging clusters: cluster2 leaves.
            hub("staging-only")
                .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env=staging")
                .build(),
        ];
        let p = plan(&old, &new, &copies, PlanSettings::default());
        let r = find(&p, Change::Revoked, "repo", "cluster1");
        assert_eq!(
            (r.rule, r.when),
            (Rule::Revoked, When::AfterRevocationGrace)
        );
        assert!(r.reason.contains("no-matching-source"), "{}", r.reason);
        let r = find(&p, Change::DownCopyDeleted, "repo", "cluster3");
        assert_eq!(r.when, When::AfterRevocationThenDeletionGrace);
        let r = find(&p, Change::DownCopyCreated, "prod-only", "cluster2");
        assert_eq!((r.rule, r.when), (Rule::DownSync, When::Now));
        let r = find(&p, Change::DownCopyDeleted, "staging-only", "cluster2");
        assert_eq!(
            (r.rule, r.when),
            (Rule::DownSyncNotTarget, When::AfterDeletionGrace)
        );
        assert_eq!(p.rows.len(), 4, "{:#?}", p.rows);
        // The same policy plans nothing.
        assert!(
            plan(&old, &old, &copies, PlanSettings::default())
                .rows
                .is_empty()
        );
    }

    #[test]
    fn the_words_are_the_json_words() {
        for c in [
            Change::DownCopyCreated,
            Change::DownCopyDeleted,
            Change::Revoked,
            Change::RevocationCancelled,
            Change::Orphaned,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for w in [
            When::Now,
            When::AfterRevocationGrace,
            When::AfterDeletionGrace,
            When::AfterRevocationThenDeletionGrace,
            When::HeldBeyondBudget,
            When::AfterUnregisteredGrace,
        ] {
            assert_eq!(serde_json::to_value(w).unwrap(), w.as_str());
        }
    }

    #[test]
    fn deletions_beyond_a_clusters_budget_are_planned_as_held() {
        let old = policy(OLD);
        let new = policy(&OLD.replace(
            "cluster3, labels: { env: staging }",
            "cluster3, labels: { env: dev }",
        ));
        let copies: Vec<Secret> = (0..10)
            .map(|i| {
                hub(&format!("s{i}"))
                    .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env=staging")
                    .build()
            })
            .collect();
        let p = plan(&old, &new, &copies, PlanSettings::default());
        let on3: Vec<&PlanRow> = p.rows.iter().filter(|r| r.cluster == "cluster3").collect();
        assert_eq!(on3.len(), 10);
        // 20% of cluster3's 10 down copies go after the grace; 8 are held.
        let held = on3
            .iter()
            .filter(|r| r.when == When::HeldBeyondBudget)
            .count();
        assert_eq!(held, 8);
        assert!(on3.iter().all(|r| r.change == Change::DownCopyDeleted));
        // cluster2 loses nothing.
        assert!(p.rows.iter().all(|r| r.cluster != "cluster2"));
    }

    #[test]
    fn a_removed_cluster_orphans_its_copies_and_its_down_copies_go_after_its_grace() {
        let old = policy(OLD);
        let new = policy(&OLD.replace("  - { name: cluster3, labels: { env: staging } }\n", ""));
        let copies = [
            hub("from3")
                .owner("cluster3")
                .label("team", "a")
                .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "ALL")
                .build(),
            hub("to-all")
                .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "ALL")
                .build(),
        ];
        let p = plan(&old, &new, &copies, PlanSettings::default());
        assert_eq!(p.clusters_removed, ["cluster3"]);
        assert_eq!(
            find(&p, Change::Orphaned, "from3", "cluster3").rule,
            Rule::OrphanedOwner
        );
        for c in ["cluster1", "cluster2"] {
            assert_eq!(
                find(&p, Change::DownCopyDeleted, "from3", c).rule,
                Rule::OrphanedCopy
            );
        }
        assert_eq!(
            find(&p, Change::DownCopyDeleted, "to-all", "cluster3").when,
            When::AfterUnregisteredGrace
        );
    }
}
