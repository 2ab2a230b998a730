// Estuary dashboard: a single-page app over the REST API (/api/...), no framework, no build
// step. Live data comes from one Server-Sent Events stream (/api/live) read with fetch(), not
// EventSource, so the bearer token can be sent as a header.

import { MeterView, fmtDb } from './meters.js';

const $ = (sel, root = document) => root.querySelector(sel);
const TOKEN_KEY = 'estuary.token';

// ---------------------------------------------------------------- small DOM helper

// h('button', {class: 'x', onclick: f}, 'text', child...)
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.flat().filter((c) => c != null && c !== false));
  return el;
}

// Keeps one element per item, by key, updating in place: a 1 Hz refresh must not steal
// keyboard focus or reset scroll position.
function sync(parent, items, key, create, update) {
  const old = new Map([...parent.children].map((el) => [el.dataset.key, el]));
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let el = old.get(k);
    if (el) old.delete(k);
    else {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (el !== want) parent.insertBefore(el, want);
    prev = el;
  }
  for (const el of old.values()) el.remove();
}

function text(el, value) {
  const s = String(value ?? '');
  if (el.textContent !== s) el.textContent = s;
}

// ---------------------------------------------------------------- API client

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || (typeof body === 'string' && body) || `HTTP ${status}`);
    this.status = status;
    this.field = e.field || null;
    this.line = e.line || null;
  }
}

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(method, path, body) {
  const headers = { ...authHeaders() };
  let payload;
  if (typeof body === 'string') {
    headers['Content-Type'] = 'text/plain; charset=utf-8';
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload });
  const type = res.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await res.json().catch(() => null) : await res.text();
  if (res.status === 401) setConn('unauthorized');
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

const enc = encodeURIComponent;

// GET /api/inputs/NAME answers {name, status, config}: the config part, without its nulls
// (absent fields), is what PUT takes back.
function specOf(detail) {
  const spec = (detail && detail.config) || detail || {};
  return Object.fromEntries(Object.entries(spec).filter(([, v]) => v != null));
}

// ---------------------------------------------------------------- live state

const state = {
  status: null,
  meters: new Map(), // input name -> InputMeters
  events: [], // oldest first
  logs: [],
  lastEvent: 0,
};
const MAX_EVENTS = 500;
const MAX_LOGS = 2000;

function setConn(kind, detail) {
  const el = $('#conn');
  el.dataset.state = kind;
  text($('#conn-text'), {
    live: 'Live',
    connecting: 'Connecting…',
    reconnecting: 'Reconnecting…',
    unauthorized: 'Token needed',
  }[kind] || kind);
  const banner = $('#banner');
  if (kind === 'unauthorized') {
    banner.replaceChildren('The API needs a token. ', h('a', { href: '#/settings' }, 'Enter it in Settings.'));
    banner.hidden = false;
  } else if (kind === 'reconnecting' && detail) {
    banner.textContent = `Lost the connection to the daemon (${detail}); retrying.`;
    banner.hidden = false;
  } else banner.hidden = true;
}

function notice(msg) {
  text($('#notice'), msg);
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => text($('#notice'), ''), 6000);
}

function onStatus(status) {
  state.status = status;
  const n = status.alarms.length;
  const count = $('#alarm-count');
  count.hidden = n === 0;
  text(count, n);
  count.setAttribute('aria-label', `${n} active`);
  current?.status?.(status);
}

function onEvent(ev) {
  if (ev.id <= state.lastEvent) return;
  state.lastEvent = ev.id;
  state.events.push(ev);
  if (state.events.length > MAX_EVENTS) state.events.shift();
  if (ev.kind === 'alarm_raised' || ev.kind === 'alarm_cleared') {
    const verb = ev.kind === 'alarm_raised' ? 'Alarm' : 'Cleared';
    text($('#alarm-live'), `${verb}: ${ev.subject} — ${ev.message}`);
  }
  current?.events?.();
}

function logLine(data) {
  if (typeof data === 'string') return data;
  if (data && typeof data === 'object') {
    if (data.line) return data.line;
    const at = data.at || data.timestamp || '';
    return [at, data.level, data.target, data.message || data.fields?.message].filter(Boolean).join(' ');
  }
  return String(data);
}

function onLog(data) {
  state.logs.push(logLine(data));
  if (state.logs.length > MAX_LOGS) state.logs.splice(0, state.logs.length - MAX_LOGS);
  current?.log?.();
}

function onMeters(data) {
  const list = Array.isArray(data) ? data : data.inputs || data.meters || [data];
  for (const m of list) state.meters.set(m.input, m);
  current?.meters?.(list);
}

function dispatch(type, raw) {
  let data = raw;
  try {
    data = JSON.parse(raw);
  } catch {
    // A log line may be plain text.
  }
  if (type === 'status') onStatus(data);
  else if (type === 'meters') onMeters(data);
  else if (type === 'event') onEvent(data);
  else if (type === 'log') onLog(data);
}

// Reads the SSE stream: "event:", "data:" lines, a blank line ends a message.
async function readSse(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let type = 'message';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (data.length) dispatch(type, data.join('\n'));
        type = 'message';
        data = [];
      } else if (line.startsWith('event:')) type = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
  }
}

let liveAbort = null;

async function refresh() {
  const [status, meters, events] = await Promise.all([
    api('GET', '/api/status'),
    api('GET', '/api/meters').catch(() => []),
    api('GET', `/api/events?after=${state.lastEvent}&limit=${MAX_EVENTS}`).catch(() => []),
  ]);
  onMeters(meters);
  for (const ev of Array.isArray(events) ? events : events.events || []) onEvent(ev);
  onStatus(status);
}

// One live connection at a time; reconnects with backoff, and re-reads the full state each
// time so nothing missed while disconnected stays stale.
async function live() {
  liveAbort?.abort();
  const abort = new AbortController();
  liveAbort = abort;
  let delay = 500;
  while (!abort.signal.aborted) {
    try {
      await refresh();
      const res = await fetch('/api/live', { headers: authHeaders(), signal: abort.signal });
      if (res.status === 401) {
        setConn('unauthorized');
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      setConn('live');
      delay = 500;
      await readSse(res);
      setConn('reconnecting', 'stream ended');
    } catch (e) {
      if (abort.signal.aborted) return;
      if (e instanceof ApiError && e.status === 401) return;
      setConn('reconnecting', e.message);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 8000);
  }
}

// ---------------------------------------------------------------- shared bits

const BADGE = {
  ok: ['✓', 'OK'],
  warning: ['▲', 'Warning'],
  critical: ['✖', 'Critical'],
  idle: ['○', 'Idle'],
  info: ['ℹ', 'Info'],
};

// A health badge: a shape and a word as well as a colour.
function badge(level, title) {
  const [icon, word] = BADGE[level] || ['?', level || 'unknown'];
  return h('span', { class: `badge badge-${level}`, title, dataset: { level } }, h('span', { 'aria-hidden': 'true' }, icon), ` ${word}`);
}

function setBadge(slot, level, title) {
  if (slot.dataset.level === level && slot.title === (title || '')) return;
  slot.dataset.level = level;
  slot.title = title || '';
  slot.replaceChildren(badge(level, title));
}

const STATE_LEVEL = {
  receiving: 'ok',
  connected: 'ok',
  waiting: 'idle',
  listening: 'idle',
  connecting: 'idle',
  stopped: 'idle',
  backoff: 'warning',
  failed: 'critical',
};

function stateTag(s) {
  return h('span', { class: `state state-${STATE_LEVEL[s] || 'idle'}`, dataset: { state: s } }, s);
}

function setState(slot, s) {
  if (slot.dataset.state === s) return;
  slot.dataset.state = s;
  slot.replaceChildren(stateTag(s));
}

const num = (n) => (n ?? 0).toLocaleString('en');

function bytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(s) {
  if (s == null) return '—';
  s = Math.floor(s);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${hh}h ${mm}m` : hh ? `${hh}h ${mm}m` : `${mm}m ${s % 60}s`;
}

// 24-hour clock: what a control room's wall clocks show.
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hourCycle: 'h23' }) : '');

function page(title, ...children) {
  return [h('h1', { tabindex: '-1' }, title), ...children];
}

function section(title, ...children) {
  return h('section', { 'aria-label': title }, h('h2', {}, title), ...children);
}

function table(caption, headers, bodyAttrs = {}) {
  const tbody = h('tbody', bodyAttrs);
  const t = h(
    'table',
    { class: 'grid' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col' }, c)))),
    tbody,
  );
  tbody.labels = headers;
  return [h('div', { class: 'scroll' }, t), tbody];
}

// A row for `tbody` (from table()); each cell carries its column name, which the phone
// layout prints before the value since it hides the header row.
function row(tbody) {
  const tr = h('tr');
  for (const label of tbody.labels) tr.append(h('td', { dataset: { label } }));
  return tr;
}

function empty(el, msg, isEmpty) {
  let p = el.nextElementSibling;
  if (!p || !p.classList.contains('empty')) {
    p = h('p', { class: 'empty' }, msg);
    el.after(p);
  }
  p.hidden = !isEmpty;
}

// ---------------------------------------------------------------- Overview

const overview = {
  mount(main) {
    this.views = new Map();
    this.sys = h('dl', { class: 'facts' });
    this.cards = h('div', { class: 'cards' });
    const [outs, body] = table('Outputs', ['Output', 'Input', 'State', 'Health', 'Peer', 'Sent', 'RTT']);
    this.outs = body;
    main.append(
      ...page(
        'Overview',
        section('System', this.sys),
        section('Inputs', this.cards),
        section('Outputs', outs),
      ),
    );
  },
  status(s) {
    const sys = s.system;
    this.sys.replaceChildren(
      ...[
        ['Host', sys.hostname],
        ['Version', sys.version],
        ['Uptime', duration(sys.uptime_s)],
        ['CPU', `${sys.cpu_percent.toFixed(1)} %`],
        ['Memory', bytes(sys.memory_rss_bytes)],
        ['Clock', s.clock.source + (s.clock.ptp_locked ? ' (PTP locked)' : '')],
      ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
    );
    sync(this.cards, s.inputs, (i) => i.name, (i) => this.card(i), (el, i) => this.fill(el, i));
    empty(this.cards, 'No inputs yet. Add one from Streams or Inputs.', s.inputs.length === 0);
    sync(this.outs, s.outputs, (o) => o.name, () => row(this.outs), (tr, o) => {
      tr.dataset.output = o.name;
      const c = tr.cells;
      text(c[0], o.name);
      text(c[1], o.input);
      setState(c[2], o.state);
      setBadge(c[3], o.health.level, o.health.conditions.join(', ') || o.last_error || '');
      text(c[4], o.peer || '—');
      text(c[5], bytes(o.counters.bytes_sent));
      text(c[6], o.state === 'connected' ? `${o.counters.rtt_ms.toFixed(1)} ms` : '—');
    });
    empty(this.outs.closest('.scroll'), 'No outputs.', s.outputs.length === 0);
  },
  card(i) {
    const meter = h('div', { class: 'meter' });
    const el = h(
      'article',
      { class: 'card input-card', dataset: { input: i.name }, 'aria-label': `Input ${i.name}` },
      h('header', {}, h('h3', {}, i.name), h('span', { class: 'slot-badge' }), h('span', { class: 'slot-state' })),
      h('p', { class: 'sub' }),
      h('dl', { class: 'counters' }),
      meter,
      h('p', { class: 'conditions' }),
    );
    const view = new MeterView(meter);
    this.views.set(i.name, view);
    const m = state.meters.get(i.name);
    if (m) view.update(m);
    return el;
  },
  fill(el, i) {
    setBadge($('.slot-badge', el), i.health.level, i.health.conditions.join(', '));
    setState($('.slot-state', el), i.state);
    const st = i.stream;
    text($('.sub', el), [i.source, st && `${st.encoding}/${st.sample_rate}/${st.channels}`, st?.destination, i.reason].filter(Boolean).join(' · '));
    const c = i.counters;
    $('.counters', el).replaceChildren(
      ...[
        ['Packets', num(c.packets_received)],
        ['Lost', num(c.packets_lost)],
        ['Late', num(c.packets_late)],
        ['Jitter', `${c.jitter_us.toFixed(0)} µs`],
        ['Latency', `${i.latency_ms} ms`],
        ['Outputs', i.outputs.join(', ') || '—'],
      ].map(([k, v]) => h('div', { dataset: { counter: k.toLowerCase() } }, h('dt', {}, k), h('dd', {}, v))),
    );
    const cond = i.health.conditions;
    text($('.conditions', el), cond.length ? `Conditions: ${cond.join(', ')}` : '');
  },
  meters(list) {
    for (const m of list) this.views.get(m.input)?.update(m);
  },
};

// ---------------------------------------------------------------- Discovered streams

// A valid input name from a stream name: letters, digits, '-', '_', '.', at most 64, and not
// already taken.
export function inputName(streamName, taken) {
  let base = streamName
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 60);
  if (!base) base = 'input';
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
  return name;
}

const streams = {
  mount(main) {
    const [t, body] = table('Discovered streams', ['Name', 'Protocol', 'Address', 'Format', 'Channels', 'State', 'Used by', 'Action']);
    this.body = body;
    this.info = h('p', { class: 'sub' });
    main.append(...page('Discovered streams', this.info, t));
  },
  status(s) {
    const d = s.discovery;
    text(this.info, d.enabled
      ? `Listening: ${[d.sap && 'SAP', d.ravenna && 'RAVENNA'].filter(Boolean).join(', ') || 'nothing'} · ${num(d.sap_datagrams)} SAP datagrams, ${num(d.sap_malformed)} malformed, ${num(d.refused)} refused`
      : 'Discovery is off in the configuration.');
    sync(this.body, d.streams, (r) => `${r.source}|${r.address}:${r.port}`, () => {
      const tr = row(this.body);
      tr.cells[7].append(h('button', { type: 'button', class: 'add-stream', onclick: (e) => this.add(e.currentTarget) }, 'Add as input'));
      return tr;
    }, (tr, r) => {
      tr.dataset.source = r.source;
      const c = tr.cells;
      text(c[0], r.name);
      text(c[1], r.protocol);
      text(c[2], `${r.address}:${r.port}`);
      text(c[3], `${r.format}/${r.sample_rate}${r.ptime_ms ? ` · ${r.ptime_ms} ms` : ''}`);
      text(c[4], r.channel_labels?.length ? `${r.channels} (${r.channel_labels.join(', ')})` : r.channels);
      text(c[5], r.state);
      text(c[6], r.used_by.join(', ') || '—');
      const b = c[7].firstChild;
      b.dataset.name = r.name;
      b.setAttribute('aria-label', `Add ${r.name} as input`);
    });
    empty(this.body.closest('.scroll'), 'No streams announced yet.', d.streams.length === 0);
  },
  async add(button) {
    const tr = button.closest('tr');
    const taken = new Set(state.status.inputs.map((i) => i.name));
    const name = inputName(button.dataset.name, taken);
    button.disabled = true;
    try {
      await api('POST', '/api/inputs', { name, kind: 'aes67', source: tr.dataset.source });
      notice(`Added input “${name}”.`);
      onStatus(await api('GET', '/api/status'));
    } catch (e) {
      notice(`Could not add “${name}”: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  },
};

// ---------------------------------------------------------------- Inputs / Outputs editors

const INPUT_FIELDS = [
  { name: 'name', label: 'Name', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', hint: 'Letters, digits, - _ . (at most 64)' },
  { name: 'kind', label: 'Kind', options: ['aes67'] },
  { name: 'source', label: 'Source', hint: 'A discovered stream (sap:NAME, ravenna:NAME, name:NAME) or a sender IP for source-specific multicast' },
  { name: 'address', label: 'Address', hint: 'Group and port, e.g. 239.69.1.1:5004 (when not following a discovered stream)' },
  { name: 'format', label: 'Format', options: ['', 'L16', 'L24', 'L32'] },
  { name: 'channels', label: 'Channels', type: 'number', min: 1 },
  { name: 'sample_rate', label: 'Sample rate', type: 'number', min: 1 },
  { name: 'interface', label: 'Interface', hint: 'Interface name or address; default: the kernel’s choice' },
  { name: 'latency', label: 'Latency', hint: 'Jitter buffer, e.g. 10ms', placeholder: '10ms' },
  { name: 'sdp', label: 'SDP', type: 'textarea', hint: 'Inline SDP, instead of an address or source' },
  { name: 'meters', label: 'Measure levels, loudness and health', type: 'checkbox', value: true },
];

const OUTPUT_FIELDS = [
  { name: 'name', label: 'Name', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', hint: 'Letters, digits, - _ . (at most 64)' },
  { name: 'kind', label: 'Kind', options: ['srt'] },
  { name: 'input', label: 'Input', options: () => state.status.inputs.map((i) => i.name), required: true },
  { name: 'mode', label: 'Mode', options: ['listener', 'caller'] },
  { name: 'address', label: 'Address', required: true, hint: 'IP:PORT — listener: local address to bind; caller: the remote listener' },
  { name: 'codec', label: 'Codec', options: ['opus', 'pcm'] },
  { name: 'latency', label: 'SRT latency', placeholder: '120ms' },
  { name: 'bitrate', label: 'Opus bitrate (b/s)', type: 'number', min: 6000, placeholder: '128000' },
  { name: 'channels', label: 'Channels', hint: '1-based input channels, e.g. 1,2', list: true },
  { name: 'bits', label: 'PCM bits', options: ['', '16', '20', '24'], number: true },
  { name: 'passphrase', label: 'Passphrase', type: 'password', hint: '10 to 79 characters; empty: no encryption' },
  { name: 'stream_id', label: 'Stream ID' },
];

function fieldControl(f, id) {
  if (f.type === 'textarea') return h('textarea', { id, name: f.name, rows: 6, spellcheck: 'false' });
  if (f.options) {
    const opts = typeof f.options === 'function' ? f.options() : f.options;
    return h('select', { id, name: f.name, required: f.required }, opts.map((o) => h('option', { value: o }, o || '(default)')));
  }
  return h('input', {
    id,
    name: f.name,
    type: f.type || 'text',
    required: f.required,
    pattern: f.pattern,
    min: f.min,
    placeholder: f.placeholder,
    autocomplete: f.type === 'password' ? 'new-password' : 'off',
    spellcheck: 'false',
  });
}

// A form for one input or output; the server's field errors are shown under the field.
class Editor {
  constructor(kind, fields) {
    this.kind = kind; // 'inputs' | 'outputs'
    this.fields = fields;
    this.original = null;
  }

  mount(main) {
    this.list = null;
    const noun = this.kind === 'inputs' ? 'Input' : 'Output';
    const [t, body] = table(`${noun}s`, ['Name', this.kind === 'inputs' ? 'Source' : 'Input', 'State', 'Health', 'Actions']);
    this.body = body;
    this.formBox = h('div');
    main.append(...page(`${noun}s`, t, h('p', {}, h('button', { type: 'button', class: 'primary', id: `new-${this.kind}`, onclick: () => this.open(null) }, `Add ${noun.toLowerCase()}`)), this.formBox));
  }

  status(s) {
    const items = s[this.kind];
    sync(this.body, items, (x) => x.name, () => {
      const tr = row(this.body);
      tr.cells[4].append(
        h('button', { type: 'button', class: 'edit', onclick: () => this.open(tr.dataset.key) }, 'Edit'),
        ' ',
        h('button', { type: 'button', class: 'danger delete', onclick: () => this.remove(tr.dataset.key) }, 'Delete'),
      );
      return tr;
    }, (tr, x) => {
      const c = tr.cells;
      text(c[0], x.name);
      text(c[1], this.kind === 'inputs' ? x.source : x.input);
      setState(c[2], x.state);
      setBadge(c[3], x.health.level, x.health.conditions.join(', '));
      c[4].firstChild.setAttribute('aria-label', `Edit ${x.name}`);
      c[4].lastChild.setAttribute('aria-label', `Delete ${x.name}`);
    });
    empty(this.body.closest('.scroll'), `No ${this.kind} yet.`, items.length === 0);
  }

  async open(name) {
    let cfg = {};
    if (name) {
      try {
        cfg = specOf(await api('GET', `/api/${this.kind}/${enc(name)}`));
      } catch (e) {
        notice(`Could not read ${name}: ${e.message}`);
        return;
      }
    }
    this.original = name ? cfg : null;
    this.editing = name;
    const noun = this.kind === 'inputs' ? 'input' : 'output';
    const form = h('form', { class: 'editor', novalidate: true, id: `${noun}-form`, onsubmit: (e) => this.submit(e) });
    form.append(h('h2', { tabindex: '-1' }, name ? `Edit ${noun} “${name}”` : `New ${noun}`), h('p', { class: 'form-error', role: 'alert' }));
    for (const f of this.fields) {
      const id = `${noun}-${f.name}`;
      const control = fieldControl(f, id);
      const err = h('span', { class: 'field-error', id: `${id}-error` });
      const hint = f.hint ? h('span', { class: 'hint', id: `${id}-hint` }, f.hint) : null;
      control.setAttribute('aria-describedby', [hint && hint.id, err.id].filter(Boolean).join(' '));
      const v = cfg[f.name] ?? (name ? undefined : f.value);
      // The API replaces an entry by name; renaming is delete + add.
      if (name && f.name === 'name') control.readOnly = true;
      if (f.type === 'checkbox') {
        control.checked = v !== false;
        form.append(h('div', { class: 'field check' }, control, h('label', { for: id }, f.label), hint, err));
      } else {
        if (v != null) control.value = Array.isArray(v) ? v.join(',') : String(v);
        form.append(h('div', { class: 'field' }, h('label', { for: id }, f.label, f.required ? h('span', { 'aria-hidden': 'true' }, ' *') : null), control, hint, err));
      }
    }
    form.append(h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, name ? 'Save' : `Add ${noun}`), ' ', h('button', { type: 'button', onclick: () => this.close() }, 'Cancel')));
    this.formBox.replaceChildren(form);
    form.querySelector('h2').focus();
  }

  close() {
    this.formBox.replaceChildren();
  }

  // The form's values over the original config, so fields the form does not show survive.
  values(form) {
    const out = { ...(this.original || {}) };
    for (const f of this.fields) {
      const el = form.elements[f.name];
      if (f.type === 'checkbox') {
        out[f.name] = el.checked;
        continue;
      }
      const v = el.value.trim();
      if (v === '') delete out[f.name];
      else if (f.list) out[f.name] = v.split(/[\s,]+/).filter(Boolean).map(Number);
      else if (f.type === 'number' || f.number) out[f.name] = Number(v);
      else out[f.name] = v;
    }
    return out;
  }

  clearErrors(form) {
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    text($('.form-error', form), '');
  }

  showError(form, field, message) {
    // The server names fields like `outputs[1].address`; the form field is the last part.
    const key = field && field.split('.').pop().replace(/\[\d+\]$/, '');
    const el = key && form.elements[key];
    if (el && el.id) {
      el.setAttribute('aria-invalid', 'true');
      text($(`#${el.id}-error`, form), message);
      el.focus();
    } else {
      text($('.form-error', form), message);
    }
  }

  async submit(e) {
    e.preventDefault();
    const form = e.currentTarget;
    this.clearErrors(form);
    // The browser's own checks first (required, pattern), shown the same way as the server's.
    for (const el of form.elements) {
      if (el.willValidate && !el.checkValidity()) {
        this.showError(form, el.name, el.validationMessage);
        return;
      }
    }
    const body = this.values(form);
    const noun = this.kind === 'inputs' ? 'input' : 'output';
    try {
      if (this.editing) await api('PUT', `/api/${this.kind}/${enc(this.editing)}`, body);
      else await api('POST', `/api/${this.kind}`, body);
      notice(`${this.editing ? 'Saved' : 'Added'} ${noun} “${body.name}”.`);
      this.close();
      onStatus(await api('GET', '/api/status'));
    } catch (err) {
      this.showError(form, err.field, err.line ? `${err.message} (line ${err.line})` : err.message);
    }
  }

  async remove(name) {
    const noun = this.kind === 'inputs' ? 'input' : 'output';
    if (!confirm(`Delete ${noun} “${name}”?`)) return;
    const path = `/api/${this.kind}/${enc(name)}`;
    try {
      await api('DELETE', path);
    } catch (e) {
      // An input that outputs still use: offer to delete them too.
      if (e.status !== 409 || !confirm(`${e.message}\n\nDelete its outputs as well?`)) {
        notice(`Could not delete “${name}”: ${e.message}`);
        return;
      }
      await api('DELETE', `${path}?cascade=true`).catch((e2) => notice(`Could not delete “${name}”: ${e2.message}`));
    }
    notice(`Deleted ${noun} “${name}”.`);
    onStatus(await api('GET', '/api/status'));
  }
}

const inputs = new Editor('inputs', INPUT_FIELDS);
const outputs = new Editor('outputs', OUTPUT_FIELDS);

// ---------------------------------------------------------------- Routing matrix

const routing = {
  mount(main) {
    this.box = h('div', { class: 'scroll' });
    this.shape = '';
    main.append(...page('Routing', h('p', { class: 'sub', id: 'routing-help' }, 'Each output carries one input. Choose a cell to route that output from that input. Arrow keys move between cells.'), this.box));
    this.box.addEventListener('keydown', (e) => this.key(e));
  },
  status(s) {
    const shape = JSON.stringify([s.inputs.map((i) => i.name), s.outputs.map((o) => o.name)]);
    if (shape !== this.shape) {
      this.shape = shape;
      const t = h('table', { class: 'grid matrix', 'aria-describedby': 'routing-help' },
        h('caption', { class: 'sr-only' }, 'Inputs (rows) by outputs (columns)'),
        h('thead', {}, h('tr', {}, h('td'), s.outputs.map((o) => h('th', { scope: 'col' }, o.name)))),
        h('tbody', {}, s.inputs.map((i, r) => h('tr', {}, h('th', { scope: 'row' }, i.name), s.outputs.map((o, c) => h('td', {}, h('button', {
          type: 'button',
          class: 'cell',
          dataset: { input: i.name, output: o.name, row: r, col: c },
          'aria-label': `Route ${o.name} from ${i.name}`,
          onclick: (e) => this.route(e.currentTarget),
        })))))));
      this.box.replaceChildren(t);
      if (!s.inputs.length || !s.outputs.length) this.box.append(h('p', { class: 'empty' }, 'Add inputs and outputs to route them.'));
    }
    for (const b of this.box.querySelectorAll('button.cell')) {
      const o = s.outputs.find((x) => x.name === b.dataset.output);
      const on = o && o.input === b.dataset.input;
      b.setAttribute('aria-pressed', String(!!on));
      text(b, on ? '●' : '');
    }
  },
  async route(b) {
    if (b.getAttribute('aria-pressed') === 'true') return;
    const { input, output } = b.dataset;
    b.disabled = true;
    try {
      const cfg = specOf(await api('GET', `/api/outputs/${enc(output)}`));
      await api('PUT', `/api/outputs/${enc(output)}`, { ...cfg, input });
      notice(`${output} now carries ${input}.`);
      onStatus(await api('GET', '/api/status'));
    } catch (e) {
      notice(`Could not route ${output}: ${e.message}`);
    } finally {
      b.disabled = false;
      b.focus();
    }
  },
  key(e) {
    const b = e.target.closest('button.cell');
    const d = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[e.key];
    if (!b || !d) return;
    const next = this.box.querySelector(`button.cell[data-row="${+b.dataset.row + d[0]}"][data-col="${+b.dataset.col + d[1]}"]`);
    if (next) {
      e.preventDefault();
      next.focus();
    }
  },
};

// ---------------------------------------------------------------- Alarms

const alarms = {
  mount(main) {
    const [active, ab] = table('Active alarms', ['Severity', 'Subject', 'Condition', 'Message', 'Value', 'Raised']);
    const [cond, cb] = table('Raised health conditions', ['Health', 'Subject', 'Conditions', 'State']);
    const [hist, hb] = table('Event history', ['Time', 'Kind', 'Severity', 'Subject', 'Message']);
    this.active = ab;
    this.cond = cb;
    this.hist = hb;
    main.append(...page('Alarms', section('Active', active),
      // What the detectors raise on each input and output, whether or not an alarm rule
      // turns it into an alarm: the badge's reasons, in one list.
      section('Health conditions', cond),
      section('History', hist)));
    this.events();
  },
  status(s) {
    sync(this.active, s.alarms, (a) => a.key, () => row(this.active), (tr, a) => {
      tr.className = `alarm sev-${a.severity}`;
      tr.dataset.condition = a.condition;
      tr.dataset.subject = a.subject;
      const c = tr.cells;
      setBadge(c[0], a.severity);
      text(c[1], `${a.scope} ${a.subject}${a.channel ? ` ch${a.channel}` : ''}`);
      text(c[2], a.condition);
      text(c[3], a.message);
      text(c[4], Number.isFinite(a.value) ? a.value.toFixed(1) : '');
      text(c[5], time(a.raised_at));
    });
    empty(this.active.closest('.scroll'), 'No active alarms.', s.alarms.length === 0);
    const raised = [...s.inputs.map((x) => ['input', x]), ...s.outputs.map((x) => ['output', x])]
      .filter(([, x]) => x.health.conditions.length);
    sync(this.cond, raised, ([k, x]) => `${k}/${x.name}`, () => row(this.cond), (tr, [k, x]) => {
      tr.className = 'condition';
      tr.dataset.subject = x.name;
      const c = tr.cells;
      setBadge(c[0], x.health.level);
      text(c[1], `${k} ${x.name}`);
      text(c[2], x.health.conditions.join(', '));
      setState(c[3], x.state);
    });
    empty(this.cond.closest('.scroll'), 'No input or output reports a problem.', raised.length === 0);
  },
  events() {
    const list = state.events.slice(-200).reverse();
    sync(this.hist, list, (ev) => String(ev.id), () => row(this.hist), (tr, ev) => {
      tr.dataset.kind = ev.kind;
      const c = tr.cells;
      text(c[0], time(ev.at));
      text(c[1], ev.kind.replace('_', ' '));
      if (!c[2].firstChild) c[2].append(badge(ev.severity));
      text(c[3], ev.subject);
      text(c[4], ev.message);
    });
    empty(this.hist.closest('.scroll'), 'No events yet.', list.length === 0);
  },
};

// ---------------------------------------------------------------- Clock

const clock = {
  mount(main) {
    this.facts = h('dl', { class: 'facts' });
    const [t, body] = table('Stream clock references', ['Input', 'Reference']);
    this.refs = body;
    main.append(...page('Clock', this.facts, section('Stream references (SDP ts-refclk)', t)));
  },
  status(s) {
    const c = s.clock;
    this.facts.replaceChildren(
      h('dt', {}, 'Source'), h('dd', {}, c.source),
      h('dt', {}, 'PTP'), h('dd', {}, badge(c.ptp_locked ? 'ok' : 'idle'), c.ptp_locked ? ' Locked to a grandmaster' : ' Not following PTP'),
    );
    sync(this.refs, c.stream_references, (r) => `${r.input}|${r.reference}`, () => row(this.refs), (tr, r) => {
      text(tr.cells[0], r.input);
      text(tr.cells[1], r.reference);
    });
    empty(this.refs.closest('.scroll'), 'No stream declares a reference clock.', c.stream_references.length === 0);
  },
};

// ---------------------------------------------------------------- Logs

const logs = {
  async mount(main) {
    this.pre = h('pre', { class: 'log', role: 'log', tabindex: '0', 'aria-label': 'Daemon log' });
    this.paused = h('input', { type: 'checkbox', id: 'log-pause' });
    this.filter = h('input', { type: 'search', id: 'log-filter', oninput: () => this.render() });
    main.append(...page('Logs',
      h('div', { class: 'toolbar' },
        h('div', { class: 'field check' }, this.paused, h('label', { for: 'log-pause' }, 'Pause')),
        h('div', { class: 'field inline' }, h('label', { for: 'log-filter' }, 'Filter'), this.filter)),
      this.pre));
    if (!state.logs.length) {
      try {
        const d = await api('GET', '/api/logs?lines=300');
        const lines = typeof d === 'string' ? d.split('\n').filter(Boolean) : Array.isArray(d) ? d : d.lines || [];
        state.logs.unshift(...lines.map(logLine));
      } catch (e) {
        notice(`Could not read the log: ${e.message}`);
      }
    }
    this.render();
  },
  log() {
    if (!this.paused.checked) this.render();
  },
  render() {
    // Coalesce bursts of log lines into one repaint per frame.
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      const f = this.filter.value.toLowerCase();
      const lines = f ? state.logs.filter((l) => l.toLowerCase().includes(f)) : state.logs;
      const stick = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 20;
      this.pre.textContent = lines.slice(-1000).join('\n');
      if (stick) this.pre.scrollTop = this.pre.scrollHeight;
    });
  },
};

// ---------------------------------------------------------------- Settings

const settings = {
  mount(main) {
    const token = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'token-hint' });
    token.value = localStorage.getItem(TOKEN_KEY) || '';
    const show = h('input', { type: 'checkbox', id: 'token-show', onchange: () => (token.type = show.checked ? 'text' : 'password') });
    const form = h('form', { class: 'editor', onsubmit: (e) => {
      e.preventDefault();
      const v = token.value.trim();
      if (v) localStorage.setItem(TOKEN_KEY, v);
      else localStorage.removeItem(TOKEN_KEY);
      notice(v ? 'Token saved in this browser.' : 'Token removed.');
      live();
    } },
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'API token'), token,
      h('span', { class: 'hint', id: 'token-hint' }, 'Needed when the API listens beyond loopback. Stored in this browser only (localStorage), sent as a bearer token.')),
    h('div', { class: 'field check' }, show, h('label', { for: 'token-show' }, 'Show token')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save token')));
    this.cfg = h('textarea', { id: 'config-text', rows: 18, spellcheck: 'false', 'aria-describedby': 'config-error' });
    const cfgForm = h('form', { class: 'editor', onsubmit: (e) => this.saveConfig(e) },
      h('div', { class: 'field' }, h('label', { for: 'config-text' }, 'Configuration (TOML)'), this.cfg, h('span', { class: 'field-error', id: 'config-error', role: 'alert' })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply configuration'), ' ', h('button', { type: 'button', onclick: () => this.loadConfig() }, 'Reload')));
    this.sys = h('dl', { class: 'facts' });
    main.append(...page('Settings',
      section('Access', form),
      section('API', h('ul', { class: 'links' },
        h('li', {}, h('a', { href: '/api/docs' }, 'API documentation'), ' (interactive, OpenAPI)'),
        h('li', {}, h('a', { href: '/api/openapi.json' }, 'OpenAPI description'), ' (JSON)'),
        h('li', {}, h('a', { href: '/metrics' }, 'Prometheus metrics'), ' (/metrics)'))),
      section('Configuration', cfgForm),
      section('System', this.sys),
      section('Keyboard', h('dl', { class: 'facts' }, h('dt', {}, '1 – 9'), h('dd', {}, 'Go to a page (in menu order)'), h('dt', {}, 'Arrow keys'), h('dd', {}, 'Move between routing cells')))));
    this.loadConfig();
  },
  async loadConfig() {
    try {
      this.cfg.value = await api('GET', '/api/config');
    } catch (e) {
      text($('#config-error'), `Could not read the configuration: ${e.message}`);
    }
  },
  async saveConfig(e) {
    e.preventDefault();
    text($('#config-error'), '');
    try {
      await api('PUT', '/api/config', this.cfg.value);
      notice('Configuration applied.');
    } catch (err) {
      const where = [err.line && `line ${err.line}`, err.field].filter(Boolean).join(', ');
      text($('#config-error'), where ? `${where}: ${err.message}` : err.message);
      this.cfg.setAttribute('aria-invalid', 'true');
    }
  },
  status(s) {
    const sys = s.system;
    this.sys.replaceChildren(...[
      ['Version', sys.version], ['Host', sys.hostname], ['PID', sys.pid], ['Started', sys.started_at],
      ['CPU cores', sys.cpu_cores], ['Load', sys.load_average.toFixed(2)], ['Config file', sys.config_path || '(embedded)'],
      ['Interfaces', sys.interfaces.map((i) => `${i.name}${i.up ? '' : ' (down)'} ${i.addresses.join(' ')}`).join('; ')],
    ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
  },
};

// ---------------------------------------------------------------- router

const pages = { overview, streams, inputs, outputs, routing, alarms, clock, logs, settings };
let current = null;

function route(focus) {
  const name = location.hash.replace(/^#\/?/, '').split('/')[0] || 'overview';
  const next = pages[name] || overview;
  const main = $('#main');
  main.replaceChildren();
  current = null;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  next.mount(main);
  current = next;
  document.title = `${$('h1', main)?.textContent || 'Estuary'} · Estuary`;
  if (state.status) next.status?.(state.status);
  // Move focus to the new heading so screen readers announce the page change.
  if (focus) $('h1', main)?.focus();
}

// Digits switch pages, unless the user is typing.
document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target.closest('input, textarea, select, [contenteditable]')) return;
  const a = $(`#nav a[data-key="${e.key}"]`);
  if (a) {
    e.preventDefault();
    location.hash = a.getAttribute('href');
  }
});

window.addEventListener('hashchange', () => route(true));
route(false);
live();
