// secret-relay ui: the page's script. No framework and nothing from the network:
// secret-relay serves this file itself. The DOM is built with textContent only
// (the Content-Security-Policy requires Trusted Types and allows none).
'use strict';

(() => {
  // The session token comes once, in the fragment of the address the printed one
  // leads to, and stays in this tab's sessionStorage (the page's own origin, port
  // included): the cookie alone opens no /api/ request.
  const given = /^#csrf=([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (given) {
    sessionStorage.setItem('secret-relay-session', given[1]);
    history.replaceState(null, '', location.pathname + location.search);
  }
  const csrf = sessionStorage.getItem('secret-relay-session') || '';
  const main = document.getElementById('main');
  const liveEl = document.getElementById('live');
  const pauseEl = document.getElementById('pause');
  const noticeEl = document.getElementById('notice');

  let view = null; // the view shown
  let waiting = null; // a view that arrived while paused
  let waitingCount = 0;
  let filterText = '';
  let revealed = { name: null, values: new Map() };
  let editor = null; // the open editor, if any
  let policyEditor = null; // the open policy editor, if any
  let whyForm = null; // the why box's inputs, kept across live updates
  let routeKey = null;
  let loaded = false; // focus moves to the heading on navigation, not on the first load

  // ---- DOM helpers -------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'readOnly' || k === 'required') el[k] = true;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // Replaces an element's children (null and false are skipped).
  function fill(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }

  const code = (t) => h('code', {}, t);
  const ruleChip = (rule, allowed) =>
    h('span', { class: 'rule ' + (allowed ? 'ok' : 'no') }, allowed ? '✓ ' : '✗ ', code(rule));

  function idFor(prefix, s) {
    return prefix + '-' + String(s).replace(/[^a-zA-Z0-9_-]/g, '_');
  }

  function when(iso) {
    if (!iso) return '—';
    const t = new Date(iso);
    const secs = Math.round((Date.now() - t.getTime()) / 1000);
    let rel;
    if (secs < 45) rel = 'just now';
    else if (secs < 5400) rel = Math.round(secs / 60) + ' min ago';
    else if (secs < 129600) rel = Math.round(secs / 3600) + ' h ago';
    else rel = Math.round(secs / 86400) + ' d ago';
    return h('time', { datetime: iso, title: iso }, rel);
  }

  let noticeAt = 0;
  function notice(text) {
    noticeAt = Date.now();
    noticeEl.textContent = text;
    if (text) setTimeout(() => { if (noticeEl.textContent === text) noticeEl.textContent = ''; }, 6000);
  }

  // ---- talking to the server ---------------------------------------------

  async function api(method, path, body) {
    const init = {
      method,
      credentials: 'same-origin',
      headers: { 'x-csrf-token': csrf },
    };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      return { ok: false, status: 0, data: { error: { message: 'the page server did not answer: ' + e.message } } };
    }
    let data = null;
    try { data = await resp.json(); } catch (_) { data = { error: { message: resp.statusText } }; }
    return { ok: resp.ok, status: resp.status, data };
  }

  // The error box: the API server's (and so the webhook's) message verbatim.
  function errorBox(err) {
    if (!err) return null;
    const from = err.from === 'api-server'
      ? 'The API server refused the write'
      : err.from === 'page' ? 'Refused before saving' : 'Failed';
    return h('div', { class: 'banner error', role: 'alert' },
      h('p', { class: 'banner-title' }, from + (err.code ? ' (' + err.code + (err.reason ? ' ' + err.reason : '') + ')' : '')),
      err.rule ? h('p', {}, 'Rule ', code(err.rule)) : null,
      h('p', { class: 'verbatim' }, err.message || 'no message'));
  }

  // ---- live updates --------------------------------------------------------

  function connect() {
    const es = new EventSource('/api/events?csrf=' + encodeURIComponent(csrf));
    es.addEventListener('state', (e) => {
      let v;
      try { v = JSON.parse(e.data); } catch (_) { return; }
      if (pauseEl.checked && view) {
        waiting = v;
        waitingCount += 1;
        liveEl.textContent = 'paused: ' + waitingCount + ' update' + (waitingCount === 1 ? '' : 's') + ' waiting';
        return;
      }
      apply(v);
    });
    es.addEventListener('open', () => { if (!pauseEl.checked) liveEl.textContent = 'live'; });
    es.addEventListener('error', () => { liveEl.textContent = 'reconnecting…'; });
  }

  pauseEl.addEventListener('change', () => {
    if (!pauseEl.checked) {
      liveEl.textContent = 'live';
      if (waiting) { const v = waiting; waiting = null; waitingCount = 0; apply(v); }
    } else {
      liveEl.textContent = 'paused';
    }
  });

  function apply(v) {
    view = v;
    document.getElementById('identity').textContent = v.identity && v.identity.username
      ? 'acting as ' + v.identity.username : '';
    render(false);
  }

  // ---- routing -------------------------------------------------------------

  function parseRoute() {
    const raw = location.hash.replace(/^#/, '') || '/secrets';
    const [path, query] = raw.split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || '');
    return { parts, params, key: raw };
  }

  window.addEventListener('hashchange', () => render(true));

  function render(navigated) {
    if (!view) return;
    const r = parseRoute();
    if (r.key !== routeKey) navigated = true;
    // A notice belongs to the page it was given on (and the one a save leads to).
    if (navigated && Date.now() - noticeAt > 1500) noticeEl.textContent = '';
    routeKey = r.key;
    const active = document.activeElement;
    const focusId = !navigated && active && active.id ? active.id : null;
    const caret = focusId && 'selectionStart' in active ? [active.selectionStart, active.selectionEnd] : null;

    const section = r.parts[0] || 'secrets';
    for (const s of ['secrets', 'policy', 'why']) {
      const a = document.getElementById('nav-' + s);
      if (s === section || (section === 'new' && s === 'secrets')) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (section !== 'secrets' || r.parts[1] !== revealed.name) revealed = { name: r.parts[1] || null, values: new Map() };

    if (section === 'new' || (section === 'secrets' && r.parts[2] === 'edit')) {
      const name = section === 'new' ? null : r.parts[1];
      if (navigated || !editor || editor.name !== name) openEditor(name);
      else editor.refresh();
    } else {
      editor = null;
      if (section === 'policy' && r.parts[1] === 'edit') {
        // The form keeps what was typed across live updates.
        if (navigated || !policyEditor) openPolicyEditor();
      } else if (section === 'policy') show(renderPolicy(), 'Policy · secret-relay');
      else if (section === 'why') {
        if (navigated || !whyForm) show(renderWhy(r.params.get('name')), 'Why? · secret-relay');
      } else if (section === 'secrets' && r.parts[1]) show(renderDetail(r.parts[1]), r.parts[1] + ' · secret-relay');
      else show(renderList(), 'Secrets · secret-relay');
    }
    if (section !== 'why') whyForm = null;
    if (section !== 'policy' || r.parts[1] !== 'edit') policyEditor = null;

    if (navigated && !loaded) {
      loaded = true;
    } else if (navigated) {
      const heading = main.querySelector('h1');
      if (heading) heading.focus();
    } else if (focusId) {
      const el = document.getElementById(focusId);
      if (el) {
        el.focus();
        if (caret && 'setSelectionRange' in el) { try { el.setSelectionRange(caret[0], caret[1]); } catch (_) { /* not a text input */ } }
      }
    }
  }

  // A table wider than its box scrolls inside it: keyboard users reach it too.
  function focusableScrollers() {
    for (const t of main.querySelectorAll('table')) {
      if (t.scrollWidth > t.clientWidth + 1) t.setAttribute('tabindex', '0');
      else t.removeAttribute('tabindex');
    }
  }
  window.addEventListener('resize', focusableScrollers);

  function show(content, title) {
    main.replaceChildren(content);
    focusableScrollers();
    // The heading takes focus on navigation, and keeps it across live updates.
    const heading = main.querySelector('h1');
    if (heading) heading.setAttribute('tabindex', '-1');
    document.title = title;
  }

  function statusBanners() {
    const out = [];
    if (!view.policy.ready) {
      out.push(h('div', { class: 'banner warn', role: 'status' },
        h('p', { class: 'banner-title' }, 'No valid policy loaded yet'),
        h('p', {}, 'From ', code('configmap ' + view.policy.source), view.policy.error ? ': ' + view.policy.error : '. Targets are unknown until it loads.')));
    } else if (view.policy.error) {
      out.push(h('div', { class: 'banner warn', role: 'status' },
        h('p', { class: 'banner-title' }, 'The newest policy document was rejected; the last good one (generation ' + view.policy.generation + ') is in force'),
        h('p', { class: 'verbatim' }, view.policy.error)));
    }
    if (view.secretsError) {
      out.push(h('div', { class: 'banner error', role: 'alert' }, h('p', { class: 'verbatim' }, view.secretsError)));
    }
    return out;
  }

  // ---- the list ------------------------------------------------------------

  function ownerCell(s) {
    if (s.owner.kind === 'control-plane') return h('span', { class: 'owner cp' }, 'control plane');
    if (s.owner.kind === 'cluster') {
      return h('span', { class: 'owner cluster' }, s.owner.cluster,
        s.adopted ? h('span', { class: 'badge adopted' }, 'adopted') : null,
        s.owner.registered ? null : h('span', { class: 'badge no' }, 'not registered'));
    }
    return h('span', { class: 'owner invalid' }, 'invalid: ', code(s.owner.label));
  }

  const SYNC_TEXT = {
    synced: '✓ synced', outdated: '↻ updating', pending: '… pending', conflict: '⚠ conflict',
    denied: '✗ denied', releasing: '↩ releasing', unknown: '? unknown',
    revoked: '✗ revoked', error: '⚠ error', leaving: '⏳ leaving', held: '⏸ deletion held',
  };

  function syncList(s) {
    const items = s.clusters.filter((c) => c.sync).map((c) =>
      h('li', { class: 'sync ' + c.sync.state, title: c.sync.detail },
        c.cluster + ' ' + (c.sync.direction === 'up' ? '↑' : '↓') + ' ' + (SYNC_TEXT[c.sync.state] || c.sync.state)));
    if (items.length) return h('ul', { class: 'plain' }, items);
    if (!view.reporters.length) return h('span', { class: 'muted' }, 'not reported');
    return h('span', { class: 'muted' }, '—');
  }

  function renderList() {
    const rows = view.secrets.filter((s) => !filterText || s.name.includes(filterText)
      || (s.owner.cluster || '').includes(filterText) || s.targets.some((t) => t.includes(filterText)));
    const table = h('table', { class: 'secrets', id: 'secrets-table' },
      h('caption', {}, rows.length + ' of ' + view.secrets.length + ' Secrets in ', code(view.namespace)),
      h('thead', {}, h('tr', {},
        ['Name', 'Owner', 'Goes to', 'Does not go to (rule)', 'Sync state', 'Last change'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((s) => h('tr', { id: idFor('row', s.name), 'data-name': s.name },
        h('th', { scope: 'row' },
          h('a', { href: '#/secrets/' + encodeURIComponent(s.name), id: idFor('link', s.name) }, s.name),
          s.argoType ? h('span', { class: 'badge' }, s.argoType) : null,
          s.blocked ? h('span', { class: 'badge no', title: s.blocked.reason }, 'blocked') : null,
          s.lock ? h('span', { class: 'badge lock', title: s.lock.title }, 'locked') : null),
        h('td', { 'data-label': 'Owner' }, ownerCell(s)),
        h('td', { class: 'targets', 'data-label': 'Goes to' }, s.targets.length ? s.targets.join(', ') : h('span', { class: 'muted', title: s.down.reason }, 'none (' + s.down.rule + ')')),
        h('td', { 'data-label': 'Does not go to' }, notTargets(s)),
        h('td', { 'data-label': 'Sync state' }, syncList(s)),
        h('td', { 'data-label': 'Last change' }, s.lastChange ? [when(s.lastChange.time), s.lastChange.manager ? h('span', { class: 'muted' }, ' by ' + s.lastChange.manager) : null] : '—')))));

    const filter = h('input', {
      type: 'search', id: 'filter', value: filterText, placeholder: 'name, owner or cluster',
      oninput: (e) => { filterText = e.target.value.trim(); render(false); },
    });
    const out = h('section', { 'aria-labelledby': 'list-title' },
      h('div', { class: 'heading-row' },
        h('h1', { id: 'list-title' }, 'Secrets'),
        h('a', { class: 'button primary', href: '#/new', id: 'new-secret' }, 'New secret')),
      statusBanners(),
      h('p', { class: 'lead' }, 'Every Secret of the control-plane namespace: who owns it, where it goes under the live policy, and the rule for each cluster it does not go to. Values are never shown here.'),
      h('p', { class: 'filter' }, h('label', { for: 'filter' }, 'Filter '), filter),
      view.secretsSynced || view.secrets.length ? table : h('p', {}, 'Reading the Secrets…'),
      reportersNote(),
      localOnly());
    return out;
  }

  // The clusters a secret does not go to, each with its rule (the reason on hover
  // and on the secret's page).
  function notTargets(s) {
    const not = s.clusters.filter((c) => !c.target);
    if (!not.length) return h('span', { class: 'muted' }, '—');
    if (!s.targets.length) return h('span', { class: 'muted' }, 'all clusters');
    const shown = not.slice(0, 4);
    return h('ul', { class: 'plain' }, shown.map((c) => h('li', { title: c.decision.reason }, c.cluster + ' ', code(c.decision.rule))),
      not.length > shown.length ? h('li', {}, h('a', { href: '#/secrets/' + encodeURIComponent(s.name) }, 'and ' + (not.length - shown.length) + ' more')) : null);
  }

  function reportersNote() {
    if (!view.reporters.length) {
      return h('p', { class: 'muted small' }, 'Sync state: no managed cluster is read. Start ', code('secret-relay ui --cluster-kubeconfig NAME=FILE'), ' to see what each agent reports.');
    }
    return h('p', { class: 'muted small' }, 'Sync state as the agents report it, read from ',
      view.reporters.map((r, i) => [i ? ', ' : '', r.cluster + (r.error ? ' (error: ' + r.error + ')' : r.synced ? '' : ' (reading…)')]), '.');
  }

  function localOnly() {
    if (!view.localOnly.length) return null;
    return h('section', { 'aria-labelledby': 'local-title' },
      h('h2', { id: 'local-title' }, 'Opted in on a cluster, not in the control plane'),
      h('table', {},
        h('thead', {}, h('tr', {}, ['Cluster', 'Secret', 'Decision', 'Agent says'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, view.localOnly.map((l) => h('tr', {},
          h('td', {}, l.cluster), h('td', {}, l.name),
          h('td', {}, ruleChip(l.decision.rule, l.decision.allowed), ' ', l.decision.reason),
          h('td', {}, l.event ? [h('strong', {}, l.event.reason), ': ', l.event.note, ' ', when(l.event.time)] : '—'))))));
  }

  // ---- one secret ------------------------------------------------------------

  function lockBanner(s, idPrefix) {
    if (!s.lock) return null;
    const id = idPrefix + '-lock';
    return h('div', { class: 'banner lock', id, role: 'region', 'aria-label': 'Ownership' },
      h('p', { class: 'banner-title' }, s.lock.title),
      h('p', {}, s.lock.detail),
      h('p', {}, ruleChip(s.lock.release.rule, s.lock.release.allowed), ' ', s.lock.release.reason),
      s.lock.canTakeOver ? h('p', {}, h('button', { type: 'button', id: 'take-over', onclick: () => takeOver(s.name) }, 'Take over for the control plane')) : null);
  }

  async function takeOver(name) {
    const r = await api('POST', '/api/secrets/' + encodeURIComponent(name) + '/take-over', {});
    if (r.ok) notice('The control plane owns ' + name + ' again.');
    else main.prepend(errorBox(r.data.error));
  }

  function renderDetail(name) {
    const s = view.secrets.find((x) => x.name === name);
    if (!s) {
      return h('section', {}, h('h1', {}, name), h('p', {}, 'There is no Secret ', code(name), ' in ', code(view.namespace), ' (any more).'),
        h('p', {}, h('a', { href: '#/secrets' }, 'Back to the list')));
    }
    const editDisabledWhy = s.lock ? 'detail-lock' : s.blocked ? 'detail-blocked' : null;
    const actions = h('p', { class: 'actions' },
      s.editable
        ? h('a', { class: 'button primary', href: '#/secrets/' + encodeURIComponent(s.name) + '/edit', id: 'edit' }, 'Edit')
        : h('button', { type: 'button', id: 'edit', disabled: true, 'aria-describedby': editDisabledWhy }, 'Edit'),
      h('button', { type: 'button', id: 'delete', disabled: !s.editable, 'aria-describedby': s.editable ? null : editDisabledWhy, onclick: () => remove(s.name) }, 'Delete'),
      h('a', { class: 'button', href: '#/why?name=' + encodeURIComponent(s.name), id: 'explain' }, 'Why?'));

    const clusters = h('table', { id: 'clusters-table' },
      h('caption', {}, 'Clusters under the live policy'),
      h('thead', {}, h('tr', {}, ['Cluster', 'Goes there', 'Rule', 'Reason', 'Sync state'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, s.clusters.map((c) => h('tr', { 'data-cluster': c.cluster },
        h('th', { scope: 'row' }, c.cluster, c.isOwner ? h('span', { class: 'badge lock' }, 'owner') : null),
        h('td', {}, c.target ? 'yes' : 'no'),
        h('td', {}, ruleChip(c.decision.rule, c.decision.allowed)),
        h('td', {}, c.decision.reason),
        h('td', {}, c.sync ? [h('span', { class: 'sync ' + c.sync.state }, (c.sync.direction === 'up' ? '↑ ' : '↓ ') + (SYNC_TEXT[c.sync.state] || c.sync.state)), ' ', h('span', { class: 'small' }, c.sync.detail), c.sync.time ? [' ', when(c.sync.time)] : null]
          : h('span', { class: 'muted' }, view.reporters.some((r) => r.cluster === c.cluster) ? '—' : 'not read'))))));

    const keys = h('ul', { class: 'keys', id: 'keys' }, s.keys.length ? s.keys.map((k) => keyItem(s, k)) : h('li', { class: 'muted' }, 'no keys'));

    return h('article', { 'aria-labelledby': 'detail-title' },
      h('p', { class: 'crumbs' }, h('a', { href: '#/secrets' }, 'Secrets'), ' / '),
      h('h1', { id: 'detail-title' }, s.name),
      statusBanners(),
      lockBanner(s, 'detail'),
      s.blocked ? h('div', { class: 'banner error', id: 'detail-blocked' },
        h('p', { class: 'banner-title' }, 'Blocked: never synced, not edited here'),
        h('p', {}, ruleChip(s.blocked.rule, false), ' ', s.blocked.reason)) : null,
      actions,
      h('dl', { class: 'facts' },
        fact('Owner', ownerCell(s)),
        fact('Type', code(s.type)),
        fact('Argo CD type', s.argoType ? code(s.argoType) : '—'),
        fact('Targets', targetsText(s.targetMode)),
        fact('Goes to', s.targets.length ? s.targets.join(', ') : ['none: ', code(s.down.rule)]),
        fact('Why', s.down.reason),
        s.problems.length ? fact('Annotation problems', h('ul', { class: 'plain' }, s.problems.map((p) => h('li', {}, p)))) : null,
        fact('Last change', s.lastChange ? [when(s.lastChange.time), ' ', s.lastChange.manager ? 'by ' + s.lastChange.manager + ' (' + s.lastChange.operation + ')' : ''] : '—'),
        fact('Created', when(s.created)),
        fact('resourceVersion', code(s.resourceVersion))),
      clusters,
      h('h2', {}, 'Keys'),
      h('p', { class: 'small muted' }, 'Values stay on the API server. Reveal asks for one key, as you, at the moment you click.'),
      keys,
      kvSection('Labels', s.labels),
      kvSection('Annotations', s.annotations));
  }

  function fact(k, v) { return [h('dt', {}, k), h('dd', {}, v)]; }

  function kvSection(title, map) {
    const entries = Object.entries(map || {});
    if (!entries.length) return null;
    return [h('h2', {}, title), h('dl', { class: 'kv' }, entries.map(([k, v]) => [h('dt', {}, code(k)), h('dd', {}, code(v))]))];
  }

  function targetsText(t) {
    switch (t.mode) {
      case 'none': return 'not synced (no target annotation)';
      case 'all': return 'all clusters (ALL)';
      case 'list': return ['listed: ', t.clusters.join(', ')];
      case 'selector': return ['selector ', code(t.selector)];
      default: return ['listed: ', t.clusters.join(', '), ' and selector ', code(t.selector)];
    }
  }

  function keyItem(s, key) {
    const value = revealed.name === s.name ? revealed.values.get(key) : undefined;
    const id = idFor('reveal', key);
    if (value !== undefined) {
      return h('li', { 'data-key': key }, code(key), ' ',
        h('output', { class: 'revealed', id: idFor('value', key), 'aria-label': 'value of ' + key }, value.value),
        value.encoding === 'base64' ? h('span', { class: 'muted small' }, ' (base64: not UTF-8)') : null, ' ',
        h('button', { type: 'button', id, onclick: () => { revealed.values.delete(key); render(false); document.getElementById(id)?.focus(); } }, 'Hide'));
    }
    return h('li', { 'data-key': key }, code(key), ' ', h('span', { class: 'muted' }, '••••••'), ' ',
      h('button', { type: 'button', id, 'aria-label': 'Reveal ' + key, onclick: () => reveal(s.name, key) }, 'Reveal'));
  }

  async function reveal(name, key) {
    const r = await api('POST', '/api/secrets/' + encodeURIComponent(name) + '/reveal', { key });
    if (!r.ok) { main.prepend(errorBox(r.data.error)); return; }
    if (revealed.name !== name) revealed = { name, values: new Map() };
    revealed.values.set(key, r.data);
    render(false);
    document.getElementById(idFor('reveal', key))?.focus();
  }

  async function remove(name) {
    if (!window.confirm('Delete the Secret ' + name + ' from the control plane? Its down copies are deleted from every cluster.')) return;
    const r = await api('DELETE', '/api/secrets/' + encodeURIComponent(name));
    if (r.ok) { notice('Deleted ' + name + '.'); location.hash = '#/secrets'; }
    else main.prepend(errorBox(r.data.error));
  }

  // ---- the editor ----------------------------------------------------------

  // The simple selector forms the builder shows, as match expressions; null for
  // anything else (it stays in the free-text box).
  function parseSelector(text) {
    const parts = [];
    let depth = 0;
    let cur = '';
    for (const ch of text) {
      if (ch === '(') depth += 1;
      if (ch === ')') depth -= 1;
      if (ch === ',' && depth === 0) { parts.push(cur); cur = ''; } else cur += ch;
    }
    parts.push(cur);
    const out = [];
    for (const raw of parts.map((p) => p.trim())) {
      let m;
      if (!raw) return null;
      if ((m = /^([A-Za-z0-9./_-]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(raw))) {
        out.push({ key: m[1], operator: m[2] === 'in' ? 'In' : 'NotIn', values: m[3].split(',').map((v) => v.trim()).filter(Boolean).join(', ') });
      } else if ((m = /^([A-Za-z0-9./_-]+)\s*(==?|!=)\s*([A-Za-z0-9._-]*)$/.exec(raw))) {
        out.push({ key: m[1], operator: m[2] === '!=' ? 'NotIn' : 'In', values: m[3] });
      } else if ((m = /^!\s*([A-Za-z0-9./_-]+)$/.exec(raw))) {
        out.push({ key: m[1], operator: 'DoesNotExist', values: '' });
      } else if ((m = /^([A-Za-z0-9./_-]+)$/.exec(raw))) {
        out.push({ key: m[1], operator: 'Exists', values: '' });
      } else return null;
    }
    return out;
  }

  function openEditor(name) {
    const existing = name ? view.secrets.find((s) => s.name === name) : null;
    if (name && !existing) { show(renderDetail(name), name); editor = null; return; }
    const ed = { name, existing };
    editor = ed;
    // A new secret starts valid and safe: not synced until targets are chosen. A
    // selector the builder can show opens in the builder; any other in the text box.
    const parsedMatch = existing && existing.targetMode.mode === 'selector' ? parseSelector(existing.targetMode.selector) : null;
    const mode = !existing ? 'none' : parsedMatch ? 'match' : existing.targetMode.mode;
    const chosen = new Set(existing ? existing.targetMode.clusters : []);

    const nameInput = h('input', { id: 'f-name', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false', value: name || '', readOnly: !!name, 'aria-describedby': 'f-name-hint f-name-error' });
    const nameError = h('span', { id: 'f-name-error', class: 'target-error', role: 'alert' });
    const typeInput = h('input', { id: 'f-type', name: 'type', list: 'secret-types', value: existing ? existing.type : 'Opaque', readOnly: !!name, 'aria-describedby': 'f-type-hint' });
    const argoSelect = h('select', { id: 'f-argo', name: 'argoType' },
      h('option', { value: '' }, '(none)'),
      view.argoTypes.map((t) => h('option', { value: t }, t)));
    argoSelect.value = existing && existing.argoType ? existing.argoType : '';

    // The seed's words: "All clusters" and "Selected clusters" (a match-expression
    // builder); a name list and a free-text selector are advanced options.
    const radio = ([m, label]) => h('label', { class: 'radio' },
      h('input', { type: 'radio', name: 'mode', value: m, id: 'mode-' + m, checked: m === mode, onchange: () => { if (m === 'match' && !exprRows.children.length) addExpr(); syncModeFields(); schedulePreview(); } }), ' ' + label);
    const advancedModes = [['list', 'A list of cluster names'], ['selector', 'A label selector, as text']];
    if (mode === 'both') advancedModes.push(['both', 'Listed clusters and a selector']);
    const radios = [
      [['none', 'Not synced'], ['all', 'All clusters'], ['match', 'Selected clusters']].map(radio),
      h('details', { class: 'advanced', open: advancedModes.some(([m]) => m === mode) },
        h('summary', {}, 'Advanced'), advancedModes.map(radio)),
    ];
    const labelKeys = [...new Set(view.policy.clusters.flatMap((c) => Object.keys(c.labels)))].sort();
    const exprRows = h('div', { id: 'f-match-rows' });
    function addExpr(e) {
      const x = e || { key: '', operator: 'In', values: '' };
      const i = exprRows.children.length;
      const key = h('input', { id: 'm-key-' + i, class: 'm-key', value: x.key, list: 'label-keys', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'label key of expression ' + (i + 1), oninput: schedulePreview });
      const op = h('select', { id: 'm-op-' + i, class: 'm-op', 'aria-label': 'operator of expression ' + (i + 1) },
        ['In', 'NotIn', 'Exists', 'DoesNotExist'].map((o) => h('option', { value: o }, o)));
      op.value = x.operator;
      const values = h('input', { id: 'm-values-' + i, class: 'm-values', value: x.values, autocomplete: 'off', spellcheck: 'false', placeholder: 'values, comma-separated', 'aria-label': 'values of expression ' + (i + 1), oninput: schedulePreview });
      const syncValues = () => { values.hidden = op.value === 'Exists' || op.value === 'DoesNotExist'; };
      op.addEventListener('change', () => { syncValues(); schedulePreview(); });
      syncValues();
      const row = h('div', { class: 'm-row' }, key, op, values,
        h('button', { type: 'button', class: 'small', 'aria-label': 'remove expression ' + (i + 1), onclick: () => { row.remove(); schedulePreview(); } }, 'Remove'));
      exprRows.append(row);
      return key;
    }
    if (parsedMatch) parsedMatch.forEach(addExpr);
    const matchField = h('fieldset', { id: 'f-match', class: 'sub' }, h('legend', {}, 'Clusters whose labels match every expression'),
      exprRows, h('datalist', { id: 'label-keys' }, labelKeys.map((k) => h('option', { value: k }))),
      h('button', { type: 'button', id: 'add-expression', onclick: () => addExpr().focus() }, 'Add a match expression'));
    function matchSelector() {
      return [...exprRows.children].map((row) => {
        const key = row.querySelector('.m-key').value.trim();
        const op = row.querySelector('.m-op').value;
        const values = row.querySelector('.m-values').value.split(',').map((v) => v.trim()).filter(Boolean);
        if (!key) return '';
        if (op === 'Exists') return key;
        if (op === 'DoesNotExist') return '!' + key;
        return key + (op === 'In' ? ' in (' : ' notin (') + values.join(',') + ')';
      }).filter(Boolean).join(', ');
    }
    // A listed name the policy does not register (a typo such as clsuter2) stays
    // checked and marked, so saving never drops it unseen; the preview names it.
    const registered = new Set(view.policy.clusters.map((c) => c.name));
    const unregistered = [...chosen].filter((n) => !registered.has(n) && n !== 'ALL');
    const clusterBoxes = h('fieldset', { id: 'f-clusters', class: 'sub' }, h('legend', {}, 'Clusters'),
      view.policy.clusters.length ? view.policy.clusters.map((c) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'cluster', value: c.name, id: idFor('cl', c.name), checked: chosen.has(c.name), onchange: schedulePreview }),
        ' ' + c.name + ' ', h('span', { class: 'muted small' }, labelsText(c.labels))))
        : h('p', { class: 'muted' }, 'The policy registers no cluster.'),
      unregistered.map((n) => h('label', { class: 'check unregistered', 'data-unregistered': n },
        h('input', { type: 'checkbox', name: 'cluster', value: n, id: idFor('cl-unregistered', n), checked: true, onchange: schedulePreview }),
        ' ' + n + ' ', h('span', { class: 'small' }, 'not a registered cluster: uncheck it to drop it'))));
    const selectorInput = h('input', {
      id: 'f-selector', name: 'selector', autocomplete: 'off', spellcheck: 'false', placeholder: 'env=prod, region in (eu, us)',
      value: existing ? existing.targetMode.selector : '', oninput: schedulePreview, 'aria-describedby': 'preview',
    });
    const selectorField = h('p', { id: 'f-selector-field', class: 'sub' }, h('label', { for: 'f-selector' }, 'Label selector over the clusters\' labels '), selectorInput);

    const dataRows = h('div', { id: 'f-data' });
    const addRow = (key, isExisting) => {
      const i = dataRows.children.length;
      const keyInput = h('input', { id: 'k-' + i, class: 'key', value: key || '', readOnly: isExisting, 'aria-label': 'key ' + (i + 1), autocomplete: 'off', spellcheck: 'false' });
      const valueInput = h('textarea', {
        id: 'v-' + i, class: 'value', rows: 1, autocomplete: 'off', spellcheck: 'false',
        'aria-label': 'value of ' + (key || 'key ' + (i + 1)),
        placeholder: isExisting ? 'unchanged — type to replace' : 'value',
      });
      const row = h('div', { class: 'kv-row', 'data-existing': isExisting ? key : null }, keyInput, valueInput,
        h('button', { type: 'button', class: 'small', 'aria-label': 'remove ' + (key || 'key ' + (i + 1)), onclick: () => {
          row.classList.toggle('removed');
          const removed = row.classList.contains('removed');
          valueInput.disabled = removed;
          if (!isExisting && removed) row.remove();
        } }, 'Remove'));
      dataRows.append(row);
      return keyInput;
    };
    if (existing) existing.keys.forEach((k) => addRow(k, true));
    else addRow('', false);

    const previewBox = h('div', { id: 'preview', class: 'preview', 'aria-live': 'polite' });
    const refusalBox = h('div', { id: 'refusal' });
    const errorArea = h('div', { id: 'save-error' });
    const lockArea = h('div', { id: 'editor-lock-area' });
    // A button, not a submit: Enter in a field never creates or saves.
    const saveButton = h('button', { type: 'button', class: 'primary', id: 'save', onclick: () => save() }, existing ? 'Save changes' : 'Create');
    const adoptionArea = h('div', { id: 'adoption-area', 'aria-live': 'polite' });
    const controls = h('fieldset', { id: 'editor-controls', class: 'bare' },
      h('legend', { class: 'visually-hidden' }, 'Secret'),
      h('p', {}, h('label', { for: 'f-name' }, 'Name '), nameInput, h('span', { id: 'f-name-hint', class: 'hint' }, name ? ' (names cannot change)' : ' lowercase letters, digits, - and .'), ' ', nameError),
      h('p', {}, h('label', { for: 'f-type' }, 'Secret type '), typeInput, h('span', { id: 'f-type-hint', class: 'hint' }, name ? ' (immutable)' : ''),
        h('datalist', { id: 'secret-types' }, view.secretTypes.map((t) => h('option', { value: t })))),
      h('p', {}, h('label', { for: 'f-argo' }, 'Argo CD secret type '), argoSelect, h('span', { class: 'hint' }, ' label argocd.argoproj.io/secret-type')),
      h('fieldset', { id: 'f-targets' }, h('legend', {}, 'Targets'), h('div', { class: 'radios' }, radios), matchField, clusterBoxes, selectorField, previewBox),
      h('fieldset', { id: 'f-data-set' }, h('legend', {}, 'Data'), dataRows,
        h('button', { type: 'button', id: 'add-key', onclick: () => addRow('', false).focus() }, 'Add key')));
    const form = h('form', { id: 'editor', novalidate: true, onsubmit: (e) => { e.preventDefault(); } },
      controls, adoptionArea, refusalBox, errorArea,
      h('p', { class: 'actions' }, saveButton, ' ', h('a', { class: 'button', href: existing ? '#/secrets/' + encodeURIComponent(name) : '#/secrets', id: 'cancel' }, 'Cancel')));

    show(h('section', { 'aria-labelledby': 'editor-title' },
      h('p', { class: 'crumbs' }, h('a', { href: '#/secrets' }, 'Secrets'), ' / '),
      h('h1', { id: 'editor-title' }, existing ? 'Edit ' + name : 'New managed secret'),
      statusBanners(), lockArea,
      h('p', { class: 'lead' }, 'A managed secret is owned by the control plane and goes to the clusters you choose. The write is made as you; the admission webhook judges it.'),
      h('p', { class: 'caution', id: 'caution' }, 'Use this for the few secrets Argo CD and its clusters share, such as repository credentials. It is not a secrets manager: there is no versioning, no rotation and no audit beyond the API server\'s.'),
      form), existing ? 'Edit ' + name + ' · secret-relay' : 'New secret · secret-relay');
    nameInput.addEventListener('input', schedulePreview);
    typeInput.addEventListener('input', schedulePreview);
    argoSelect.addEventListener('change', schedulePreview);

    function currentMode() { return form.querySelector('input[name="mode"]:checked').value; }
    function syncModeFields() {
      const m = currentMode();
      matchField.hidden = m !== 'match';
      clusterBoxes.hidden = !(m === 'list' || m === 'both');
      selectorField.hidden = !(m === 'selector' || m === 'both');
    }
    function target() {
      const m = currentMode();
      return {
        mode: m === 'match' ? 'selector' : m,
        clusters: [...clusterBoxes.querySelectorAll('input:checked')].map((i) => i.value),
        selector: m === 'match' ? matchSelector() : selectorInput.value,
      };
    }
    // A name as the API server checks it (a DNS subdomain), before anything is sent.
    function nameProblem() {
      if (name) return null;
      const v = nameInput.value.trim();
      if (!v) return null;
      if (v.length > 253) return 'at most 253 characters';
      if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v)) return 'use lowercase letters, digits, - and ., starting and ending with a letter or digit';
      return null;
    }
    let timer = null;
    let seq = 0;
    function schedulePreview() { clearTimeout(timer); timer = setTimeout(runPreview, 120); }
    async function runPreview() {
      const mine = ++seq;
      const r = await api('POST', '/api/preview', {
        name: nameInput.value, type: typeInput.value, argoType: argoSelect.value, target: target(), existing: name || null,
      });
      if (mine !== seq || editor !== ed || !r.ok) return;
      const p = r.data;
      ed.blocked = p.blocked;
      ed.nameProblem = nameProblem();
      nameError.textContent = ed.nameProblem ? 'Not a valid name: ' + ed.nameProblem : '';
      fill(adoptionArea, p.adoptable ? h('div', { class: 'banner warn', role: 'status', id: 'adoption-warning' },
        h('p', { class: 'banner-title' }, 'A cluster may adopt this secret'),
        h('p', {}, 'A cluster that syncs up a Secret named ' + (name || nameInput.value.trim()) + ' (and that a Secret Source admits) takes it over: the control plane then cannot edit it until the cluster releases it, and gets back its data.')) : null);
      fill(refusalBox, p.blocked ? h('div', { class: 'banner error', role: 'alert', id: 'refused' },
        h('p', { class: 'banner-title' }, 'Refused before saving: this Secret is blocked'),
        h('p', {}, 'Rule ', code(p.blocked.rule)), h('p', { class: 'verbatim' }, p.blocked.reason)) : '');
      const emptyMatch = currentMode() === 'match' && !matchSelector();
      const summary = emptyMatch
        ? h('p', { class: 'muted' }, 'Add a match expression: the secret goes to the clusters whose labels match every one.')
        : p.targetError
        ? h('p', { class: 'target-error' }, p.targetError)
        : currentMode() === 'none' ? h('p', {}, 'Not synced: it stays on the control plane.')
          : h('p', { id: 'goes-to' }, p.targets.length ? ['Goes to ', h('strong', {}, p.targets.join(', '))] : ['Goes to no cluster: ', code(p.down ? p.down.rule : 'no-targets')]);
      fill(previewBox, summary, currentMode() === 'none' ? null :
        h('ul', { class: 'plain preview-list' }, p.clusters.map((c) => h('li', { 'data-cluster': c.cluster, class: c.target ? 'match' : 'nomatch' },
          c.target ? '✓ ' : '✗ ', c.cluster + ' ', h('span', { class: 'muted small' }, labelsText(c.labels)), ' ',
          c.target ? null : h('span', { class: 'small' }, code(c.decision.rule))))),
        p.targetError || currentMode() === 'none' || !p.problems.length ? null :
          h('ul', { class: 'plain', id: 'preview-problems' }, p.problems.map((x) => h('li', { class: 'target-error' }, x)))
      );
      updateSave();
    }
    function updateSave() {
      saveButton.disabled = !!ed.locked || !!ed.blocked || !!ed.nameProblem;
    }
    async function save() {
      fill(errorArea);
      const data = {};
      const remove = [];
      for (const row of dataRows.children) {
        const key = row.querySelector('.key').value.trim();
        const value = row.querySelector('.value').value;
        const ex = row.getAttribute('data-existing');
        if (row.classList.contains('removed')) { if (ex) remove.push(ex); continue; }
        if (!key) continue;
        if (ex && value === '') continue; // unchanged
        data[key] = value;
      }
      let r;
      if (existing) {
        r = await api('PUT', '/api/secrets/' + encodeURIComponent(name), { argoType: argoSelect.value || null, target: target(), set: data, remove });
      } else {
        r = await api('POST', '/api/secrets', { name: nameInput.value.trim(), type: typeInput.value, argoType: argoSelect.value || null, target: target(), data });
      }
      if (r.ok) {
        const saved = existing ? name : nameInput.value.trim();
        notice((existing ? 'Saved ' : 'Created ') + saved + '.');
        editor = null;
        location.hash = '#/secrets/' + encodeURIComponent(saved);
      } else {
        fill(errorArea, errorBox(r.data.error));
        errorArea.querySelector('[role="alert"]')?.setAttribute('tabindex', '-1');
        errorArea.firstChild?.focus();
      }
    }
    ed.refresh = () => {
      // A live update: the secret may have changed owner under the editor. The
      // user's input stays; the lock banner and the disabled controls follow.
      const now = existing ? view.secrets.find((s) => s.name === name) : null;
      if (existing && !now) {
        fill(lockArea, h('div', { class: 'banner error', role: 'alert' }, h('p', {}, 'This Secret was deleted while you were editing it.')));
        ed.locked = true;
      } else if (now && now.lock) {
        fill(lockArea, lockBanner(now, 'editor'));
        ed.locked = true;
      } else {
        fill(lockArea);
        ed.locked = false;
      }
      controls.disabled = !!ed.locked;
      updateSave();
      schedulePreview();
    };
    syncModeFields();
    ed.refresh();
    runPreview();
  }

  function labelsText(labels) {
    const e = Object.entries(labels || {});
    return e.length ? '(' + e.map(([k, v]) => k + '=' + v).join(', ') + ')' : '(no labels)';
  }

  // ---- policy ----------------------------------------------------------------

  function renderPolicy() {
    const p = view.policy;
    return h('section', { 'aria-labelledby': 'policy-title' },
      h('h1', { id: 'policy-title' }, 'Policy'),
      statusBanners(),
      h('p', { class: 'lead' }, 'From ', code('configmap ' + p.source), ' (key policy.yaml), generation ' + p.generation + '. Hub copies live in ', code(p.controlPlaneNamespace), '; agents work in ', code(p.agentNamespace), '.'),
      h('p', {}, h('a', { href: '#/policy/edit', class: 'button', id: 'edit-policy' }, 'Edit clusters and Secret Sources')),
      h('h2', {}, 'Registered clusters'),
      h('table', { id: 'policy-clusters' },
        h('thead', {}, h('tr', {}, ['Cluster', 'Labels', 'Agent reports'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, p.clusters.length ? p.clusters.map((c) => {
          const r = view.reporters.find((x) => x.cluster === c.name);
          return h('tr', { 'data-cluster': c.name }, h('th', { scope: 'row' }, c.name),
            h('td', {}, Object.entries(c.labels).map(([k, v]) => h('span', { class: 'label' }, k + '=' + v))),
            h('td', {}, r ? [r.error ? h('span', { class: 'no' }, r.error) : r.synced ? 'read from ' + r.namespace : 'reading…',
              r.eventsError ? h('p', { class: 'muted small' }, r.eventsError) : null] : h('span', { class: 'muted' }, 'not read')));
        }) : h('tr', {}, h('td', { colspan: 3 }, 'No cluster is registered.')))),
      h('h2', {}, 'Secret Sources'),
      h('p', { class: 'small muted' }, 'A cluster may sync a Secret up when a source\'s cluster selector matches the cluster and its label selector matches the Secret. Each Secret below is admitted by the first source that matches it.'),
      p.sources.length ? h('ol', { class: 'sources', id: 'sources' }, p.sources.map((s) => h('li', { 'data-source': s.index },
        h('p', {}, 'Clusters ', code(s.clusterSelector || '(any)'), ' → ', s.clusters.length ? s.clusters.join(', ') : h('span', { class: 'muted' }, 'none registered')),
        h('p', {}, 'Secrets ', code(s.labelSelector || '(any)')),
        s.admits.length ? h('ul', { class: 'plain admits' }, s.admits.map((a) => h('li', {},
          a.cluster + ' / ' + a.name + ' ', h('span', { class: 'muted small' },
            a.onCluster === null ? '(hub copy; the cluster is not read)'
              : a.onCluster && a.inHub ? '(on the cluster and in the hub)'
                : a.onCluster ? '(on the cluster, not in the hub yet)' : '(hub copy; gone from the cluster: being released)'))))
          : h('p', { class: 'muted small' }, view.reporters.length ? 'admits no Secret yet' : 'admits no hub copy yet (the clusters\' own Secrets are not read)'))))
        : h('p', {}, 'No Secret Source: nothing syncs up.'),
      h('h2', {}, 'Blocked'),
      h('dl', { class: 'facts' },
        fact('Names', p.blocked.names.map((n, i) => [i ? ', ' : '', code(n)])),
        fact('Types', p.blocked.types.map((n, i) => [i ? ', ' : '', code(n)])),
        fact('Labels', p.blocked.labels.map((n, i) => [i ? ', ' : '', code(n)]))),
      h('h2', {}, 'Break-glass'),
      h('p', {}, p.breakGlass.users.length || p.breakGlass.groups.length
        ? ['Users: ', p.breakGlass.users.join(', ') || '—', '; groups: ', p.breakGlass.groups.join(', ') || '—']
        : 'Nobody: every writer is judged by the rules.'),
      relayPanel());
  }

  // ---- policy editor ---------------------------------------------------------
  // Clusters and Secret Sources, checked by the ConfigMap's own parser, planned over
  // the live hub copies, and saved as you under the version read. Blocked entries,
  // break-glass and the namespaces are kept as they are: they change in the ConfigMap.

  const labelsField = (labels) => Object.entries(labels || {}).map(([k, v]) => k + "=" + v).join(", ");
  function labelsOf(text) {
    const out = {};
    for (const part of text.split(',').map((x) => x.trim()).filter(Boolean)) {
      const i = part.indexOf('=');
      if (i < 0) out[part] = '';
      else out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
    }
    return out;
  }

  async function openPolicyEditor() {
    const ed = { clusters: [], sources: [], resourceVersion: null, planned: null, error: null };
    policyEditor = ed;
    show(h('section', { 'aria-labelledby': 'policy-edit-title' },
      h('h1', { id: 'policy-edit-title' }, 'Edit the policy'),
      h('p', { role: 'status' }, 'Reading the policy…')), 'Edit the policy · secret-relay');
    const got = await api('GET', '/api/policy');
    if (policyEditor !== ed) return;
    if (!got.ok) {
      show(h('section', { 'aria-labelledby': 'policy-edit-title' },
        h('h1', { id: 'policy-edit-title' }, 'Edit the policy'), errorBox(got.data.error)), 'Edit the policy · secret-relay');
      return;
    }
    ed.resourceVersion = got.data.resourceVersion;
    ed.clusters = got.data.clusters.map((c) => ({ name: c.name, labels: labelsField(c.labels) }));
    ed.sources = got.data.sources.map((x) => ({ clusterSelector: x.clusterSelector, labelSelector: x.labelSelector }));
    drawPolicyEditor(ed);
  }

  function policyChange(ed) {
    return {
      clusters: ed.clusters.map((c) => ({ name: c.name.trim(), labels: labelsOf(c.labels) })),
      sources: ed.sources.map((x) => ({ clusterSelector: x.clusterSelector, labelSelector: x.labelSelector })),
      resourceVersion: ed.resourceVersion,
    };
  }

  function drawPolicyEditor(ed, focusId) {
    const changed = () => { ed.planned = null; ed.error = null; drawResult(); };
    const move = (list, i, d) => { const j = i + d; if (j < 0 || j >= list.length) return; [list[i], list[j]] = [list[j], list[i]]; ed.planned = null; drawPolicyEditor(ed); };
    const remove = (list, i) => { list.splice(i, 1); ed.planned = null; drawPolicyEditor(ed); };
    const input = (id, label, value, set, hint) => h('label', { class: 'field' }, label + ' ',
      h('input', { id, value, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': hint || null, oninput: (e) => { set(e.target.value); changed(); } }));
    const clusterRows = ed.clusters.map((c, i) => h('li', { class: 'edit-row', 'data-cluster-row': i, 'data-name': c.name },
      input('pc-name-' + i, 'Name', c.name, (v) => { c.name = v; }),
      input('pc-labels-' + i, 'Labels', c.labels, (v) => { c.labels = v; }, 'pc-labels-hint'),
      h('button', { type: 'button', class: 'secondary', onclick: () => remove(ed.clusters, i), 'aria-label': 'Remove cluster ' + (c.name || i + 1) }, 'Remove')));
    const sourceRows = ed.sources.map((x, i) => h('li', { class: 'edit-row', 'data-source-row': i },
      h('span', { class: 'muted' }, 'Source ' + (i + 1)),
      input('ps-clusters-' + i, 'Clusters', x.clusterSelector, (v) => { x.clusterSelector = v; }, 'ps-hint'),
      input('ps-secrets-' + i, 'Secrets', x.labelSelector, (v) => { x.labelSelector = v; }, 'ps-hint'),
      h('button', { type: 'button', class: 'secondary', disabled: i === 0, onclick: () => move(ed.sources, i, -1), 'aria-label': 'Move source ' + (i + 1) + ' up' }, '↑'),
      h('button', { type: 'button', class: 'secondary', disabled: i === ed.sources.length - 1, onclick: () => move(ed.sources, i, 1), 'aria-label': 'Move source ' + (i + 1) + ' down' }, '↓'),
      h('button', { type: 'button', class: 'secondary', onclick: () => remove(ed.sources, i), 'aria-label': 'Remove source ' + (i + 1) }, 'Remove')));
    const result = h('div', { id: 'policy-plan', 'aria-live': 'polite' });
    const saveButton = h('button', { type: 'button', id: 'policy-save', disabled: true, onclick: () => savePolicy(ed) }, 'Save the policy');
    function drawResult() {
      saveButton.disabled = !(ed.planned && ed.planned.problems.length === 0);
      fill(result, ed.error ? errorBox(ed.error) : null, ed.planned ? planView(ed.planned) : null);
    }
    const form = h('form', { id: 'policy-form', onsubmit: (e) => { e.preventDefault(); } },
      h('fieldset', {}, h('legend', {}, 'Registered clusters'),
        h('p', { id: 'pc-labels-hint', class: 'small muted' }, 'Labels as key=value, separated by commas: what Secret Sources and allowed-cluster selectors match.'),
        h('ol', { class: 'plain edit-list', id: 'policy-cluster-rows' }, clusterRows),
        h('button', { type: 'button', class: 'secondary', id: 'add-cluster', onclick: () => { ed.clusters.push({ name: '', labels: '' }); ed.planned = null; drawPolicyEditor(ed, 'pc-name-' + (ed.clusters.length - 1)); } }, 'Add a cluster')),
      h('fieldset', {}, h('legend', {}, 'Secret Sources'),
        h('p', { id: 'ps-hint', class: 'small muted' }, 'Label selectors as Kubernetes writes them (env=prod, team in (a,b)); empty matches everything, but not both. The first source that matches admits.'),
        h('ol', { class: 'plain edit-list', id: 'policy-source-rows' }, sourceRows),
        h('button', { type: 'button', class: 'secondary', id: 'add-source', onclick: () => { ed.sources.push({ clusterSelector: '', labelSelector: '' }); ed.planned = null; drawPolicyEditor(ed, 'ps-clusters-' + (ed.sources.length - 1)); } }, 'Add a Secret Source')),
      h('p', { class: 'actions' },
        h('button', { type: 'button', id: 'policy-plan-button', onclick: () => planPolicy(ed, drawResult) }, 'Plan the change'), ' ',
        saveButton, ' ',
        h('a', { href: '#/policy' }, 'Cancel')),
      result);
    show(h('section', { 'aria-labelledby': 'policy-edit-title' },
      h('h1', { id: 'policy-edit-title' }, 'Edit the policy'),
      h('p', { class: 'lead' }, 'The clusters and Secret Sources of ', code('configmap ' + view.policy.source), '. Plan the change to see what it does before you save it; saving writes the ConfigMap as you, and a change someone else saved meanwhile is reported, never overwritten. Blocked entries, break-glass and the namespaces are kept: change them in the ConfigMap. Saving rewrites the document without its comments.'),
      form), 'Edit the policy · secret-relay');
    drawResult();
    if (focusId) { const el = document.getElementById(focusId); if (el) el.focus(); }
  }

  async function planPolicy(ed, drawResult) {
    const got = await api('POST', '/api/policy/plan', policyChange(ed));
    if (policyEditor !== ed) return;
    if (!got.ok) { ed.error = got.data.error; ed.planned = null; } else { ed.planned = got.data; ed.error = null; }
    drawResult();
  }

  const WHEN_TEXT = {
    now: 'now', 'after-revocation-grace': 'after the relay\'s grace', 'after-deletion-grace': 'after the agent\'s grace',
    'after-revocation-then-deletion-grace': 'after both graces', 'held-beyond-budget': 'held: needs a confirmation',
    'after-unregistered-grace': 'after the removed cluster\'s grace',
  };

  function planView(planned) {
    if (planned.problems.length) {
      return h('div', { class: 'banner error', role: 'alert' },
        h('p', { class: 'banner-title' }, 'The policy would not be valid'),
        h('ul', { id: 'policy-problems' }, planned.problems.map((p) => h('li', {}, p.path ? [code(p.path), ': '] : null, p.message))));
    }
    const plan = planned.plan;
    return [h('h2', {}, 'What the change does'),
      plan.rows.length ? h('div', { class: 'scroll' }, h('table', { id: 'policy-plan-rows' },
        h('thead', {}, h('tr', {}, ['Change', 'Secret', 'Cluster', 'When', 'Rule'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, plan.rows.map((r) => h('tr', { title: r.reason },
          h('td', {}, r.change), h('td', {}, r.secret), h('td', {}, r.cluster), h('td', {}, WHEN_TEXT[r.when] || r.when), h('td', {}, code(r.rule)))))))
        : h('p', { id: 'policy-plan-rows' }, 'No hub copy or down copy changes.'),
      plan.clustersAdded && plan.clustersAdded.length ? h('p', {}, 'Clusters added: ' + plan.clustersAdded.join(', ')) : null,
      plan.clustersRemoved && plan.clustersRemoved.length ? h('p', {}, 'Clusters removed: ' + plan.clustersRemoved.join(', ')) : null,
      plan.notes.map((n) => h('p', { class: 'small muted' }, n))];
  }

  async function savePolicy(ed) {
    const got = await api('PUT', '/api/policy', policyChange(ed));
    if (policyEditor !== ed) return;
    if (!got.ok) {
      ed.error = got.data.error;
      ed.planned = null;
      drawPolicyEditor(ed, 'policy-plan-button');
      return;
    }
    policyEditor = null;
    notice('Policy saved: the relay, the webhook and the agents take it within seconds.');
    location.hash = '#/policy';
  }

  function relayPanel() {
    const r = view.relay;
    if (!r) return null;
    return [h('h2', {}, 'Relay'),
      h('p', { class: 'small muted' }, 'From ', code(r.url), r.readAt ? [' ', when(r.readAt)] : null),
      r.error ? h('p', { class: 'no' }, r.error) : null,
      r.connectedClusters !== null && r.connectedClusters !== undefined ? h('p', {}, 'Connected clusters: ' + r.connectedClusters) : null,
      r.writes.length ? h('table', {},
        h('caption', {}, 'Writes through the relay since it started'),
        h('thead', {}, h('tr', {}, ['Decision', 'Rule', 'Count'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, r.writes.map((w) => h('tr', {}, h('td', {}, w.decision), h('td', {}, code(w.rule)), h('td', { class: 'num' }, String(w.count)))))) : null,
      r.refusals.length ? h('p', {}, 'Refused before policy: ', r.refusals.map((x, i) => [i ? ', ' : '', x.reason + ' ' + x.count])) : null];
  }

  // ---- why -------------------------------------------------------------------

  function renderWhy(preset) {
    const pick = h('select', { id: 'why-pick' }, h('option', { value: '' }, '(choose)'),
      view.secrets.map((s) => h('option', { value: s.name }, s.name)));
    if (preset) pick.value = preset;
    const clusterPick = h('select', { id: 'why-cluster' }, h('option', { value: '' }, 'every cluster'),
      view.policy.clusters.map((c) => h('option', { value: c.name }, c.name)));
    const paste = h('textarea', { id: 'why-manifest', rows: 10, spellcheck: 'false', placeholder: 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: my-secret\n  labels:\n    akuity.io/secret-sync: "true"' });
    const results = h('div', { id: 'why-results', 'aria-live': 'polite' });
    whyForm = { pick, paste, results };
    const ask = async (body) => {
      fill(results, h('p', {}, 'Asking…'));
      const r = await api('POST', '/api/explain', body);
      fill(results, r.ok ? whyAnswer(r.data, clusterPick.value) : errorBox(r.data.error));
    };
    const out = h('section', { 'aria-labelledby': 'why-title' },
      h('h1', { id: 'why-title' }, 'Why does it (not) sync?'),
      statusBanners(),
      h('p', { class: 'lead' }, 'The answer of ', code('secret-relay explain'), ' for every direction and every registered cluster, under the live policy.'),
      h('form', { id: 'why-pick-form', class: 'inline', onsubmit: (e) => { e.preventDefault(); ask({ name: pick.value }); } },
        h('label', { for: 'why-pick' }, 'Pick a Secret of the control plane '), pick, ' ',
        h('label', { for: 'why-cluster' }, 'and a cluster '), clusterPick, ' ', h('button', { type: 'submit', id: 'why-pick-go' }, 'Explain')),
      h('form', { id: 'why-paste-form', onsubmit: (e) => { e.preventDefault(); ask({ manifest: paste.value }); } },
        h('p', {}, h('label', { for: 'why-manifest' }, 'Or paste a Secret manifest (YAML or JSON; its values are only read by this page\'s server and never sent back)')),
        paste, h('p', {}, h('button', { type: 'submit', id: 'why-paste-go' }, 'Explain the manifest'))),
      results);
    if (preset) setTimeout(() => ask({ name: preset }), 0);
    return out;
  }

  // Sources are numbered on the page as on the Policy page: from 1.
  const sourceNumbers = (text) => String(text).replace(/secretSources\[(\d+)\]/g, (_, n) => 'Secret Source ' + (Number(n) + 1));

  function answer(d) {
    return h('div', { class: 'answer' }, ruleChip(d.rule, d.allowed), d.action ? h('span', { class: 'badge' }, d.action) : null, h('p', { class: 'small' }, sourceNumbers(d.reason)));
  }

  function whyAnswer(e, cluster) {
    const asked = cluster ? e.clusters.filter((c) => c.cluster === cluster) : e.clusters;
    return h('div', {},
      h('h2', {}, e.name + (e.judged === 'hub' ? ' (hub copy)' : ' (pasted)')),
      h('ul', { class: 'plain', id: 'why-sentences' }, asked.map((c) => h('li', { 'data-cluster': c.cluster, class: 'why-sentence' },
        h('p', { class: 'sentence' }, sourceNumbers(c.sentence)),
        h('p', { class: 'small' }, h('strong', {}, 'Who can change it: '), c.fix)))),
      h('details', { id: 'why-details' }, h('summary', {}, 'Details: every direction for every cluster'),
      e.notes.map((n) => h('p', { class: 'small muted' }, n)),
      h('dl', { class: 'facts' },
        fact('Down, as a whole', [answer(e.down), e.targets.length ? 'Targets: ' + e.targets.join(', ') : null]),
        fact('Control plane\'s way out', answer(e.reclaim))),
      h('div', { class: 'scroll' }, h('table', { id: 'why-table' },
        h('caption', {}, 'Per cluster'),
        h('thead', {}, h('tr', {}, ['Cluster', 'Up (cluster → control plane)', 'Down (control plane → cluster)', 'Release'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, e.clusters.map((c) => h('tr', { 'data-cluster': c.cluster },
          h('th', { scope: 'row' }, c.cluster, h('br'), h('span', { class: 'muted small' }, labelsText(c.labels))),
          h('td', {}, answer(c.up), h('p', { class: 'muted small' }, 'judged: ' + c.upFrom)),
          h('td', {}, answer(c.down)),
          h('td', {}, answer(c.release)))))))));
  }

  // ---- start ---------------------------------------------------------------

  document.addEventListener('keydown', (e) => {
    // "/" focuses the list filter, as in many consoles.
    if (e.key === '/' && !(e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLSelectElement)) {
      const f = document.getElementById('filter');
      if (f) { e.preventDefault(); f.focus(); }
    }
  });
  if (csrf) {
    connect();
  } else {
    liveEl.textContent = '';
    fill(main, h('p', {}, 'Open the address that secret-relay ui printed when it started: it gives this tab its session.'));
  }
})();
