// Drives the secret-relay Secrets page in Debian's headless Chromium with
// playwright-core. tests/ui.rs starts a real control plane with the webhook,
// the relay, a managed cluster with its agent and the page, then runs this
// script and answers its requests:
//
//   stdout "ACT <name>"   the test makes a change on the clusters, then writes
//   stdin  "DONE <name>"  back when it has happened
//   stdout "PASS <check>" / "FAIL <check>: <why>"
//
// Environment: UI_URL (the printed address with the token), CHROMIUM (the
// browser binary), UI_SCREENSHOTS (a directory for the screenshots, optional).

import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const url = process.env.UI_URL;
const shots = process.env.UI_SCREENSHOTS || '';
const origin = new URL(url).origin;
const TIMEOUT = 30_000;

// ---- the conversation with the test ------------------------------------------
const lines = [];
let wake = null;
createInterface({ input: process.stdin }).on('line', (l) => { lines.push(l); if (wake) wake(); });
async function act(name) {
  console.log('ACT ' + name);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const i = lines.indexOf('DONE ' + name);
    if (i >= 0) { lines.splice(i, 1); return; }
    if (Date.now() > deadline) throw new Error('the test did not answer ACT ' + name);
    await new Promise((r) => { wake = r; setTimeout(r, 500); });
  }
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium' });
const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, deviceScaleFactor: 1 });
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT);

const problems = [];
page.on('console', (m) => {
  // A 4xx answer the page handles (a refusal, a denial) is logged by Chromium as
  // "Failed to load resource"; anything else is a problem (CSP violations too).
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push('console: ' + m.text());
});
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
const foreign = [];
page.on('request', (r) => { if (!r.url().startsWith(origin + '/')) foreign.push(r.url()); });

let failed = 0;
async function step(name, fn) {
  try {
    await fn();
    console.log('PASS ' + name);
  } catch (e) {
    failed += 1;
    console.log('FAIL ' + name + ': ' + String(e && e.message ? e.message : e).split('\n').slice(0, 3).join(' | '));
    await shot('failure-' + name.replace(/[^a-z0-9]+/gi, '-').toLowerCase(), true);
  }
}

async function shot(name, fullPage = false) {
  if (!shots) return;
  // A passing notice ("Created ...") from an earlier step is not part of the state shown.
  await page.evaluate(() => { document.getElementById('notice').textContent = ''; }).catch(() => {});
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, name + '.png'), fullPage }).catch(() => {});
}

function check(cond, what) { if (!cond) throw new Error(what); }
const text = async (sel) => (await page.locator(sel).first().textContent()) || '';
async function waitText(sel, needle, timeout = TIMEOUT) {
  await page.locator(sel).filter({ hasText: needle }).first().waitFor({ timeout });
}
async function go(hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
}

// ---- the checks ----------------------------------------------------------------

let headers = {};
await step('the printed address trades its token for a cookie and the page its session token', async () => {
  const resp = await page.goto(url);
  headers = resp.headers();
  check(new URL(page.url()).search === '', 'the token stays in the address bar: ' + page.url());
  await page.locator('#secrets-table').waitFor();
  check(!page.url().includes('csrf='), 'the session token stays in the address bar: ' + page.url());
  await page.locator('#secrets-table').waitFor();
  await waitText('#live', 'live');
});

await step('the list shows every secret with its owner, targets and the rule for the others', async () => {
  await waitText('#row-shared-git-creds td.targets', 'cluster1, cluster2, cluster3');
  await waitText('#row-argocd-notifications-secret', 'cluster1');
  await waitText('#row-argocd-notifications-secret', 'adopted');
  await waitText('#row-team-repo', 'cluster1');
  await waitText('#row-team-repo td.targets', 'no-targets');
  await waitText('#row-shared-git-creds', 'synced');
});

await step('keyboard: skip link, then the sections by Tab and Enter', async () => {
  await page.reload();
  await page.locator('#secrets-table').waitFor();
  await page.keyboard.press('Tab');
  const first = await page.evaluate(() => document.activeElement.outerHTML.slice(0, 80));
  check(first.includes('Skip to content'), 'Tab does not reach the skip link first but ' + first);
  let reached = false;
  for (let i = 0; i < 12 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement.id === 'nav-policy');
  }
  check(reached, 'Tab never reaches the Policy link');
  await page.keyboard.press('Enter');
  await page.locator('h1#policy-title').waitFor();
  check(await page.evaluate(() => document.activeElement.id === 'policy-title'), 'focus does not move to the new heading');
  await go('#/secrets');
  await page.locator('#new-secret').focus();
  await page.keyboard.press('Enter');
  await page.locator('h1#editor-title').waitFor();
  // Radios and checkboxes answer Space and the arrows.
  await page.locator('#mode-all').focus();
  await page.keyboard.press('ArrowRight');
  check(await page.locator('#mode-match').isChecked(), 'the arrow key does not move the target choice');
  await page.locator('#f-targets details.advanced summary').focus();
  await page.keyboard.press('Enter');
  await page.locator('#mode-list').focus();
  await page.keyboard.press('Space');
  check(await page.locator('#mode-list').isChecked(), 'Space does not choose the name list');
  await page.locator('#cl-cluster2').focus();
  await page.keyboard.press('Space');
  check(await page.locator('#cl-cluster2').isChecked(), 'Space does not tick a cluster');
  await page.keyboard.press('Space');
});

await step('every control has an accessible name and is reachable by keyboard', async () => {
  for (const hash of ['#/secrets', '#/new', '#/policy', '#/why', '#/secrets/shared-git-creds']) {
    await go(hash);
    await page.waitForTimeout(300);
    const bad = await page.evaluate(() => {
      const out = [];
      for (const el of document.querySelectorAll('a[href], button, input, select, textarea')) {
        if (el.closest('[hidden]')) continue;
        const named = (el.labels && el.labels.length) || el.getAttribute('aria-label') || (el.textContent || '').trim() || el.getAttribute('title');
        if (!named) out.push(el.outerHTML.slice(0, 80));
        if (el.tabIndex < 0 && !el.disabled) out.push('not focusable: ' + el.outerHTML.slice(0, 80));
      }
      return out;
    });
    check(bad.length === 0, hash + ': ' + bad.join(' ; '));
  }
});

await step('create a managed secret for selected clusters and see the target list', async () => {
  await go('#/new');
  // A new form starts valid: not synced, no error, the seed's caution shown.
  await waitText('#preview', 'Not synced');
  check((await page.locator('#editor .target-error').allTextContents()).join('') === '', 'a new form shows an error');
  await waitText('#caution', 'not a secrets manager');
  // A name the API server would refuse is refused on the page.
  await page.locator('#f-name').fill('Payments_DB');
  await waitText('#f-name-error', 'Not a valid name');
  check(await page.locator('#save').isDisabled(), 'a bad name can be saved');
  await page.locator('#f-name').fill('payments-db');
  await page.locator('#f-name').press('Enter'); // Enter never creates
  check(await page.locator('#editor').isVisible(), 'Enter submitted the form');
  await page.locator('#f-argo').selectOption('repository');
  // "Selected clusters": match expressions, as Kubernetes writes matchExpressions.
  await page.locator('#mode-match').check();
  await waitText('#preview', 'Add a match expression');
  await page.locator('#m-key-0').fill('env');
  await page.locator('#m-op-0').selectOption('In');
  await page.locator('#m-values-0').fill('prod');
  await waitText('#goes-to', 'Goes to cluster1, cluster3');
  await page.locator('#add-expression').click();
  await page.locator('#m-key-1').fill('region');
  await page.locator('#m-op-1').selectOption('NotIn');
  await page.locator('#m-values-1').fill('us');
  await page.waitForFunction(() => /Goes to cluster1$/.test((document.querySelector('#goes-to') || {}).textContent || ''));
  // The advanced options: a name list, and a free-text selector.
  await page.locator('#f-targets details.advanced summary').click();
  await page.locator('#mode-list').check();
  await page.locator('#cl-cluster1').check();
  await page.locator('#cl-cluster3').check();
  await waitText('#goes-to', 'Goes to cluster1, cluster3');
  // The selector builder shows live which clusters it matches.
  await page.locator('#mode-selector').check();
  await page.locator('#f-selector').fill('region in (eu');
  await waitText('#preview', 'does not parse');
  await page.locator('#f-selector').fill('env=prod');
  await waitText('#goes-to', 'Goes to cluster1, cluster3');
  await page.locator('#f-selector').fill('region=eu');
  await waitText('#goes-to', 'Goes to cluster1, cluster2');
  check(await page.locator('#preview li[data-cluster="cluster3"]').textContent().then((t) => t.includes('down-sync-not-target')), 'cluster3 is not shown with its rule');
  await page.locator('#f-selector').fill('env=prod');
  await waitText('#goes-to', 'Goes to cluster1, cluster3');
  await page.locator('#k-0').fill('password');
  await page.locator('#v-0').fill('s3cret-value');
  await page.locator('#add-key').click();
  await page.locator('#k-1').fill('username');
  await page.locator('#v-1').fill('deploy');
  await shot('ui-editor');
  // Back to the list of clusters, which kept its ticks.
  await page.locator('#mode-list').check();
  await waitText('#goes-to', 'Goes to cluster1, cluster3');
  await page.locator('#save').click();
  await page.locator('h1#detail-title', { hasText: 'payments-db' }).waitFor();
  await waitText('#clusters-table tr[data-cluster="cluster1"]', 'yes');
  await waitText('#clusters-table tr[data-cluster="cluster2"]', 'down-sync-not-target');
  await waitText('#clusters-table tr[data-cluster="cluster3"]', 'yes');
  // cluster1's agent writes the down copy; the page reads it back from cluster1.
  await waitText('#clusters-table tr[data-cluster="cluster1"]', 'synced');
  await go('#/secrets');
  await waitText('#row-payments-db td.targets', 'cluster1, cluster3');
  await waitText('#row-payments-db', 'synced');
  await waitText('#row-payments-db', 'by secret-relay-ui');
  await shot('ui-secrets');
});

await step('values are never sent to the browser unless one key is revealed', async () => {
  const state = await page.evaluate(async () => (await fetch('/api/state', {
    headers: { 'x-csrf-token': sessionStorage.getItem('secret-relay-session') },
  })).text());
  check(state.includes('payments-db'), 'the state lacks the new secret');
  check(!state.includes('s3cret-value') && !state.includes(Buffer_b64('s3cret-value')), 'a value is in /api/state');
  await go('#/secrets/payments-db');
  await page.locator('#keys').waitFor();
  check(!(await page.content()).includes('s3cret-value'), 'a value is in the page before it is revealed');
});

await step('reveal one key', async () => {
  await page.getByRole('button', { name: 'Reveal password' }).click();
  await waitText('#value-password', 's3cret-value');
  check(await page.getByRole('button', { name: 'Reveal username' }).isVisible(), 'the other key was revealed too');
  check(!(await page.content()).includes('>deploy<'), 'the other value is on the page');
  await shot('ui-detail');
});

await step('an adopted secret shows the owning cluster and how to release it, with editing disabled', async () => {
  await go('#/secrets/argocd-notifications-secret');
  await waitText('#detail-lock', 'Adopted by cluster cluster1');
  await waitText('#detail-lock', 'delete the Secret akuity/argocd-notifications-secret on cluster cluster1');
  await waitText('#detail-lock', 'release-return');
  check(await page.locator('#edit').isDisabled(), 'Edit is enabled');
  check(await page.locator('#delete').isDisabled(), 'Delete is enabled');
  check((await page.locator('#edit').getAttribute('aria-describedby')) === 'detail-lock', 'the disabled Edit does not point at the banner');
  await shot('ui-adopted');
  // Going to the editor by address shows the same lock, every control disabled.
  await go('#/secrets/argocd-notifications-secret/edit');
  await waitText('#editor-lock', 'Adopted by cluster cluster1');
  check(await page.locator('#save').isDisabled(), 'Save is enabled on an adopted secret');
  check(await page.locator('#f-argo').isDisabled(), 'the editor is enabled on an adopted secret');
});

await step('a blocked name or type is refused before saving, with the rule', async () => {
  await go('#/new');
  await page.locator('#f-name').fill('argocd-secret');
  await page.locator('#mode-all').check();
  await waitText('#refused', 'blocked-name');
  check(await page.locator('#save').isDisabled(), 'Save is enabled for a blocked name');
  await shot('ui-blocked');
  await page.locator('#f-name').fill('my-token');
  await page.locator('#f-type').fill('kubernetes.io/service-account-token');
  await waitText('#refused', 'blocked-type');
  await page.locator('#f-type').fill('Opaque');
  await page.locator('#refused').waitFor({ state: 'detached' });
  // The server refuses it too, without asking the API server.
  const answer = await page.evaluate(async () => {
    const token = sessionStorage.getItem('secret-relay-session');
    const r = await fetch('/api/secrets', {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': token },
      body: JSON.stringify({ name: 'argocd-secret', target: { mode: 'all' }, data: { a: 'b' } }),
    });
    return { status: r.status, body: await r.json() };
  });
  check(answer.status === 422 && answer.body.error.rule === 'blocked-name', JSON.stringify(answer));
});

await step('a write that reaches the API server anyway shows the webhook\'s message', async () => {
  await go('#/secrets/argocd-image-updater-secret/edit');
  await page.locator('h1#editor-title').waitFor();
  check(!(await page.locator('#save').isDisabled()), 'Save is disabled on a control-plane secret');
  // A stale tab: live updates paused while a cluster takes the secret over.
  await page.locator('#pause').check();
  await act('adopt-image-updater');
  await waitText('#live', 'waiting', 15_000);
  await page.locator('#v-0').fill('changed-from-a-stale-tab');
  await page.locator('#save').click();
  await waitText('#save-error', 'The API server refused the write (403');
  await waitText('#save-error', 'denied the request');
  await waitText('#save-error', 'owned by cluster cluster1');
  await shot('ui-webhook-denial');
  // Resuming shows the lock and disables the editor.
  await page.locator('#pause').uncheck();
  await waitText('#editor-lock', 'Adopted by cluster cluster1');
  check(await page.locator('#save').isDisabled(), 'Save stays enabled after the lock arrived');
});

await step('a live update arrives without a reload', async () => {
  await go('#/secrets');
  await page.locator('#secrets-table').waitFor();
  await page.evaluate(() => { window.__sameDocument = 42; });
  await act('create-live');
  await page.locator('#row-arrived-live').waitFor({ timeout: 15_000 });
  await act('add-cluster4');
  await waitText('#row-shared-git-creds td.targets', 'cluster4', 15_000);
  check(await page.evaluate(() => window.__sameDocument === 42), 'the page was reloaded');
});

await step('the policy view lists clusters with labels and what each source admits', async () => {
  await go('#/policy');
  await waitText('#policy-clusters tr[data-cluster="cluster1"]', 'env=prod');
  await waitText('#policy-clusters tr[data-cluster="cluster1"]', 'read from akuity');
  await waitText('#policy-clusters tr[data-cluster="cluster4"]', 'env=dev');
  await waitText('#sources li[data-source="0"]', 'cluster1 / team-repo');
  await shot('ui-policy', true);
});

await step('the policy is edited, planned and saved on the page', async () => {
  await go('#/policy');
  await page.locator('#edit-policy').click();
  await page.locator('#policy-form').waitFor();
  const row = page.locator('#policy-cluster-rows li[data-name="cluster4"]');
  const labels = row.locator('input[id^="pc-labels-"]');
  check((await labels.inputValue()).includes('env=dev'), 'cluster4\'s labels are not in the editor');
  // A selector that does not parse: the ConfigMap's own problem, with its path; no save.
  const first = page.locator('#ps-clusters-0');
  const before = await first.inputValue();
  await first.fill('env in (');
  await first.press('Enter'); // Enter never submits
  check(await page.locator('#policy-form').isVisible(), 'Enter left the editor');
  await page.locator('#policy-plan-button').click();
  await waitText('#policy-problems', 'secretSources[0].clusterSelector');
  check(await page.locator('#policy-save').isDisabled(), 'an invalid policy can be saved');
  await first.fill(before);
  // A label for cluster4: planned (nothing moves), then saved.
  await labels.fill((await labels.inputValue()) + ', tier=gold');
  check(await page.locator('#policy-save').isDisabled(), 'a change can be saved before it is planned');
  await page.locator('#policy-plan-button').click();
  await waitText('#policy-plan', 'No hub copy or down copy changes');
  await shot('ui-policy-edit', true);
  await page.locator('#policy-save').click();
  await page.locator('h1#policy-title').waitFor();
  await waitText('#policy-clusters tr[data-cluster="cluster4"]', 'tier=gold');
});

await step('the why box explains a picked secret and a pasted manifest per direction and cluster', async () => {
  await go('#/why');
  await page.locator('#why-pick').selectOption('team-repo');
  await page.locator('#why-cluster').selectOption('cluster2');
  await page.locator('#why-pick-go').click();
  // One sentence first, for the cluster asked, with who can change it.
  await waitText('#why-sentences li[data-cluster="cluster2"]', 'team-repo does not go to cluster2');
  await waitText('#why-sentences li[data-cluster="cluster2"]', 'Who can change it');
  check(await page.locator('#why-sentences li').count() === 1, 'sentences for clusters not asked');
  // The whole grid stays behind "details".
  check(!(await page.locator('#why-table').isVisible()), 'the grid is shown before it is asked for');
  await page.locator('#why-details summary').click();
  await waitText('#why-table tr[data-cluster="cluster1"]', 'up-sync-owner');
  await waitText('#why-table tr[data-cluster="cluster1"]', 'release-delete');
  await waitText('#why-table tr[data-cluster="cluster2"]', 'owned-by-other-cluster');
  await waitText('#why-table tr[data-cluster="cluster4"]', 'no-matching-source');
  await page.locator('#why-manifest').fill([
    'apiVersion: v1', 'kind: Secret', 'metadata:', '  name: ci-token',
    '  labels: {akuity.io/secret-sync: "true", argocd.argoproj.io/secret-type: repo-creds}',
    '  annotations: {akuity.io/managed-secret-allowed-cluster-selector: "region=us"}',
    'data: {token: c2VjcmV0}',
  ].join('\n'));
  await page.locator('#why-cluster').selectOption('');
  await page.locator('#why-paste-go').click();
  await waitText('#why-results h2', 'ci-token (pasted)');
  await page.locator('#why-details summary').click();
  await waitText('#why-table tr[data-cluster="cluster3"]', 'down-sync');
  await waitText('#why-table tr[data-cluster="cluster2"]', 'up-sync-new');
  await waitText('#why-table tr[data-cluster="cluster1"]', 'down-sync-not-target');
  check(!(await text('#why-results')).includes('c2VjcmV0'), 'the pasted value came back');
  await shot('ui-why', true);
});

await step('every view at 1280 and 390 px: no sideways scroll, no serious or critical axe-core violation', async () => {
  // axe-core is injected, which the page's CSP (rightly) forbids: it runs in its own
  // context that bypasses the CSP, logged in with the same address.
  const axeContext = await browser.newContext({ bypassCSP: true, deviceScaleFactor: 1 });
  const axePage = await axeContext.newPage();
  axePage.setDefaultTimeout(TIMEOUT);
  await axePage.goto(url);
  await axePage.locator('#secrets-table').waitFor();
  const views = [
    ['secrets', '#/secrets', 'h1'],
    ['detail', '#/secrets/payments-db', 'h1#detail-title'],
    ['new', '#/new', 'h1#editor-title'],
    ['policy', '#/policy', 'h1#policy-title'],
    ['policy-edit', '#/policy/edit', '#policy-form'],
    ['why', '#/why', 'h1#why-title'],
  ];
  const bad = [];
  for (const width of [1280, 390]) {
    await axePage.setViewportSize({ width, height: 900 });
    for (const [name, hash, ready] of views) {
      await axePage.evaluate((h) => { location.hash = h; }, hash);
      await axePage.locator(ready).first().waitFor();
      if (name === 'why') {
        await axePage.locator('#why-pick').selectOption('team-repo');
        await axePage.locator('#why-pick-go').click();
        await axePage.locator('#why-sentences').waitFor();
      }
      const wide = await axePage.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      if (wide > 0) bad.push(name + ' at ' + width + ' px scrolls sideways by ' + wide + ' px');
      if (!(await axePage.evaluate(() => typeof window.axe === 'object'))) await axePage.evaluate(axeSource);
      const found = await axePage.evaluate(async () => {
        const r = await window.axe.run(document, { resultTypes: ['violations'] });
        return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
          .map((v) => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', '));
      });
      for (const f of found) bad.push(name + ' at ' + width + ' px: ' + f);
      if (shots) {
        mkdirSync(shots, { recursive: true });
        await axePage.screenshot({ path: join(shots, 'ui-' + name + '-' + width + '.png'), fullPage: true }).catch(() => {});
      }
    }
  }
  await axeContext.close();
  check(bad.length === 0, bad.join(' ; '));
});

await step('strict CSP, nothing from the network, CSRF on writes', async () => {
  const csp = headers['content-security-policy'] || '';
  for (const part of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"]) {
    check(csp.includes(part), 'the CSP lacks ' + part + ': ' + csp);
  }
  check(headers['x-content-type-options'] === 'nosniff', 'no nosniff');
  check(foreign.length === 0, 'requests left the page server: ' + foreign.join(', '));
  const inline = await page.evaluate(() => [...document.scripts].filter((s) => !s.src).map((s) => s.outerHTML.slice(0, 80))
    .concat([...document.querySelectorAll('[style]')].filter((e) => e.getAttribute('style') !== '').map((e) => e.outerHTML.slice(0, 120))));
  check(inline.length === 0, 'inline scripts or styles: ' + inline.join(' ; '));
  const noToken = await page.evaluate(async () => (await fetch('/api/secrets', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
  })).status);
  check(noToken === 403, 'a write without the CSRF token got ' + noToken);
  // The cookie alone reads nothing: a page of another port could make the browser
  // send it; the session token is this origin's alone.
  const cookieOnly = await page.evaluate(async () => (await fetch('/api/state')).status);
  check(cookieOnly === 403, 'a read with the cookie alone got ' + cookieOnly);
  check(problems.length === 0, problems.join(' ; '));
});

await browser.close();
console.log(failed ? 'FAILED ' + failed : 'ALL PASSED');
process.exit(failed ? 1 : 0);

function Buffer_b64(s) { return Buffer.from(s).toString('base64'); }
