// The page itself: one HTML document, its stylesheet and its script, no build step. The script
// talks to the server only through the shared client (src/client/http.ts, served compiled at
// /assets/client/http.js) with the per-launch token the document carries. The CSP allows no
// inline script or style, so both are separate files and styles are set through CSSOM.
// Handles tests rely on (SPEC §8): service-<id>, install-<id>, current-<id>, ranking, error,
// and role="progressbar" with aria-valuenow while a job runs; also cancel-<id>, pause-<id>,
// resume-<id>, model-<id>, pull-<id>, model-installed-<id>, damaged-<id> (a version the last
// verify found damaged) and repair-<id>.

function escapeAttribute(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function pageHtml(token: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="modelhub-token" content="${escapeAttribute(token)}">
<title>modelhub — services</title>
<link rel="stylesheet" href="/assets/page.css">
<script type="module" src="/assets/page.js"></script>
</head>
<body>
<h1>modelhub</h1>
<div class="muted" id="hub">connecting…</div>

<h2>Services</h2>
<table>
  <thead><tr><th>Service</th><th>Current</th><th>Available</th><th>Status</th><th></th></tr></thead>
  <tbody id="services"><tr><td colspan="5" class="muted">loading…</td></tr></tbody>
</table>

<h2>Models</h2>
<table>
  <thead><tr><th>Model</th><th>Installed</th><th>Available</th><th>Status</th><th></th></tr></thead>
  <tbody id="models"><tr><td colspan="5" class="muted">loading…</td></tr></tbody>
</table>

<div class="grid">
  <section>
    <h2>Popular models</h2>
    <ol data-testid="ranking" id="ranking"></ol>
    <div class="muted" id="ranking-note"></div>
  </section>
  <section>
    <h2>Jobs</h2>
    <ul id="jobs"></ul>
    <pre id="timeline" hidden></pre>
  </section>
</div>
</body>
</html>
`;
}

export const PAGE_CSS = `:root { font-family: system-ui, sans-serif; color: #1d2327; background: #f6f7f7; }
body { margin: 0 auto; max-width: 1100px; padding: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
.muted { color: #646970; font-size: .85rem; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid #dcdcde; }
th, td { text-align: left; padding: .5rem .6rem; border-bottom: 1px solid #f0f0f1; vertical-align: top; }
th { font-size: .8rem; text-transform: uppercase; color: #50575e; background: #f6f7f7; }
button { font: inherit; padding: .3rem .8rem; border-radius: 4px; border: 1px solid #2271b1; background: #2271b1; color: #fff; cursor: pointer; margin-right: .3rem; }
button.secondary { background: #fff; color: #2271b1; }
button[disabled] { opacity: .5; cursor: default; }
.bar { width: 180px; height: .6rem; background: #dcdcde; border-radius: 3px; overflow: hidden; display: inline-block; vertical-align: middle; }
.bar > span { display: block; height: 100%; background: #2271b1; transition: width .2s; }
.err { color: #b32d2e; font-size: .85rem; }
.pill { font-size: .75rem; padding: .05rem .4rem; border-radius: 8px; background: #e7f5e9; color: #1a6b2b; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5rem; }
ol, ul { background: #fff; border: 1px solid #dcdcde; margin: 0; padding: .5rem 1.5rem; min-height: 2rem; }
li { padding: .15rem 0; }
.job { cursor: pointer; }
pre { background: #fff; border: 1px solid #dcdcde; padding: .5rem; font-size: .8rem; overflow: auto; max-height: 20rem; }
`;

export const PAGE_SCRIPT = `import { createHttpClient } from './client/http.js';

const token = document.querySelector('meta[name="modelhub-token"]').getAttribute('content');
const api = createHttpClient({ token });
const live = new Map(); // jobId -> latest progress event from the stream
let state = null;
let ranking = null;
let rankingError = null;
const RANKING_REFRESH_MS = 5000;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function mb(n) { return (n / 1e6).toFixed(1) + ' MB'; }

function percentOf(job) {
  const p = live.get(job.id);
  if (p && p.phase === 'downloading' && p.bytesTotal > 0) return Math.floor(p.percent);
  return job.percent === null ? 0 : job.percent;
}

function progressCell(job) {
  const pct = percentOf(job);
  const p = live.get(job.id);
  const downloading = p && (p.phase === 'downloading' || p.phase === 'waiting_for_network') && p.bytesTotal > 0;
  const detail = downloading
    ? ' ' + mb(p.bytesDone) + ' / ' + mb(p.bytesTotal) + (p.speedBps > 0 ? ', ' + mb(p.speedBps) + '/s' : '') + (p.etaSeconds !== null ? ', ETA ' + Math.ceil(p.etaSeconds) + ' s' : '')
    : '';
  const fill = el('span');
  fill.style.width = pct + '%';
  return el('td', {},
    el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct, 'aria-label': job.target + ' ' + job.state }, fill),
    el('span', { class: 'muted', 'data-testid': 'job-detail', text: ' ' + ((p && p.phase) || job.state) + detail }));
}

function statusCell(row) {
  if (row.job) return progressCell(row.job);
  const parts = [];
  if (row.running) parts.push(el('span', { class: 'pill', text: 'running' }));
  if (row.error) parts.push(el('div', { class: 'err', 'data-testid': 'error', text: row.error.code + ': ' + row.error.message }));
  // Versions the last verify found damaged (files modified or missing).
  if (row.damaged.length > 0) {
    parts.push(el('div', { class: 'err', 'data-testid': 'damaged-' + row.id, text: 'damaged: ' + row.damaged.map((d) => d.version + ' (' + d.modified + ' modified, ' + d.missing + ' missing)').join(', ') }));
  }
  return el('td', {}, ...parts);
}

function repairButton(row) {
  if (row.damaged.length === 0 || row.job) return [];
  return [el('button', { class: 'secondary', 'data-testid': 'repair-' + row.id, text: 'Repair', onclick: () => run(api.repair({ id: row.id }), 'repair ' + row.id) })];
}

const PAUSABLE = ['resolving', 'verifying_manifest', 'downloading'];

function jobButtons(id, job) {
  if (!job) return [];
  const buttons = [];
  if (job.state === 'paused') buttons.push(el('button', { class: 'secondary', 'data-testid': 'resume-' + id, text: 'Resume', onclick: () => run(api.resume(job.id), 'resume ' + id) }));
  else if (PAUSABLE.includes(job.state)) buttons.push(el('button', { class: 'secondary', 'data-testid': 'pause-' + id, text: 'Pause', onclick: () => run(api.pause(job.id), 'pause ' + id) }));
  buttons.push(el('button', { class: 'secondary', 'data-testid': 'cancel-' + id, text: 'Cancel', onclick: () => run(api.cancel(job.id), 'cancel ' + id) }));
  return buttons;
}

function render() {
  if (!state) return;
  const hub = document.getElementById('hub');
  hub.textContent = 'hub ' + (state.hub.url || '(none)') + (state.hub.reachable ? '' : ' — unreachable: ' + (state.hub.error || '')) + ' · platform ' + state.platform;

  const body = document.getElementById('services');
  body.replaceChildren();
  if (state.services.length === 0) body.append(el('tr', {}, el('td', { colspan: 5, class: 'muted', text: 'no services' })));
  for (const s of state.services) {
    const upToDate = s.current !== null && s.latest !== null && s.current === s.latest;
    const label = s.current === null ? 'Install ' + (s.latest || '') : upToDate ? 'Reinstall' : 'Update to ' + (s.latest || '');
    const button = el('button', {
      'data-testid': 'install-' + s.id,
      disabled: s.job !== null || s.latest === null,
      text: label.trim(),
      onclick: () => run(api.install({ id: s.id }), 'install ' + s.id),
    });
    body.append(el('tr', { 'data-testid': 'service-' + s.id },
      el('td', {}, el('strong', { text: s.name }), el('div', { class: 'muted', text: s.id })),
      el('td', { 'data-testid': 'current-' + s.id, text: s.current === null ? '—' : s.current }),
      el('td', { class: 'muted', text: s.versions.join(', ') || '—' }),
      statusCell(s),
      el('td', {}, button, ...repairButton(s), ...jobButtons(s.id, s.job))));
  }

  const models = document.getElementById('models');
  models.replaceChildren();
  if (state.models.length === 0) models.append(el('tr', {}, el('td', { colspan: 5, class: 'muted', text: 'no models' })));
  for (const m of state.models) {
    const have = m.latest !== null && m.installed.includes(m.latest);
    const button = el('button', {
      'data-testid': 'pull-' + m.id,
      disabled: m.job !== null || m.latest === null || have,
      text: have ? 'Pulled' : 'Pull ' + (m.latest || ''),
      onclick: () => run(api.pullModel({ id: m.id }), 'pull ' + m.id),
    });
    models.append(el('tr', { 'data-testid': 'model-' + m.id },
      el('td', {}, el('strong', { text: m.name }), el('div', { class: 'muted', text: m.id })),
      el('td', { 'data-testid': 'model-installed-' + m.id, text: m.installed.join(', ') || '—' }),
      el('td', { class: 'muted', text: m.versions.join(', ') || '—' }),
      statusCell(m),
      el('td', {}, button, ...repairButton(m), ...jobButtons(m.id, m.job))));
  }

  const list = document.getElementById('ranking');
  list.replaceChildren();
  const note = document.getElementById('ranking-note');
  if (ranking === null) {
    note.textContent = rankingError === null ? 'loading ranking…' : 'ranking unavailable: ' + rankingError;
  } else {
    note.textContent = ranking.length === 0 ? 'no demand recorded yet' : '';
    for (const r of ranking) list.append(el('li', { text: r.model_id + ' — ' + r.request_count + ' requests' }));
  }

  const jobs = document.getElementById('jobs');
  jobs.replaceChildren();
  for (const j of state.jobs.slice(0, 15)) {
    jobs.append(el('li', { class: 'job', 'data-job': j.id, onclick: () => timeline(j.id), text: j.kind + ' ' + j.target + ' — ' + j.state + (j.ended_at ? '' : ' …') }));
  }
}

async function loadState() {
  const r = await api.state();
  if (r.ok) { state = r.value; render(); }
  return r.ok;
}

async function refresh() {
  await loadState();
  const busy = state && (state.services.some((s) => s.job !== null) || state.models.some((m) => m.job !== null) || state.jobs.some((j) => j.active));
  setTimeout(refresh, busy ? 300 : 1500);
}

// The ranking has its own clock: a slow or unreachable ranking never holds the rest of the page,
// and a change on the hub shows without a reload.
async function refreshRanking() {
  const r = await api.ranking();
  if (r.ok) { ranking = r.value; rankingError = null; }
  else { rankingError = r.error.message; ranking = null; }
  render();
  setTimeout(refreshRanking, RANKING_REFRESH_MS);
}

async function run(call, what) {
  setTimeout(loadState, 150);
  const r = await call;
  if (!r.ok && r.error.code === 'NETWORK_ERROR') alert(what + ': ' + r.error.message);
  await loadState();
}

async function timeline(jobId) {
  const pre = document.getElementById('timeline');
  const r = await api.jobEvents(jobId);
  const events = r.ok ? r.value : [];
  pre.hidden = false;
  pre.textContent = events.map((e) => e.seq + '  ' + e.ts + '  ' + e.type + '  → ' + e.state).join('\\n');
}

api.onProgress((p) => { live.set(p.jobId, p); render(); });
api.onJobState(() => { void loadState(); });
refresh();
refreshRanking();
`;
