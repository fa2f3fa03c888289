// The page itself: one HTML document with its script, no build step. It renders /api/state,
// refreshes it while anything runs, and follows /api/events for smooth progress.
// Handles tests rely on (SPEC §8): service-<id>, install-<id>, current-<id>, ranking, error,
// and role="progressbar" with aria-valuenow while a job runs.

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelhub — services</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2327; background: #f6f7f7; }
  body { margin: 0 auto; max-width: 1100px; padding: 1.5rem; }
  h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
  h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
  .muted { color: #646970; font-size: .85rem; }
  table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid #dcdcde; }
  th, td { text-align: left; padding: .5rem .6rem; border-bottom: 1px solid #f0f0f1; vertical-align: top; }
  th { font-size: .8rem; text-transform: uppercase; color: #50575e; background: #f6f7f7; }
  button { font: inherit; padding: .3rem .8rem; border-radius: 4px; border: 1px solid #2271b1; background: #2271b1; color: #fff; cursor: pointer; }
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
</style>
</head>
<body>
<h1>modelhub</h1>
<div class="muted" id="hub">connecting…</div>

<h2>Services</h2>
<table>
  <thead><tr><th>Service</th><th>Current</th><th>Available</th><th>Status</th><th></th></tr></thead>
  <tbody id="services"><tr><td colspan="5" class="muted">loading…</td></tr></tbody>
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

<script>
'use strict';
const live = new Map(); // jobId -> latest progress event from the stream
let state = null;

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
  if (p && p.phase === 'downloading' && p.bytesTotal > 0) return Math.min(100, Math.floor((p.bytesDone / p.bytesTotal) * 100));
  return job.percent === null ? 0 : job.percent;
}

function statusCell(s) {
  if (s.job) {
    const pct = percentOf(s.job);
    const p = live.get(s.job.id);
    const detail = p && p.phase === 'downloading' && p.bytesTotal > 0
      ? ' ' + mb(p.bytesDone) + ' / ' + mb(p.bytesTotal) + (p.speedBps > 0 ? ', ' + mb(p.speedBps) + '/s' : '') + (p.etaSeconds !== null ? ', ETA ' + Math.ceil(p.etaSeconds) + ' s' : '')
      : '';
    return el('td', {},
      el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct, 'aria-label': s.job.target + ' ' + s.job.state },
        el('span', { style: 'width:' + pct + '%' })),
      el('span', { class: 'muted', text: ' ' + s.job.state + detail }));
  }
  const parts = [];
  if (s.running) parts.push(el('span', { class: 'pill', text: 'running' }));
  if (s.error) parts.push(el('div', { class: 'err', 'data-testid': 'error', text: s.error.code + ': ' + s.error.message }));
  return el('td', {}, ...parts);
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
      onclick: () => install(s.id),
    });
    body.append(el('tr', { 'data-testid': 'service-' + s.id },
      el('td', {}, el('strong', { text: s.name }), el('div', { class: 'muted', text: s.id })),
      el('td', { 'data-testid': 'current-' + s.id, text: s.current === null ? '—' : s.current }),
      el('td', { class: 'muted', text: s.versions.join(', ') || '—' }),
      statusCell(s),
      el('td', {}, button)));
  }

  const ranking = document.getElementById('ranking');
  ranking.replaceChildren();
  const note = document.getElementById('ranking-note');
  if (state.ranking === null) {
    note.textContent = 'ranking unavailable' + (state.ranking_error ? ': ' + state.ranking_error : '');
  } else {
    note.textContent = state.ranking.length === 0 ? 'no demand recorded yet' : '';
    for (const r of state.ranking) ranking.append(el('li', { text: r.model_id + ' — ' + r.request_count + ' requests' }));
  }

  const jobs = document.getElementById('jobs');
  jobs.replaceChildren();
  for (const j of state.jobs.slice(0, 15)) {
    jobs.append(el('li', { class: 'job', 'data-job': j.id, onclick: () => timeline(j.id), text: j.kind + ' ' + j.target + ' — ' + j.state + (j.ended_at ? '' : ' …') }));
  }
}

async function refresh() {
  try {
    const res = await fetch('/api/state', { cache: 'no-store' });
    if (res.ok) state = await res.json();
  } catch (e) { /* the next tick tries again */ }
  render();
  const busy = state && (state.services.some((s) => s.job !== null) || state.jobs.some((j) => j.active));
  setTimeout(refresh, busy ? 300 : 1500);
}

async function install(id) {
  const res = await fetch('/api/services/' + encodeURIComponent(id) + '/install', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  if (!res.ok) alert('install ' + id + ': ' + res.status);
  setTimeout(async () => {
    const r = await fetch('/api/state', { cache: 'no-store' });
    if (r.ok) { state = await r.json(); render(); }
  }, 150);
}

async function timeline(jobId) {
  const pre = document.getElementById('timeline');
  const res = await fetch('/api/jobs/' + encodeURIComponent(jobId) + '/events');
  const events = res.ok ? await res.json() : [];
  pre.hidden = false;
  pre.textContent = events.map((e) => e.seq + '  ' + e.ts + '  ' + e.type + '  → ' + e.state).join('\\n');
}

const stream = new EventSource('/api/events');
stream.addEventListener('progress', (m) => {
  const p = JSON.parse(m.data);
  live.set(p.jobId, p);
  render();
});
stream.addEventListener('job', () => { void fetch('/api/state', { cache: 'no-store' }).then((r) => r.ok ? r.json() : null).then((s) => { if (s) { state = s; render(); } }); });

refresh();
</script>
</body>
</html>
`;
