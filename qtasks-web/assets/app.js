// The qtasks dashboard: one script for every page, picked by the path.
//
// Every value that comes from tasks (names, arguments, results, tracebacks) is put in the
// page as text (`textContent`, text nodes), never as HTML: a result holding `<script>` shows
// as those characters. Live updates come from the server-sent events at api/events; the page
// refetches what it shows when the figures change, it never polls on its own.
'use strict';

const BASE = document.documentElement.dataset.base || '';
const STATUSES = ['new', 'process', 'retry', 'success', 'error', 'cancel'];

// ---- the token: from the link (#token=..), kept for this tab ----
(function takeTokenFromLink() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('qtasks-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
})();
function token() { return sessionStorage.getItem('qtasks-token') || ''; }

// ---- building elements (text only) ----
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
function link(path, text) {
  return el('a', { href: BASE + path, onclick: (e) => { e.preventDefault(); go(path); } }, text);
}
function statusBadge(s) { return el('span', { class: 'status ' + s, dataset: { status: s } }, s); }
function time(ms) { return ms ? new Date(ms).toLocaleString() : '–'; }
function json(v) { return v === undefined ? '' : JSON.stringify(v, null, 2); }
function short(v) { const s = JSON.stringify(v); return s && s.length > 80 ? s.slice(0, 80) + '…' : s; }

// ---- messages ----
function banner(text, ok) {
  const b = document.getElementById('banner');
  b.textContent = text;
  b.className = ok ? 'banner ok' : 'banner';
  b.hidden = !text;
}

// ---- the API ----
async function api(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && token()) headers['Authorization'] = 'Bearer ' + token();
  const res = await fetch(BASE + '/api' + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({ message: res.statusText }));
  if (!res.ok) {
    const why = data.message || res.statusText;
    if (res.status === 401) askToken(why);
    throw new Error(why);
  }
  return data;
}
async function act(what, fn) {
  try { const r = await fn(); banner(what, true); return r; }
  catch (e) { banner(e.message, false); return null; }
}
function askToken(why) {
  const t = prompt((why ? why + '\n\n' : '') + 'Dashboard token (printed when the dashboard started):', token());
  if (t !== null) sessionStorage.setItem('qtasks-token', t.trim());
}
document.getElementById('token-button').addEventListener('click', () => askToken(''));

// ---- live updates ----
let stats = null;
let onStats = null;
function connect() {
  const live = document.getElementById('live');
  const source = new EventSource(BASE + '/api/events');
  // One stream per tab, closed when the page goes (browsers allow few connections per host).
  window.addEventListener('pagehide', () => source.close());
  source.addEventListener('open', () => { live.textContent = 'live'; live.classList.add('on'); });
  source.addEventListener('error', () => { live.textContent = 'reconnecting'; live.classList.remove('on'); });
  source.addEventListener('stats', (e) => {
    stats = JSON.parse(e.data);
    document.getElementById('app-name').textContent = stats.app;
    document.getElementById('dead-count').textContent = stats.by_status.error || '';
    if (onStats) onStats(stats);
  });
}

// ---- navigation ----
function go(path) { history.pushState(null, '', BASE + path); render(); }
// The navigation bar changes the page in place: the live stream stays open.
for (const a of document.querySelectorAll('header nav a')) {
  a.addEventListener('click', (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    go(a.getAttribute('href').slice(BASE.length) || '/');
  });
}
window.addEventListener('popstate', render);
function page() { return location.pathname.slice(BASE.length) || '/'; }

function render() {
  const path = page();
  const main = clear(document.getElementById('main'));
  onStats = null;
  banner('');
  let name = 'overview';
  if (path.startsWith('/tasks/')) { name = 'tasks'; taskPage(main, decodeURIComponent(path.slice(7))); }
  else if (path === '/tasks') { name = 'tasks'; tasksPage(main); }
  else if (path === '/dead') { name = 'dead'; deadPage(main); }
  else if (path === '/schedules') { name = 'schedules'; schedulesPage(main); }
  else if (path === '/workers') { name = 'workers'; workersPage(main); }
  else overviewPage(main);
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.page === name);
}

// Runs `fn` at most once per `ms`, the last call winning.
function throttle(fn, ms) {
  let timer = null, again = false;
  return function run() {
    if (timer) { again = true; return; }
    fn();
    timer = setTimeout(() => { timer = null; if (again) { again = false; run(); } }, ms);
  };
}

// ---- overview ----
function overviewPage(main) {
  const cards = el('div', { class: 'cards', id: 'counts' });
  const chart = el('div', { id: 'chart' });
  const latency = el('div', { id: 'latency-chart' });
  const latencyNow = el('p', { id: 'latency-now', class: 'muted' });
  const workers = el('ul', { id: 'overview-workers' });
  const pause = el('div', { id: 'pause-state' });
  const result = el('div', { id: 'enqueue-result' });
  const select = el('select', { id: 'enqueue-task' });
  const args = el('textarea', { id: 'enqueue-args', rows: 3, cols: 40 }, '{}');
  const form = el('form', { id: 'enqueue-form', class: 'toolbar', onsubmit: async (e) => {
    e.preventDefault();
    let parsed;
    try { parsed = JSON.parse(args.value || '{}'); } catch (err) { banner('The arguments are not JSON: ' + err.message); return; }
    const task = await act('Task enqueued', () => api('POST', '/tasks', { task: select.value, args: parsed }));
    if (task) { lastEnqueued = task.uuid; showEnqueued(result, task); }
  } },
    el('label', {}, 'Task', select), el('label', {}, 'Arguments (JSON)', args),
    el('button', { class: 'act primary', type: 'submit', id: 'enqueue-submit' }, 'Enqueue'));
  main.append(
    el('h1', {}, 'Overview'), cards,
    el('div', { class: 'grid' },
      el('div', { class: 'charts' },
        el('div', {}, el('h2', {}, 'Finished per minute, last hour'), el('div', { class: 'panel' }, chart,
          el('div', { class: 'legend' }, el('span', { class: 's' }, 'success'), el('span', { class: 'e' }, 'error')))),
        el('div', {}, el('h2', {}, 'Latency per minute, last hour'), el('div', { class: 'panel' }, latency,
          el('div', { class: 'legend' }, el('span', { class: 'q50' }, 'queue p50'), el('span', { class: 'q95' }, 'queue p95'),
            el('span', { class: 'e50' }, 'run p50'), el('span', { class: 'e95' }, 'run p95')), latencyNow))),
      el('div', {}, el('h2', {}, 'Workers'), el('div', { class: 'panel' }, workers), el('h2', {}, 'Claims'), el('div', { class: 'panel' }, pause))),
    el('h2', {}, 'Enqueue a task'), el('div', { class: 'panel' }, form, result));
  api('GET', '/registry').then((r) => {
    for (const t of r.tasks) select.append(el('option', { value: t.name }, t.name + '(' + t.signature + ')'));
  }).catch((e) => banner(e.message));
  let lastEnqueued = null;
  const refreshChart = throttle(() => api('GET', '/throughput?minutes=60').then((r) => drawChart(chart, r.minutes)).catch(() => {}), 5000);
  const refreshLatency = throttle(() => api('GET', '/latency?minutes=60').then((r) => drawLatency(latency, r.minutes)).catch(() => {}), 5000);
  const refreshWorkers = throttle(() => api('GET', '/workers').then((r) => {
    clear(workers);
    if (!r.workers.length) workers.append(el('li', { class: 'muted' }, 'no live worker'));
    for (const w of r.workers) workers.append(el('li', { class: 'mono' }, w));
  }).catch(() => {}), 3000);
  onStats = (s) => {
    drawCounts(cards, s);
    drawPause(pause, s);
    refreshChart();
    refreshLatency();
    drawLatencyNow(latencyNow, s.latency);
    refreshWorkers();
    if (lastEnqueued) api('GET', '/tasks/' + lastEnqueued).then((t) => showEnqueued(result, t)).catch(() => {});
  };
  if (stats) onStats(stats);
}

function showEnqueued(box, t) {
  clear(box).append(el('p', {}, 'Last enqueued: ', link('/tasks/' + t.uuid, t.uuid), ' ', statusBadge(t.status)));
  box.dataset.uuid = t.uuid;
  box.dataset.status = t.status;
}

function drawCounts(cards, s) {
  clear(cards);
  for (const st of STATUSES) {
    cards.append(el('div', { class: 'card', dataset: { count: st } },
      el('div', { class: 'n' }, String(s.by_status[st] || 0)), el('div', { class: 'l' }, st)));
  }
  for (const [label, n] of [['ready', s.ready], ['scheduled', s.scheduled], ['dead letter', s.dead_letter]]) {
    cards.append(el('div', { class: 'card' }, el('div', { class: 'n' }, String(n)), el('div', { class: 'l' }, label)));
  }
  // Ready tasks per named queue, when there is more than the default one.
  const queues = Object.entries(s.ready_by_queue || {});
  if (queues.some(([q]) => q !== 'default')) {
    for (const [q, n] of queues) {
      cards.append(el('div', { class: 'card', dataset: { queue: q } },
        el('div', { class: 'n' }, String(n)), el('div', { class: 'l' }, 'ready in ' + q)));
    }
  }
}

function drawPause(box, s) {
  clear(box);
  const p = s.paused;
  box.append(el('p', {}, p.app ? 'The whole app is paused: no task is claimed.' : 'Claims run.'));
  if (p.tasks.length) box.append(el('p', {}, 'Paused tasks: ', p.tasks.join(', ')));
  const queues = p.queues || [];
  if (queues.length) box.append(el('p', {}, 'Paused queues: ', queues.join(', ')));
  if (s.read_only) return;
  box.append(el('button', { class: 'act', id: p.app ? 'resume-app' : 'pause-app',
    onclick: () => act(p.app ? 'Resumed' : 'Paused', () => api('POST', p.app ? '/resume' : '/pause', {})) },
  p.app ? 'Resume the app' : 'Pause the app'));
  for (const name of p.tasks) {
    box.append(' ', el('button', { class: 'act', onclick: () => act('Resumed ' + name, () => api('POST', '/resume', { task: name })) }, 'Resume ' + name));
  }
  for (const q of queues) {
    box.append(' ', el('button', { class: 'act', onclick: () => act('Resumed queue ' + q, () => api('POST', '/resume', { queue: q })) }, 'Resume queue ' + q));
  }
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
}
function drawChart(box, minutes) {
  const w = 600, h = 160, pad = 20;
  const max = Math.max(1, ...minutes.map((m) => m.success + m.error));
  const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none' });
  const bw = (w - pad) / minutes.length;
  minutes.forEach((m, i) => {
    const hs = (h - pad) * m.success / max, he = (h - pad) * m.error / max;
    const x = pad + i * bw;
    chart.append(svg('rect', { x, y: h - pad - hs, width: Math.max(1, bw - 1), height: hs, fill: '#2f9e5b' }));
    chart.append(svg('rect', { x, y: h - pad - hs - he, width: Math.max(1, bw - 1), height: he, fill: '#d2483d' }));
    const title = document.createElementNS(SVG, 'title');
    title.textContent = new Date(m.minute_ms).toLocaleTimeString() + ': ' + m.success + ' success, ' + m.error + ' error';
    chart.lastChild.append(title);
  });
  const label = svg('text', { x: 2, y: 12, 'font-size': 10, fill: '#6b7385' });
  label.textContent = String(max);
  chart.append(label);
  clear(box).append(chart);
}

function ms(v) {
  if (v === null || v === undefined) return '–';
  if (v >= 1000) return (v / 1000).toFixed(1) + ' s';
  return (v >= 10 ? v.toFixed(0) : v >= 0.1 ? String(+v.toFixed(2)) : String(+v.toPrecision(1))) + ' ms';
}
// The time an attempt took, from its ms start and end.
function took(a) { return a.finished_at > a.started_at ? ms(a.finished_at - a.started_at) : '< 1 ms'; }
function drawLatencyNow(box, m) {
  box.textContent = m && (m.queue.count || m.execution.count)
    ? 'This minute: queue p50 ' + ms(m.queue.p50_ms) + ', p95 ' + ms(m.queue.p95_ms) + '; run p50 ' + ms(m.execution.p50_ms) + ', p95 ' + ms(m.execution.p95_ms)
    : 'This minute: nothing ended yet.';
}
// p50 and p95 of the queue time and of the run time, one line each, on a log scale (ms).
function drawLatency(box, minutes) {
  const w = 600, h = 160, pad = 28;
  const series = [['queue', 'p50_ms', '#3867d6', ''], ['queue', 'p95_ms', '#3867d6', '4 3'],
    ['execution', 'p50_ms', '#e58e26', ''], ['execution', 'p95_ms', '#e58e26', '4 3']];
  const values = minutes.flatMap((m) => series.map(([k, q]) => m[k][q])).filter((v) => v !== null && v !== undefined);
  const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none' });
  if (values.length) {
    const lo = Math.log10(Math.max(0.001, Math.min(...values))), hi = Math.log10(Math.max(...values));
    const top = Math.ceil(hi + 0.01), bottom = Math.min(Math.floor(lo), top - 1);
    const y = (v) => h - pad / 2 - (h - pad) * (Math.log10(Math.max(v, 0.001)) - bottom) / (top - bottom);
    const x = (i) => pad + (w - pad) * (i + 0.5) / minutes.length;
    for (let d = bottom; d <= top; d++) {
      chart.append(svg('line', { x1: pad, x2: w, y1: y(10 ** d), y2: y(10 ** d), stroke: '#e3e6ee', 'stroke-width': 1 }));
      const label = svg('text', { x: 2, y: y(10 ** d) + 3, 'font-size': 9, fill: '#6b7385' });
      label.textContent = ms(10 ** d);
      chart.append(label);
    }
    for (const [k, q, color, dash] of series) {
      const points = [];
      minutes.forEach((m, i) => { const v = m[k][q]; if (v !== null && v !== undefined) points.push(x(i) + ',' + y(v)); });
      if (!points.length) continue;
      const line = svg('polyline', { points: points.join(' '), fill: 'none', stroke: color, 'stroke-width': 1.5, 'stroke-dasharray': dash || 'none' });
      line.setAttribute('data-series', k + '-' + q);
      chart.append(line);
      if (points.length === 1) {
        const [cx, cy] = points[0].split(',');
        chart.append(svg('circle', { cx, cy, r: 2, fill: color }));
      }
    }
  } else {
    const note = svg('text', { x: w / 2 - 60, y: h / 2, 'font-size': 11, fill: '#6b7385' });
    note.textContent = 'no attempt ended in the last hour';
    chart.append(note);
  }
  clear(box).append(chart);
}

// ---- tasks ----
function taskTable(tasks, opts) {
  const o = opts || {};
  const head = el('tr', {}, o.select ? el('th', {}, '') : null, el('th', {}, 'uuid'), el('th', {}, 'task'),
    el('th', {}, 'status'), el('th', {}, 'priority'), el('th', {}, 'attempts'), el('th', {}, 'updated'),
    el('th', {}, o.dead ? 'reason' : 'arguments'), el('th', {}, ''));
  const body = el('tbody', {});
  for (const t of tasks) {
    body.append(el('tr', { dataset: { uuid: t.uuid, status: t.status } },
      o.select ? el('td', {}, el('input', { type: 'checkbox', class: 'pick', value: t.uuid })) : null,
      el('td', { class: 'mono' }, link('/tasks/' + t.uuid, t.uuid.slice(0, 8))),
      el('td', {}, t.task_name), el('td', {}, statusBadge(t.status)), el('td', {}, String(t.priority)),
      el('td', {}, String(t.attempts)), el('td', {}, time(t.updated_at)),
      o.dead ? el('td', {}, (t.extra.dead_letter ? '[' + t.extra.dead_letter + '] ' : '') + (t.traceback || '').split('\n')[0])
        : el('td', { class: 'mono args', title: JSON.stringify(t.args) }, short(t.args)),
      el('td', {}, o.actions ? o.actions(t) : null)));
  }
  return el('table', { class: 'tasks' }, el('thead', {}, head), body);
}

function rowActions(t, after) {
  const out = [];
  if (stats && stats.read_only) return out;
  if (['new', 'retry', 'process'].includes(t.status)) {
    out.push(el('button', { class: 'act danger', dataset: { action: 'cancel', uuid: t.uuid },
      onclick: () => act('Cancel asked', () => api('POST', '/tasks/' + t.uuid + '/cancel', {})).then(after) }, 'Cancel'));
  }
  if (t.status === 'error') {
    out.push(el('button', { class: 'act', dataset: { action: 'retry', uuid: t.uuid },
      onclick: () => act('Queued again', () => api('POST', '/tasks/' + t.uuid + '/retry', {})).then(after) }, 'Retry'));
  }
  if (['success', 'error', 'cancel'].includes(t.status)) {
    out.push(' ', el('button', { class: 'act danger', dataset: { action: 'delete', uuid: t.uuid },
      onclick: () => act('Deleted', () => api('DELETE', '/tasks/' + t.uuid)).then(after) }, 'Delete'));
  }
  return out;
}

function tasksPage(main) {
  const q = new URLSearchParams(location.search);
  const status = el('select', { id: 'filter-status' }, el('option', { value: '' }, 'any status'),
    STATUSES.map((s) => el('option', { value: s, selected: q.get('status') === s }, s)));
  const name = el('input', { id: 'filter-task', placeholder: 'task name', value: q.get('task') || '' });
  const text = el('input', { id: 'filter-text', placeholder: 'text in arguments', value: q.get('q') || '' });
  const since = el('input', { id: 'filter-since', type: 'datetime-local' });
  const until = el('input', { id: 'filter-until', type: 'datetime-local' });
  const table = el('div', { id: 'tasks-table' });
  const more = el('div', {});
  let cursors = [null];
  const query = () => {
    const p = new URLSearchParams();
    if (status.value) p.set('status', status.value);
    if (name.value) p.set('task', name.value);
    if (text.value) p.set('q', text.value);
    if (since.value) p.set('since', String(new Date(since.value).getTime()));
    if (until.value) p.set('until', String(new Date(until.value).getTime()));
    return p;
  };
  const load = () => {
    const p = query();
    p.set('limit', '50');
    const cursor = cursors[cursors.length - 1];
    if (cursor) p.set('cursor', cursor);
    return api('GET', '/tasks?' + p).then((r) => {
      clear(table).append(r.tasks.length ? taskTable(r.tasks, { actions: (t) => rowActions(t, load) }) : el('p', { class: 'muted' }, 'No task matches.'));
      clear(more);
      if (cursors.length > 1) more.append(el('button', { class: 'act', onclick: () => { cursors.pop(); load(); } }, '← Newer'), ' ');
      if (r.next) more.append(el('button', { class: 'act', id: 'next-page', onclick: () => { cursors.push(r.next); load(); } }, 'Older →'));
    }).catch((e) => banner(e.message));
  };
  const filters = el('form', { class: 'filters', onsubmit: (e) => {
    e.preventDefault(); cursors = [null];
    history.replaceState(null, '', BASE + '/tasks?' + query());
    load();
  } }, el('label', {}, 'Status', status), el('label', {}, 'Task', name), el('label', {}, 'Arguments contain', text),
  el('label', {}, 'Changed since', since), el('label', {}, 'Changed before', until),
  el('button', { class: 'act primary', type: 'submit' }, 'Filter'));
  main.append(el('h1', {}, 'Tasks'), filters, table, more);
  load();
  // Live: the first page follows the changes; older pages stay as they are.
  const live = throttle(() => { if (cursors.length === 1) load(); }, 1000);
  onStats = live;
}

function taskPage(main, uuid) {
  const box = el('div', { id: 'task-detail' });
  main.append(el('h1', {}, 'Task ', el('span', { class: 'mono' }, uuid)), box);
  const load = () => api('GET', '/tasks/' + encodeURIComponent(uuid)).then((t) => drawTask(box, t, load))
    .catch((e) => { clear(box).append(el('p', {}, e.message)); });
  load();
  onStats = throttle(load, 1000);
}

function drawTask(box, t, reload) {
  clear(box);
  box.dataset.status = t.status;
  const fields = el('dl', { class: 'fields' });
  const row = (k, v) => fields.append(el('dt', {}, k), el('dd', {}, v));
  row('status', el('span', { id: 'task-status' }, statusBadge(t.status)));
  row('task', t.task_name);
  row('priority', String(t.priority));
  row('attempts', String(t.attempts));
  if (t.progress !== null && t.progress !== undefined) row('progress', el('span', { id: 'task-progress' }, typeof t.progress === 'string' ? t.progress : JSON.stringify(t.progress)));
  row('created', time(t.created_at));
  row('last change', time(t.updated_at));
  if (t.cancel_reason) row('cancel reason', t.cancel_reason);
  if (t.extra.dead_letter) row('dead-letter reason', t.extra.dead_letter);
  for (const [k, v] of Object.entries(t.extra)) if (k !== 'dead_letter') row(k, v);
  box.append(el('div', { class: 'toolbar' }, rowActions(t, reload)));
  box.append(el('div', { class: 'panel' }, fields));
  box.append(el('h2', {}, 'Arguments'), el('pre', { id: 'task-args' }, json(t.args)));
  if (t.returning !== null) box.append(el('h2', {}, 'Result'), el('pre', { id: 'task-result' }, json(t.returning)));
  if (t.traceback) box.append(el('h2', {}, 'Traceback'), el('pre', { id: 'task-traceback' }, t.traceback));
  // The timeline: the enqueue, each ended attempt (which worker, from when to when, how it
  // ended), a running one, the last change.
  const timeline = el('ol', { class: 'timeline', id: 'task-timeline' }, el('li', {}, time(t.created_at) + ': enqueued'));
  const history = t.history || [];
  for (const a of history) {
    timeline.append(el('li', { dataset: { attempt: String(a.attempt) } }, time(a.started_at) + ': attempt ' + a.attempt + ' started on ',
      el('span', { class: 'mono' }, a.worker), ', ended ', statusBadge(a.status), ' after ' + took(a)));
  }
  const lastEnded = history.length ? history[history.length - 1].attempt : 0;
  if (t.status === 'process' && t.attempts > lastEnded) timeline.append(el('li', {}, 'attempt ' + t.attempts + ' running'));
  else if (t.attempts > lastEnded) timeline.append(el('li', {}, t.attempts + ' attempt(s) started'));
  timeline.append(el('li', {}, time(t.updated_at) + ': ' + t.status));
  box.append(el('h2', {}, 'Timeline'), timeline);
  if (history.length) {
    const body = el('tbody', {});
    for (const a of history) {
      body.append(el('tr', { dataset: { attempt: String(a.attempt) } }, el('td', {}, String(a.attempt)), el('td', { class: 'mono worker' }, a.worker),
        el('td', {}, time(a.started_at)), el('td', {}, time(a.finished_at)), el('td', {}, took(a)), el('td', {}, statusBadge(a.status))));
    }
    box.append(el('h2', {}, 'Attempts'), el('table', { class: 'attempts', id: 'task-attempts' },
      el('thead', {}, el('tr', {}, el('th', {}, '#'), el('th', {}, 'worker'), el('th', {}, 'started'), el('th', {}, 'ended'), el('th', {}, 'took'), el('th', {}, 'outcome'))), body));
  }
}

// ---- dead letter ----
function deadPage(main) {
  const table = el('div', { id: 'dead-table' });
  const more = el('div', {});
  let cursor = null;
  const picked = () => [...table.querySelectorAll('input.pick:checked')].map((c) => c.value);
  const load = () => {
    const p = new URLSearchParams({ status: 'error', limit: '100' });
    if (cursor) p.set('cursor', cursor);
    return api('GET', '/tasks?' + p).then((r) => {
      clear(table).append(r.tasks.length ? taskTable(r.tasks, { select: true, dead: true, actions: (t) => rowActions(t, load) })
        : el('p', { class: 'muted', id: 'dead-empty' }, 'No failed task.'));
      clear(more);
      if (r.next) more.append(el('button', { class: 'act', onclick: () => { cursor = r.next; load(); } }, 'Older →'));
    }).catch((e) => banner(e.message));
  };
  const bulk = (verb, path, key) => async () => {
    const uuids = picked();
    if (!uuids.length) { banner('Pick tasks first (the boxes on the left).'); return; }
    const r = await act(verb, () => api('POST', path, { uuids }));
    if (r) banner(verb + ': ' + r[key].length + ' of ' + uuids.length, true);
    load();
  };
  const tools = el('div', { class: 'toolbar' },
    el('button', { class: 'act', id: 'pick-all', onclick: () => table.querySelectorAll('input.pick').forEach((c) => { c.checked = true; }) }, 'Pick all'),
    el('button', { class: 'act primary', id: 'retry-picked', onclick: bulk('Queued again', '/tasks/retry', 'retried') }, 'Retry picked'),
    el('button', { class: 'act danger', id: 'delete-picked', onclick: bulk('Deleted', '/tasks/delete', 'deleted') }, 'Delete picked'));
  main.append(el('h1', {}, 'Dead letter'), el('p', { class: 'muted' }, 'Tasks that failed for good (status error), with why. Retry queues them again.'), tools, table, more);
  load();
  onStats = throttle(() => { if (!cursor && !picked().length) load(); }, 1000);
}

// ---- schedules ----
function schedulesPage(main) {
  const box = el('div', { id: 'schedules' });
  main.append(el('h1', {}, 'Schedules'), box);
  const load = () => api('GET', '/schedules').then((r) => {
    clear(box);
    if (!r.schedules.length) { box.append(el('p', { class: 'muted' }, 'This app has no timer.')); return; }
    const body = el('tbody', {});
    for (const s of r.schedules) body.append(el('tr', {}, el('td', {}, s.name), el('td', {}, s.task), el('td', { class: 'mono' }, s.schedule), el('td', {}, time(s.next_fire))));
    box.append(el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'timer'), el('th', {}, 'task'), el('th', {}, 'schedule'), el('th', {}, 'next fire'))), body));
  }).catch((e) => banner(e.message));
  load();
  onStats = throttle(load, 5000);
}

// ---- workers ----
function workersPage(main) {
  const list = el('ul', { id: 'workers' });
  const running = el('div', {});
  main.append(el('h1', {}, 'Workers'), el('div', { class: 'panel' }, list), el('h2', {}, 'Running now'), running);
  const load = () => api('GET', '/workers').then((r) => {
    clear(list);
    if (!r.workers.length) list.append(el('li', { class: 'muted' }, 'no live worker'));
    for (const w of r.workers) list.append(el('li', { class: 'mono' }, w));
    clear(running).append(r.running.length ? taskTable(r.running, { actions: (t) => rowActions(t, load) }) : el('p', { class: 'muted' }, 'Nothing runs.'));
  }).catch((e) => banner(e.message));
  load();
  onStats = throttle(load, 1000);
}

connect();
render();
