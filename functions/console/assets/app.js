// Berth's console: one module, no dependencies. It speaks the same JSON API as the CLI, with the
// account token the user signed in with, kept for this tab only (sessionStorage, never a URL).
// Everything shown comes from the API and is inserted as text (textContent, attributes), never
// parsed as markup, so a name, description, reason or log line that holds markup stays inert.

const TOKEN = 'berth.token';
const main = document.getElementById('main');
let generation = 0; // bumped on every page change; pollers of an older page stop

class Problem extends Error {
  constructor(status, body) {
    const detail = (body && (body.detail || body.title)) || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.code = body && body.code;
    this.field = body && body.field;
  }
}

// ---- the API ----

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${sessionStorage.getItem(TOKEN) || ''}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const answer = await fetch(path, {
    method, headers, cache: 'no-store', credentials: 'omit',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = answer.headers.get('content-type') || '';
  const data = answer.status === 204 ? null : type.includes('json') ? await answer.json() : await answer.text();
  if (answer.status === 401) {
    signOut('The token was refused or has expired: sign in again.');
    throw new Problem(401, data);
  }
  if (!answer.ok) throw new Problem(answer.status, data);
  return data;
}

const enc = encodeURIComponent;

// ---- building the page (text only) ----

function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key === 'class') element.className = value;
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// Nulls and falses are skipped: `cond ? node : null` reads well where a child is optional.
const add = (element, ...children) => append(element, children);
const replace = (element, ...children) => { element.replaceChildren(); return append(element, children); };

const link = (href, ...text) => h('a', { href }, ...text);
const badge = (state) => h('span', { class: `badge s-${state}` }, state);

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function table(headings, rows, empty = 'None yet.') {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, headings.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c)))))));
}

// A time in the viewer's zone with its age: "07/12/2026, 10:04:05 (3 min ago)".
function when(value) {
  if (value === undefined || value === null) return '';
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return h('time', { datetime: date.toISOString(), title: date.toISOString() }, date.toLocaleString(), ' ',
    h('span', { class: 'muted' }, `(${age(date)})`));
}

function age(date) {
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  const span = Math.abs(seconds);
  const [n, unit] = span < 60 ? [span, 's'] : span < 3600 ? [Math.floor(span / 60), 'min']
    : span < 86400 ? [Math.floor(span / 3600), 'h'] : [Math.floor(span / 86400), 'd'];
  return seconds >= 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
}

function page(title, ...children) {
  document.title = `${title} · Berth`;
  replace(main, h('h1', {}, title), ...children);
  main.focus({ preventScroll: true });
}

function failed(error) {
  if (error.status === 401) return;
  add(main, h('p', { class: 'problem', role: 'alert' }, error.message));
}

// A form whose problems are shown next to the field they name (or above its button).
function form(fields, submit, label, onSubmit) {
  const problem = h('p', { class: 'problem', role: 'alert', hidden: true });
  const element = h('form', { class: 'card', novalidate: true }, h('div', { class: 'row' }, fields), problem,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, submit)));
  element.setAttribute('aria-label', label);
  element.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const old of element.querySelectorAll('.field-error')) old.remove();
    problem.hidden = true;
    const button = element.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await onSubmit(Object.fromEntries(new FormData(element)));
    } catch (error) {
      if (error.status === 401) return;
      const at = error.field && fieldFor(element, error.field);
      if (at) at.after(h('span', { class: 'field-error', role: 'alert' }, `${error.field}: ${error.message}`));
      else { problem.textContent = error.message; problem.hidden = false; }
    } finally {
      button.disabled = false;
    }
  });
  return element;
}

// The input a problem's field names: exactly, or the closest by its dotted prefix.
function fieldFor(formElement, field) {
  const inputs = [...formElement.querySelectorAll('input, select, textarea')];
  const named = (input) => input.dataset.field || input.name;
  return inputs.find((i) => named(i) === field)
    || inputs.find((i) => field.startsWith(`${named(i)}.`) || field.startsWith(`${named(i)}[`))
    || inputs.find((i) => named(i).startsWith(field));
}

function input(label, name, attrs = {}) {
  return h('label', {}, label, h('input', { name, autocomplete: 'off', ...attrs }));
}

function select(label, name, options, attrs = {}) {
  return h('label', {}, label, h('select', { name, ...attrs },
    options.map(([value, text]) => h('option', { value }, text ?? value))));
}

// Runs `draw` now and every `seconds` while it returns true and the page is still shown.
function every(seconds, draw) {
  const mine = generation;
  const tick = async () => {
    if (mine !== generation) return;
    let again = false;
    try { again = await draw(); } catch (error) { failed(error); }
    if (again && mine === generation) setTimeout(tick, seconds * 1000);
  };
  return tick();
}

// ---- sign-in ----

function signOut(message) {
  sessionStorage.removeItem(TOKEN);
  document.getElementById('nav').hidden = true;
  generation += 1;
  signIn(message);
}

function signIn(message) {
  const next = location.pathname.startsWith('/console/') && location.pathname !== '/console/' ? location.pathname : '/console/packages';
  page('Sign in',
    h('p', {}, 'Paste an account token: `berth dev-token` prints one for a local berth serve; in production use the bearer token your identity provider issues for Berth. It is kept in this tab only.'),
    message ? h('p', { class: 'problem', role: 'alert' }, message) : null,
    form([input('Account token', 'token', { type: 'password', required: true, spellcheck: 'false' })], 'Sign in', 'Sign in',
      async ({ token }) => {
        sessionStorage.setItem(TOKEN, token.trim());
        const account = await api('GET', '/v1/account');
        showNav(account);
        navigate(next, true);
      }));
}

function showNav(account) {
  document.getElementById('who').textContent = `account ${account.account}`;
  document.getElementById('nav').hidden = false;
}

// ---- packages ----

async function packagesPage() {
  page('Packages');
  const list = await api('GET', '/v1/packages?page_size=100');
  add(main, 
    table(['Name', 'Type', 'Description', 'Updated'], list.packages.map((p) =>
      [link(`/console/packages/${enc(p.name)}`, p.name), p.type, p.description, when(p.updated_at)])),
    pushKeyCard(),
    h('h2', {}, 'Create a package'),
    form([
      input('Name', 'name', { required: true, placeholder: 'hello_web' }),
      input('Description (10 to 500 characters)', 'description', { required: true }),
      input('First version', 'version', { required: true, placeholder: 'v1', 'data-field': 'version.name' }),
      input('Image repository', 'repository', { required: true, placeholder: 'acme/web', 'data-field': 'version.images' }),
      input('Tag', 'tag', { required: true, placeholder: 'v1' }),
    ], 'Create package', 'Create a package', async (v) => {
      const created = await api('POST', '/v1/packages', {
        name: v.name, description: v.description, type: 'ContainerImage',
        version: { name: v.version, images: [{ repository: v.repository, tag: v.tag }] },
      });
      navigate(`/console/packages/${enc(created.package.name)}`);
    }));
}

// "Obtain access credential": a fresh push key as the ready `docker login` command.
function pushKeyCard() {
  const out = h('div', { 'aria-live': 'polite' });
  const button = h('button', { type: 'button', class: 'secondary' }, 'Obtain access credential');
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const key = await api('POST', '/v1/registry/credentials', { purpose: 'push' });
      const command = `echo '${key.password}' | ${key.docker_login}`;
      const copy = h('button', { type: 'button', class: 'secondary' }, 'Copy');
      copy.addEventListener('click', async () => {
        try { await navigator.clipboard.writeText(command); copy.textContent = 'Copied'; } catch { copy.textContent = 'Select and copy'; }
      });
      replace(out, 
        h('p', {}, `A push key for ${key.registry}/${key.namespace}/…, expires `, when(key.expires_at), ':'),
        h('div', { class: 'command' }, h('pre', { id: 'docker-login' }, command), copy));
    } catch (error) {
      replace(out, h('p', { class: 'problem', role: 'alert' }, error.message));
    } finally {
      button.disabled = false;
    }
  });
  return h('div', { class: 'card' }, h('h2', {}, 'Registry access'), button, out);
}

async function packagePage(name) {
  page(`Package ${name}`);
  const versions = h('div', { id: 'versions', 'aria-live': 'polite' });
  const about = h('div');
  add(main, about, h('h2', {}, 'Versions'), versions, pushKeyCard(), h('h2', {}, 'New version'),
    form([
      input('Version name', 'name', { required: true }),
      input('Image repository', 'repository', { required: true, 'data-field': 'images' }),
      input('Tag', 'tag', { required: true }),
    ], 'Create version', 'Create a version', async (v) => {
      await api('POST', `/v1/packages/${enc(name)}/versions`, { name: v.name, images: [{ repository: v.repository, tag: v.tag }] });
      every(1, drawVersions);
    }));
  const drawVersions = async () => {
    const view = await api('GET', `/v1/packages/${enc(name)}`);
    replace(about, facts([['Type', view.package.type], ['Description', view.package.description],
      ['Created', when(view.package.created_at)]]));
    replace(versions, table(['Version', 'Status', 'Image', 'Detail', 'Created'], view.versions.map((v) => [
      `${v.version} (#${v.number})`, badge(v.status),
      (v.images || []).map((i) => h('div', { class: 'mono' }, `${i.repository}:${i.tag}`)),
      v.status === 'Failed' ? [v.reason, (v.images || []).filter((i) => i.failure).map((i) => h('div', {}, i.failure.message))]
        : (v.images || []).filter((i) => i.digest).map((i) => h('div', { class: 'mono' }, i.digest)),
      when(v.created_at)])));
    return view.versions.some((v) => v.status === 'Creating');
  };
  await every(1, drawVersions);
}

// ---- services ----

async function servicesPage() {
  page('Services');
  const list = await api('GET', '/v1/services');
  add(main, table(['Name', 'Identifiers', 'Templates', 'Updated'], list.services.map((s) =>
    [link(`/console/services/${enc(s.name)}`, s.name), s.relations, s.templates.join(', '), when(s.updated_at)])));
}

async function servicePage(id) {
  page(`Service ${id}`);
  const service = await api('GET', `/v1/services/${enc(id)}`);
  const preview = h('div', { 'aria-live': 'polite' });
  add(main, 
    h('h2', {}, 'Relations'),
    table(['Identifier', 'Package', 'Version'], Object.entries(service.relations).map(([identifier, r]) =>
      [h('span', { class: 'mono' }, identifier), link(`/console/packages/${enc(r.package)}`, r.package),
        typeof r.version === 'string' ? r.version : JSON.stringify(r.version)])),
    h('h2', {}, 'Render preview'),
    form([select('Template', 'template', service.templates.map((t) => [t.name]))], 'Preview', 'Render preview',
      async ({ template }) => {
        const answer = await api('POST', `/v1/services/${enc(id)}/render`, { template, dry_run: true });
        replace(preview, table(['At', 'Identifier', 'Value'], answer.substitutions.map((s) =>
          [`${s.position.line}:${s.position.column}`, h('span', { class: 'mono' }, s.identifier),
            s.type === 'pull_key' ? h('span', { class: 'muted' }, 'a fresh pull key (minted at render)') : h('span', { class: 'mono' }, s.value)]),
        'The template has no identifiers.'));
      }),
    preview,
    h('h2', {}, 'Instances'));
  const instances = h('div');
  const secret = h('div', { 'aria-live': 'polite' });
  add(main, instances, secret);
  const act = (name, what) => async () => {
    try {
      const answer = await api('POST', `/v1/services/${enc(id)}/instances/${enc(name)}/${what}`);
      if (answer && answer.credential) {
        replace(secret, h('div', { class: 'card' }, h('p', {}, `New credential for ${name} (shown once; the others are revoked):`),
          facts([['Username', answer.credential.username], ['Password', h('span', { class: 'mono' }, answer.credential.password)]])));
      }
      await drawInstances();
    } catch (error) { failed(error); }
  };
  const drawInstances = async () => {
    const list = await api('GET', `/v1/services/${enc(id)}/instances?page_size=100`);
    replace(instances, table(['Name', 'State', 'Repositories', 'Credentials', 'Created', ''], list.instances.map((i) => [
      i.name, badge(i.state), Array.isArray(i.repositories) ? i.repositories.join(', ') : String(i.repositories), String(i.credentials), when(i.created_at),
      h('div', { class: 'actions' },
        i.state === 'active' ? h('button', { type: 'button', class: 'secondary', onclick: act(i.name, 'suspend') }, 'Suspend')
          : h('button', { type: 'button', class: 'secondary', onclick: act(i.name, 'resume') }, 'Resume'),
        h('button', { type: 'button', class: 'secondary', onclick: act(i.name, 'credentials') }, 'Rotate'))])));
  };
  await drawInstances();
}

// ---- applications: groups, hosts, deployments, revisions, new releases ----

async function applicationsPage() {
  page('Applications');
  const list = await api('GET', '/v1/applications?page_size=100');
  add(main, table(['Name', 'Created'], list.applications.map((a) =>
    [link(`/console/applications/${enc(a.name)}`, a.name), when(a.created_at)])));
}

function ran(runs) {
  return runs ? `${runs.deployment} r${runs.revision} (${runs.image})` : '';
}

async function applicationPage(app) {
  page(`Application ${app}`);
  const base = `/v1/applications/${enc(app)}`;
  const [groups, deployments] = await Promise.all([api('GET', `${base}/groups?page_size=100`), api('GET', `${base}/deployments?page_size=100`)]);
  for (const summary of groups.groups) {
    const [group, releases] = await Promise.all([api('GET', `${base}/groups/${enc(summary.name)}`),
      api('GET', `${base}/groups/${enc(summary.name)}/releases?page_size=10`)]);
    add(main, h('h2', {}, `Group ${group.name} `, badge(group.kind)),
      group.active_release ? h('p', {}, 'Release in progress: ', link(`/console/releases/${enc(group.active_release)}`, group.active_release)) : null,
      table(['Host', 'Last seen', 'Runs', 'Before'], group.instances.map((i) => [
        [i.host, i.stale ? [' ', badge('stale')] : null], when(i.last_seen), ran(i.runs), ran(i.ran_before)]), 'No host has joined.'),
      h('details', {}, h('summary', {}, 'Releases'), table(['Release', 'Status', 'Deployment', 'Hosts', 'Created'], releases.releases.map((r) => [
        link(`/console/releases/${enc(r.id)}`, r.id.slice(0, 8)), badge(r.status), `${r.deployment} r${r.revision}`, String(r.hosts), when(r.created_at)]))));
  }
  add(main, h('h2', {}, 'Deployments'), table(['Name', 'Revision', 'Image', 'Created'], deployments.deployments.map((d) =>
    [d.name, String(d.revision), imageOf(d.image), when(d.created_at)])));
  if (deployments.deployments.length) add(main, compareRevisions(base, deployments.deployments));
  if (deployments.deployments.length && groups.groups.length) add(main, newRelease(app, deployments.deployments, groups.groups));
}

function imageOf(image) {
  if (!image) return '';
  return image.registry ? `${image.registry}/${image.repository}:${image.reference}` : JSON.stringify(image);
}

// Two revisions of a deployment side by side, the fields that changed marked.
function compareRevisions(base, deployments) {
  const out = h('div', { 'aria-live': 'polite' });
  const last = deployments[0];
  return h('div', {}, h('h2', {}, 'Compare revisions'),
    form([
      select('Deployment', 'deployment', deployments.map((d) => [d.name])),
      input('Older revision', 'from', { type: 'number', min: 1, value: Math.max(1, last.revision - 1) }),
      input('Newer revision', 'to', { type: 'number', min: 1, value: last.revision }),
    ], 'Compare', 'Compare revisions', async (v) => {
      const path = (n) => `${base}/deployments/${enc(v.deployment)}/revisions/${enc(n)}`;
      const [a, b] = await Promise.all([api('GET', path(v.from)), api('GET', path(v.to))]);
      const fields = ['image', 'working_directory', 'start_script', 'stop_script', 'step_timeout_seconds', 'registry_endpoint', 'health'];
      const show = (value) => (typeof value === 'object' && value !== null ? JSON.stringify(value, null, 2) : value ?? '');
      const rows = fields.filter((f) => f in a || f in b).map((f) => {
        const [left, right] = [show(f === 'image' ? imageOf(a[f]) : a[f]), show(f === 'image' ? imageOf(b[f]) : b[f])];
        const cls = String(left) === String(right) ? '' : 'changed';
        return h('tr', {}, h('th', { scope: 'row' }, f), h('td', { class: cls }, h('pre', {}, String(left))), h('td', { class: cls }, h('pre', {}, String(right))));
      });
      replace(out, h('div', { class: 'scroll' }, h('table', { class: 'diff' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Field'), h('th', {}, `r${a.revision}`), h('th', {}, `r${b.revision}`))), h('tbody', {}, rows))));
    }), out);
}

// A release from a deployment and a group: the dry-run plan first, then start.
function newRelease(app, deployments, groups) {
  const plan = h('div', { 'aria-live': 'polite' });
  let request = null;
  const start = h('button', { type: 'button', hidden: true }, 'Start release');
  start.addEventListener('click', async () => {
    start.disabled = true;
    try {
      const release = await api('POST', '/v1/releases', request);
      navigate(`/console/releases/${enc(release.id)}`);
    } catch (error) { add(plan, h('p', { class: 'problem', role: 'alert' }, error.message)); } finally { start.disabled = false; }
  });
  return h('div', {}, h('h2', {}, 'New release'),
    form([
      select('Deployment', 'deployment', deployments.map((d) => [d.name])),
      select('Group', 'group', groups.map((g) => [g.name])),
      input('Batches', 'batches', { type: 'number', min: 1, value: 1 }),
      select('Pause between batches', 'pause', [['none'], ['manual', 'manual (confirm each batch)']]),
      input('Failures allowed', 'max_failures', { type: 'number', min: 0, value: 0 }),
    ], 'Plan', 'New release', async (v) => {
      request = { application: app, deployment: v.deployment, group: v.group, batches: Number(v.batches), pause: v.pause, max_failures: Number(v.max_failures) };
      const dry = await api('POST', '/v1/releases?dry_run=true', request);
      replace(plan, h('p', {}, `Revision ${dry.revision} of ${dry.image} to ${dry.hosts} hosts:`),
        table(['Batch', 'Hosts'], dry.batches.map((hosts, i) => [String(i + 1), hosts.join(', ')]), 'No host to release to.'),
        dry.stale.length ? h('p', { class: 'muted' }, `Skipped as stale: ${dry.stale.join(', ')}`) : null);
      start.hidden = false;
    }), plan, start);
}

// ---- a release, live ----

function phaseText(phase) {
  if (!phase) return '';
  switch (phase.step) {
    case 'batch': return `batch ${phase.batch + 1} running`;
    case 'awaiting_confirm': return `waiting for confirmation to start batch ${phase.next + 1}`;
    case 'waiting': return `pausing before batch ${phase.next + 1}`;
    default: return phase.step;
  }
}

async function releasePage(id) {
  page(`Release ${id}`);
  const head = h('div', { 'aria-live': 'polite' });
  const buttons = h('div', { class: 'actions' });
  const grids = h('div');
  add(main, head, buttons, grids);
  const cells = new Map();
  const act = (what) => async () => {
    try {
      const answer = await api('POST', `/v1/releases/${enc(id)}/${what}`);
      if (what === 'rollback') navigate(`/console/releases/${enc(answer.id)}`); else every(1, draw);
    } catch (error) { failed(error); }
  };
  const draw = async () => {
    const r = await api('GET', `/v1/releases/${enc(id)}`);
    const failures = r.summary.failed || 0;
    replace(head, facts([
      ['Status', badge(r.status)], ['Phase', phaseText(r.phase)], ['Reason', r.reason],
      ['Deployment', `${r.deployment} r${r.revision}`], ['Image', h('span', { class: 'mono' }, r.image)],
      ['Group', link(`/console/applications/${enc(r.application)}`, `${r.application} / ${r.group}`)],
      ['Failures', `${failures} of ${r.options.max_failures ?? 0} allowed (${r.options.max_failures_per_batch ?? r.options.max_failures ?? 0} per batch)`],
      ['Hosts', Object.entries(r.summary).map(([state, n]) => `${n} ${state}`).join(', ')],
      ['Created', when(r.created_at)], ['Finished', r.finished_at ? when(r.finished_at) : null],
      ['Rolled back by', r.rollback ? link(`/console/releases/${enc(r.rollback)}`, r.rollback) : null],
    ]));
    replace(buttons, 
      r.phase && r.phase.step === 'awaiting_confirm' ? h('button', { type: 'button', onclick: act('confirm') }, 'Confirm next batch') : null,
      r.status === 'running' && r.options.pause !== 'manual' ? h('button', { type: 'button', class: 'secondary', onclick: act('pause') }, 'Pause') : null,
      r.status === 'running' ? h('button', { type: 'button', class: 'danger', onclick: act('cancel') }, 'Cancel') : null,
      r.status !== 'running' && !r.rollback && r.trigger.kind !== 'convergence' ? h('button', { type: 'button', class: 'secondary', onclick: act('rollback') }, 'Roll back') : null);
    for (const batch of r.batches) {
      for (const host of batch.hosts) {
        let cell = cells.get(host.host);
        if (!cell) {
          const grid = grids.querySelector(`[data-batch="${batch.batch}"]`) || grids.appendChild(h('div', {},
            h('h2', {}, `Batch ${batch.batch}`), h('div', { class: 'grid', 'data-batch': batch.batch }))).querySelector('.grid');
          cell = h('a', { class: 'host', href: `/console/releases/${enc(id)}/hosts/${enc(host.host)}`, 'data-host': host.host },
            h('span', { class: 'state' }), h('span', {}, host.host), h('span', { class: 'why muted' }));
          add(grid, cell);
          cells.set(host.host, cell);
        }
        cell.className = `host s-${host.state}`;
        cell.querySelector('.state').textContent = host.state;
        cell.querySelector('.why').textContent = host.reason ? ` ${host.step}: ${host.reason}` : '';
      }
    }
    return r.status === 'running';
  };
  await every(1, draw);
}

// A host's logs, one stored part at a time: a 256 MiB log is never loaded whole.
async function logsPage(id, host) {
  page(`Logs of ${host}`);
  const base = `/v1/releases/${enc(id)}/hosts/${enc(host)}/logs`;
  const about = h('div');
  const where = h('span', { 'aria-live': 'polite' });
  const text = h('pre', { id: 'log', tabindex: 0 });
  const buttons = ['First', 'Previous', 'Next', 'Last'].map((label) => h('button', { type: 'button', class: 'secondary' }, label));
  add(main, h('p', {}, link(`/console/releases/${enc(id)}`, '← the release')), about,
    h('div', { class: 'pager' }, buttons, where), text);
  let at = 0;
  let parts = 0;
  const show = async (index) => {
    const answer = await api('GET', `${base}/${index}`);
    parts = answer.parts;
    at = answer.parts ? Math.min(index, answer.parts - 1) : 0;
    replace(about, facts([['State', badge(answer.state)],
      ['Result', answer.result ? `${answer.result.ok ? 'ok' : 'failed'} at ${answer.result.step}${answer.result.exit_code != null ? ` (exit ${answer.result.exit_code})` : ''}${answer.result.reason ? `: ${answer.result.reason}` : ''}` : 'none yet']]));
    where.textContent = parts ? `part ${at + 1} of ${parts}: ${answer.step} ${answer.stream}` : 'no output';
    text.textContent = answer.text || '';
    buttons[0].disabled = buttons[1].disabled = at === 0;
    buttons[2].disabled = buttons[3].disabled = at + 1 >= parts;
  };
  const go = (target) => () => show(target()).catch(failed);
  buttons[0].addEventListener('click', go(() => 0));
  buttons[1].addEventListener('click', go(() => Math.max(0, at - 1)));
  buttons[2].addEventListener('click', go(() => at + 1));
  buttons[3].addEventListener('click', go(() => Math.max(0, parts - 1)));
  await show(0);
}

// ---- navigation ----

const routes = [
  [/^\/console\/?$/, () => navigate('/console/packages', true)],
  [/^\/console\/packages$/, packagesPage],
  [/^\/console\/packages\/([^/]+)$/, packagePage],
  [/^\/console\/services$/, servicesPage],
  [/^\/console\/services\/([^/]+)$/, servicePage],
  [/^\/console\/applications$/, applicationsPage],
  [/^\/console\/applications\/([^/]+)$/, applicationPage],
  [/^\/console\/releases\/([^/]+)$/, releasePage],
  [/^\/console\/releases\/([^/]+)\/hosts\/([^/]+)$/, logsPage],
];

function navigate(path, replace = false) {
  if (replace) history.replaceState(null, '', path); else history.pushState(null, '', path);
  render();
}

async function render() {
  generation += 1;
  if (!sessionStorage.getItem(TOKEN)) return signIn();
  const path = location.pathname;
  for (const [pattern, draw] of routes) {
    const match = pattern.exec(path);
    if (match) {
      try {
        await draw(...match.slice(1).map(decodeURIComponent));
      } catch (error) {
        failed(error);
      }
      return;
    }
  }
  page('Not found', h('p', {}, 'No console page has this address. '), link('/console/packages', 'Packages'));
}

document.addEventListener('click', (event) => {
  const anchor = event.target.closest && event.target.closest('a[href^="/console/"]');
  if (!anchor || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(anchor.getAttribute('href'));
});
window.addEventListener('popstate', render);
document.getElementById('sign-out').addEventListener('click', () => signOut());

if (sessionStorage.getItem(TOKEN)) {
  api('GET', '/v1/account').then((account) => { showNav(account); render(); }).catch(() => {});
} else {
  render();
}
