/*
 * enforcer dashboard: a hash-routed single page over the management API's JSON reports.
 *
 * No framework, no build step, nothing loaded from outside. The DOM is built with h() and
 * svg(), which only ever set text and attributes (never innerHTML), so no server-provided
 * value can inject markup. A page is { root, load(), render(data) }: the harness mounts its
 * root once, then re-fetches its data every 5 s and re-renders only the data part, so
 * filters, scroll position and form input survive a refresh.
 */
'use strict';

// ---- constants -----------------------------------------------------------------------

const LOGIN_URL = '/dashboard/login.html';
const REFRESH_MS = 5000;
const HOUR_MS = 3600e3;
const DAY_MS = 24 * HOUR_MS;

const PERIODS = [['day', 'Day'], ['week', 'Week'], ['month', 'Month'], ['6months', '6 months']];
const PERIOD_DAYS = { day: 1, week: 7, month: 30, '6months': 182 };
const CLIENT_TYPES = [['ip', 'IP'], ['token', 'Token'], ['cookie', 'Cookie'], ['api_key', 'API key'], ['username', 'Username']];
const TYPE_LABEL = Object.fromEntries(CLIENT_TYPES);
// Client type as the activity and attack reports name it -> key of the deny/allow list JSON.
const LIST_KEYS = { ip: 'ips', token: 'oauth_tokens', cookie: 'cookies', api_key: 'api_keys', username: 'usernames' };
// List entries of these types are a name and a value; clients are identified by the value.
const NAMED_TYPES = new Set(['cookie', 'api_key']);
const IOA_NAMES = [
  'login_attack', 'multi_client_login_attack', 'stolen_token', 'stolen_cookie', 'stolen_api_key',
  'api_probing', 'extreme_client_activity', 'data_exfiltration', 'pattern_violation',
  'decoy_access', 'missing_token',
];

const oneOf = (value, options, fallback) => (options.includes(value) ? value : fallback);
const periodOf = (params) => oneOf(params.period, PERIODS.map(([p]) => p), 'day');

// ---- DOM -----------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

function svg(tag, props, ...children) {
  return build(document.createElementNS('http://www.w3.org/2000/svg', tag), props, children);
}

// Props: `text`, `on<event>` handlers, otherwise attributes (true: present, false/null: absent).
function build(el, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// Re-rendering replaces nodes; keep the reader where they were.
function keepScroll(fn) {
  const x = window.scrollX;
  const y = window.scrollY;
  fn();
  if (window.scrollX !== x || window.scrollY !== y) window.scrollTo(x, y);
}

// ---- formatting ----------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat();
const compactFormat = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const dayHourFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit' });
const utcDayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });

const fmt = (n) => numberFormat.format(n || 0);
const fmtCompact = (n) => compactFormat.format(n || 0);
const pct = (part, whole) => (whole ? `${Math.round((part / whole) * 1000) / 10}%` : '—');
const sum = (values) => values.reduce((a, b) => a + b, 0);
const plural = (n, noun) => `${fmt(n)} ${noun}${n === 1 ? '' : 's'}`;
const sumCounts = (items) => (items || []).reduce((n, item) => n + item.count, 0);
const enc = encodeURIComponent;
const display = (value) => (value === '' ? '(empty)' : value);

function fmtTime(when) {
  if (when === null || when === undefined || when === '') return '—';
  const d = new Date(when);
  return Number.isNaN(d.getTime()) ? String(when) : dateTimeFormat.format(d);
}

const fmtRange = (start, end) => `${fmtTime(start)} – ${fmtTime(end)}`;

// ---- server --------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status = 0, code = '') {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let leaving = false; // on the way to the login page: later errors are noise

async function call(method, url, body, as = 'json') {
  const init = { method, credentials: 'same-origin', headers: { 'X-Enforcer-Dashboard': '1' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new ApiError(`Cannot reach enforcer: ${err.message}`);
  }
  if (res.status === 401) {
    leaving = true;
    location.assign(LOGIN_URL);
    throw new ApiError('Signed out', 401);
  }
  const text = await res.text();
  if (!res.ok) throw failure(res, text);
  if (as === 'text') return text;
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(`${method} ${url}: the answer is not JSON`, res.status);
  }
}

const getJson = (url) => call('GET', url);

// The management API answers {"error","message"}; PingOne's userActivities answers
// {"code","message","details":[{"message"}]}, whose first detail is the specific one.
function failure(res, text) {
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: reported as text below
  }
  const message = body && ((body.details && body.details[0] && body.details[0].message) || body.message || body.error);
  const code = (body && (body.error || body.code)) || '';
  if (message) return new ApiError(`${message} (HTTP ${res.status})`, res.status, code);
  return new ApiError(`HTTP ${res.status} ${res.statusText} ${text.slice(0, 200)}`.trim(), res.status, code);
}

// ---- routing -------------------------------------------------------------------------

function hashFor(parts, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(key, value);
  }
  const qs = query.toString();
  return `#/${parts.map(enc).join('/')}${qs ? `?${qs}` : ''}`;
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = Object.fromEntries(new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)));
  const parts = path.split('/').filter(Boolean).map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  return { name: parts[0] || '', args: parts.slice(1), params };
}

const clientHash = (type, id, params = {}) => hashFor(['client', type, id], params);

// Filters and periods replace the current history entry instead of adding one, so Close
// and the browser's Back leave a screen rather than step through its settings.
function setParams(patch) {
  const route = parseHash();
  history.replaceState(history.state, '', hashFor([route.name, ...route.args], { ...route.params, ...patch }));
}

// How many dashboard screens lie behind this one in the tab's history. It is kept in
// history.state, so it survives a reload, and lets Close step back only into the dashboard.
let depth = null;

function trackDepth() {
  const known = history.state && Number.isInteger(history.state.depth);
  if (known) {
    depth = history.state.depth;
  } else {
    depth = depth === null ? 0 : depth + 1;
    history.replaceState({ depth }, '');
  }
}

// Navigation marks the page not ready at once: the hashchange that mounts the next page
// comes a task later, and until then "ready" would still describe the page being left.
function go(hash) {
  if (hash === location.hash) return;
  document.body.dataset.ready = '0';
  location.hash = hash;
}

function goBack(fallback) {
  if (depth > 0) {
    document.body.dataset.ready = '0';
    history.back();
  } else {
    go(fallback);
  }
}

// ---- page harness and live refresh -----------------------------------------------------

let current = null; // the page on screen: { root, load, render, seq, inflight, data }
let mutations = 0; // changes in flight: refreshes wait for them

const NAV_FOR = { overview: 'nav-overview', apis: 'nav-apis', api: 'nav-apis', attacks: 'nav-attacks', ioas: 'nav-attacks', lists: 'nav-lists', users: 'nav-users' };

function mount() {
  trackDepth();
  let route = parseHash();
  if (!PAGES[route.name]) {
    history.replaceState(history.state, '', '#/overview');
    route = parseHash();
  }
  closeMenus();
  clearError();
  hideNotice();
  for (const a of document.querySelectorAll('.nav a')) {
    const on = a.id === NAV_FOR[route.name];
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const page = { ...PAGES[route.name](route), seq: 0, inflight: 0, data: null };
  current = page;
  $('view').replaceChildren(page.root);
  window.scrollTo(0, 0);
  reload(page, true);
}

const isLatest = (page, seq) => page === current && seq === page.seq;

// Fetches the page's data and renders it, unless a newer load or another page came since.
// `reset` marks the page not ready until then (navigation, a new filter, a change).
async function reload(page = current, reset = false) {
  const seq = ++page.seq;
  if (reset) document.body.dataset.ready = '0';
  page.inflight++;
  try {
    const data = await page.load();
    if (!isLatest(page, seq)) return;
    page.data = data;
    keepScroll(() => {
      page.render(data);
      drawCharts();
    });
    clearError('load');
  } catch (err) {
    if (isLatest(page, seq)) {
      showError(err, 'load');
      for (const el of page.root.querySelectorAll('.loading')) el.textContent = 'Could not load this page: see the message above.';
    }
  } finally {
    page.inflight--;
    if (isLatest(page, seq)) document.body.dataset.ready = '1';
  }
}

// Renders the last data again after a purely local change (a list expanded).
function rerender() {
  if (!current || !current.data) return;
  keepScroll(() => {
    current.render(current.data);
    drawCharts();
  });
}

function busy() {
  if (document.querySelector('.menu:not([hidden])')) return true;
  const active = document.activeElement;
  return Boolean(active && active.closest && active.closest('[data-pause-refresh]'));
}

function tick() {
  if (!current || current.inflight || mutations || document.hidden || busy()) return;
  reload(current);
}

// Runs a change against the server, reports it, and reloads the page.
async function mutate(work, message) {
  mutations++;
  document.body.dataset.ready = '0';
  try {
    const result = await work();
    clearError('action');
    notice(typeof message === 'function' ? message(result) : message);
  } catch (err) {
    showError(err);
  } finally {
    mutations--;
  }
  if (current) await reload(current, true);
}

// ---- banners and menus -----------------------------------------------------------------

let errorKind = null; // 'load' errors clear on the next good load; 'action' ones stay

function showError(err, kind = 'action') {
  if (leaving) return;
  $('error-text').textContent = err instanceof Error ? err.message : String(err);
  $('error').hidden = false;
  errorKind = kind;
}

function clearError(kind) {
  if (kind && kind !== errorKind) return;
  $('error').hidden = true;
  errorKind = null;
}

let noticeTimer = 0;

function notice(text) {
  $('notice').textContent = text;
  $('notice').hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(hideNotice, 4000);
}

function hideNotice() {
  $('notice').hidden = true;
}

// A "⋯" button with a small menu. items: [label, action, { action: id, disabled }].
function rowMenu(label, items) {
  const menu = h('div', { class: 'menu', role: 'menu', hidden: true },
    items.map(([text, run, opts = {}]) => h('button', {
      type: 'button', class: 'menu-item', role: 'menuitem', 'data-action': opts.action, disabled: opts.disabled,
      onclick: () => {
        closeMenus();
        run();
      },
    }, text)));
  const button = h('button', {
    type: 'button', class: 'btn btn-icon', 'aria-haspopup': 'menu', 'aria-expanded': 'false',
    'aria-label': label, 'data-test': 'menu',
    onclick: () => {
      const opening = menu.hidden;
      closeMenus();
      if (opening) openMenu(button, menu);
    },
  }, '⋯');
  // Clicks inside stay inside: they must not toggle the row underneath.
  return h('div', { class: 'menu-wrap', onclick: (e) => e.stopPropagation() }, button, menu);
}

// Menus are fixed to the viewport, so a table's scroll box cannot clip them; one that
// would run off the bottom opens upwards. Scrolling closes them (see initApp).
function openMenu(button, menu) {
  menu.hidden = false;
  button.setAttribute('aria-expanded', 'true');
  const r = button.getBoundingClientRect();
  const below = r.bottom + 4;
  const top = below + menu.offsetHeight > window.innerHeight ? r.top - 4 - menu.offsetHeight : below;
  menu.style.top = `${Math.max(4, top)}px`;
  menu.style.left = `${Math.max(4, r.right - menu.offsetWidth)}px`;
}

function closeMenus() {
  for (const menu of document.querySelectorAll('.menu:not([hidden])')) {
    menu.hidden = true;
    const button = menu.previousElementSibling;
    if (button) button.setAttribute('aria-expanded', 'false');
  }
}

// ---- widgets -------------------------------------------------------------------------

function pageRoot(name, ...children) {
  return h('section', { class: 'page', 'data-page': name }, children);
}

function pageHead(title, sub, actions, crumbs) {
  return h('div', { class: 'page-head' },
    h('div', { class: 'title' }, crumbs, h('h1', {}, title), sub ? h('div', { class: 'muted break' }, sub) : null),
    actions ? h('div', { class: 'actions' }, actions) : null);
}

function card(label, value, sub, cls = '', test = '') {
  return h('div', { class: `card ${cls}`, 'data-stat': test || null },
    h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);
}

function panel(title, note, ...content) {
  return h('section', { class: 'panel' },
    h('div', { class: 'panel-head' }, h('h2', {}, title), note ? h('span', { class: 'muted' }, note) : null), content);
}

const empty = (text) => h('div', { class: 'empty' }, text);

// Buttons of which one is active, marked by class `active` and data-<attr>="<value>".
function segmented(label, attr, options, active, onPick) {
  const group = h('div', { class: 'seg', role: 'group', 'aria-label': label });
  for (const [value, text] of options) {
    group.append(h('button', {
      type: 'button', class: 'seg-btn', [`data-${attr}`]: value,
      onclick: () => {
        markActive(group, attr, value);
        onPick(value);
      },
    }, text));
  }
  markActive(group, attr, active);
  return group;
}

function markActive(group, attr, value) {
  for (const button of group.children) {
    const on = button.getAttribute(`data-${attr}`) === value;
    button.classList.toggle('active', on);
    button.setAttribute('aria-pressed', String(on));
  }
}

function select(id, options, value, onChange) {
  const el = h('select', { id, onchange: () => onChange(el.value) },
    options.map(([v, text]) => h('option', { value: v }, text)));
  el.value = value;
  return el;
}

const field = (label, control, cls = '') => h('label', { class: `field ${cls}` }, label, control);

// Horizontal bars for {value, count} lists. `href(value)` links a value; beyond `limit`
// rows a toggle (`onMore`) shows them all.
function barList(items, { cls = '', emptyText = 'Nothing in this period', href, limit = 10, expanded = false, onMore } = {}) {
  if (!items || !items.length) return empty(emptyText);
  const max = Math.max(1, ...items.map((item) => item.count));
  const shown = expanded ? items : items.slice(0, limit);
  const list = h('div', { class: `bars ${cls}` }, shown.map((item) => {
    const target = href ? href(item.value) : null;
    const text = display(item.value);
    const label = target ? h('a', { href: target, title: text }, text) : h('span', { title: text }, text);
    const fill = h('div', { class: 'bar-fill' });
    fill.style.width = `${(item.count / max) * 100}%`;
    return h('div', { class: 'bar-row', 'data-value': item.value },
      h('div', { class: 'bar-label' }, label), h('div', { class: 'bar-count' }, fmt(item.count)),
      h('div', { class: 'bar-track' }, fill));
  }));
  if (items.length <= limit || !onMore) return list;
  return h('div', {}, list, h('button', { type: 'button', class: 'btn btn-small btn-ghost more', onclick: onMore },
    expanded ? 'Show fewer' : `Show all ${items.length}`));
}

// One activity pane: a titled bar list, expandable, noting values lost to the memory cap.
function activityPane(key, title, items, { open, overflow, href, cls, emptyText }) {
  const lost = overflow && overflow[key];
  return h('section', { class: 'panel pane', 'data-pane': key },
    h('div', { class: 'panel-head' }, h('h3', {}, title), h('span', { class: 'muted' }, items.length ? fmt(sumCounts(items)) : '')),
    barList(items, {
      cls, emptyText, href, expanded: open.has(key),
      onMore: () => {
        if (open.has(key)) open.delete(key);
        else open.add(key);
        rerender();
      },
    }),
    lost ? h('div', { class: 'overflow-note' }, `${fmt(lost)} more not kept (memory cap)`) : null);
}

// ---- charts (inline SVG) ---------------------------------------------------------------

// A chart is drawn at its box's width in pixels (one SVG unit per pixel, so text keeps its
// size), once the box is in the page, and again when the window is resized.
const chartDraws = new WeakMap();

function chartBox(draw) {
  const box = h('div', { class: 'chart-box' });
  chartDraws.set(box, draw);
  return box;
}

function drawCharts(onlyResized = false) {
  for (const box of $('view').querySelectorAll('.chart-box')) {
    const width = Math.max(280, Math.floor(box.clientWidth));
    if (onlyResized && box.dataset.width === String(width)) continue;
    box.dataset.width = String(width);
    box.replaceChildren(chartDraws.get(box)(width));
  }
}

// An axis maximum at or above v, split into steps of 1, 2 or 5 × 10^k (whole numbers).
function yScale(v) {
  const raw = Math.max(v, 1) / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw));
  return { max: step * Math.max(1, Math.ceil(v / step)), step };
}

function bucketLabel(bucket, buckets) {
  const size = bucket.end - bucket.start;
  const span = buckets[buckets.length - 1].end - buckets[0].start;
  if (size >= DAY_MS) return (bucket.utc ? utcDayFormat : dayFormat).format(bucket.start);
  return span <= DAY_MS + HOUR_MS ? timeFormat.format(bucket.start) : dayHourFormat.format(bucket.start);
}

// Lines over time buckets. series: [{ label, cls, values, axis: 'left'|'right', area }].
function lineChart(buckets, series, { width, height = 230, label = 'Chart' } = {}) {
  const n = buckets.length;
  if (!n) return empty('No data in this period');
  const hasRight = series.some((s) => s.axis === 'right');
  const left = 46;
  const right = hasRight ? 40 : 14;
  const top = 10;
  const bottom = 26;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const peak = (axis) => Math.max(0, ...series.filter((s) => (s.axis || 'left') === axis).flatMap((s) => s.values));
  const scales = { left: yScale(peak('left')), right: yScale(peak('right')) };
  const x = (i) => left + (n === 1 ? plotW / 2 : (i / (n - 1)) * plotW);
  const y = (v, axis = 'left') => top + plotH - (v / scales[axis].max) * plotH;
  const nodes = [];

  for (let v = 0; v <= scales.left.max; v += scales.left.step) {
    nodes.push(svg('line', { class: 'grid-line', x1: left, x2: width - right, y1: y(v), y2: y(v) }),
      svg('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmtCompact(v)));
  }
  if (hasRight) {
    for (let v = 0; v <= scales.right.max; v += scales.right.step) {
      nodes.push(svg('text', { x: width - right + 6, y: y(v, 'right') + 4 }, fmtCompact(v)));
    }
  }
  const every = Math.max(1, Math.ceil(n / 7));
  for (let i = 0; i < n; i += every) {
    nodes.push(svg('text', { x: x(i), y: height - 8, 'text-anchor': 'middle' }, bucketLabel(buckets[i], buckets)));
  }
  nodes.push(svg('line', { class: 'axis-line', x1: left, x2: width - right, y1: top + plotH, y2: top + plotH }));

  for (const s of series) {
    const points = s.values.map((v, i) => [x(i).toFixed(1), y(v, s.axis || 'left').toFixed(1)]);
    const line = points.map(([px, py], i) => `${i ? 'L' : 'M'}${px},${py}`).join('');
    if (s.area) {
      nodes.push(svg('path', { class: `area ${s.cls}`, d: `${line}L${x(n - 1)},${top + plotH}L${x(0)},${top + plotH}Z` }));
    }
    nodes.push(svg('path', { class: `series ${s.cls}`, d: line, 'data-series': s.label }));
    if (n <= 31) points.forEach(([px, py]) => nodes.push(svg('circle', { class: `dot ${s.cls}`, cx: px, cy: py, r: 2.5 })));
  }

  // Hover targets: one per bucket, with its values as a tooltip.
  const slot = plotW / Math.max(n - 1, 1);
  buckets.forEach((bucket, i) => {
    const tip = [fmtRange(bucket.start, bucket.end), ...series.map((s) => `${s.label}: ${fmt(s.values[i])}`)].join('\n');
    nodes.push(svg('rect', { class: 'hit', x: x(i) - slot / 2, y: top, width: slot, height: plotH }, svg('title', {}, tip)));
  });
  return svg('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label }, nodes);
}

function legend(series) {
  return h('div', { class: 'legend' }, series.map((s) => h('span', {},
    h('i', { class: `swatch ${s.cls}` }), s.label, s.total !== undefined ? h('b', {}, fmt(s.total)) : null)));
}

// Vertical bars for a few categories: items [{ value, count }].
function columnChart(items, { width, cls = 'c-req', height = 210, label = 'Chart', emptyText = 'Nothing to show' } = {}) {
  if (!items.length || items.every((item) => !item.count)) return empty(emptyText);
  const left = 40;
  const right = 8;
  const top = 18;
  const bottom = 28;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const { max, step } = yScale(Math.max(...items.map((item) => item.count)));
  const y = (v) => top + plotH - (v / max) * plotH;
  const band = plotW / items.length;
  const barW = Math.min(64, band * 0.62);
  const maxChars = Math.max(4, Math.floor(band / 7));
  const nodes = [];
  for (let v = 0; v <= max; v += step) {
    nodes.push(svg('line', { class: 'grid-line', x1: left, x2: width - right, y1: y(v), y2: y(v) }),
      svg('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmtCompact(v)));
  }
  items.forEach((item, i) => {
    const cx = left + i * band + band / 2;
    const name = display(item.value);
    const short = name.length > maxChars ? `${name.slice(0, maxChars - 1)}…` : name;
    nodes.push(
      svg('rect', { class: `bar ${cls}`, 'data-value': item.value, x: cx - barW / 2, y: y(item.count), width: barW, height: top + plotH - y(item.count), rx: 3 },
        svg('title', {}, `${name}: ${fmt(item.count)}`)),
      svg('text', { class: 'bar-value', x: cx, y: y(item.count) - 5, 'text-anchor': 'middle' }, fmt(item.count)),
      svg('text', { x: cx, y: height - 8, 'text-anchor': 'middle' }, short, svg('title', {}, name)));
  });
  nodes.push(svg('line', { class: 'axis-line', x1: left, x2: width - right, y1: top + plotH, y2: top + plotH }));
  return svg('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label }, nodes);
}

// ---- data helpers ----------------------------------------------------------------------

// Requests and IoAs over time from the `series` of activity reports of one period, summed
// over the reports (the overview adds up its APIs): a point per hour, or for month and
// 6 months per UTC day, the server's day buckets (it keeps hours for the last 8 days only).
// A bucket is drawn when it starts inside the period; those without traffic are absent
// from a series and count 0. No buckets (the chart's empty state) when an answer has no
// series (an older server). Without reports (no APIs), the period ends now.
function activityChart(reports, period, now = Date.now()) {
  if (reports.some((r) => !Array.isArray(r.series))) return { buckets: [], requests: [], ioas: [] };
  const step = period === 'month' || period === '6months' ? DAY_MS : HOUR_MS;
  const from = reports.length ? Math.min(...reports.map((r) => Date.parse(r.period.start))) : now - PERIOD_DAYS[period] * DAY_MS;
  const to = reports.length ? Math.max(...reports.map((r) => Date.parse(r.period.end))) : now;
  const first = Math.ceil(from / step) * step;
  const buckets = [];
  for (let t = first; t <= to; t += step) buckets.push({ start: new Date(t), end: new Date(t + step), utc: step === DAY_MS });
  const requests = buckets.map(() => 0);
  const ioas = buckets.map(() => 0);
  for (const report of reports) {
    for (const point of report.series) {
      const i = Math.floor((Date.parse(point.start) - first) / step);
      if (!(i >= 0 && i < buckets.length)) continue;
      requests[i] += point.requests || 0;
      ioas[i] += point.ioas || 0;
    }
  }
  return { buckets, requests, ioas };
}

// Requests and IoAs per minute from API activity answers with `series=minute` (every minute
// of the last hour is present in each), summed over the reports.
function minuteChart(reports) {
  const byStart = new Map();
  for (const report of reports) {
    for (const point of report.series || []) {
      const t = Date.parse(point.start);
      const e = byStart.get(t) || { requests: 0, ioas: 0 };
      e.requests += point.requests || 0;
      e.ioas += point.ioas || 0;
      byStart.set(t, e);
    }
  }
  const starts = [...byStart.keys()].sort((a, b) => a - b);
  return {
    buckets: starts.map((t) => ({ start: new Date(t), end: new Date(t + 60e3) })),
    requests: starts.map((t) => byStart.get(t).requests),
    ioas: starts.map((t) => byStart.get(t).ioas),
  };
}

// Whether the overview should draw the last hour per minute: a young instance, or one whose
// traffic of the last day all lies in the last two hours (a 24-hour chart would be a flat
// line with one spike at its end).
function recentOnly(chart, started, now) {
  if (now - Date.parse(started) < 2 * HOUR_MS) return true;
  const busy = chart.buckets.filter((_, i) => chart.requests[i] > 0);
  return busy.length > 0 && busy.every((b) => now - b.start.getTime() <= 2 * HOUR_MS);
}

// The lines of a "Requests and IoAs" chart.
const requestLines = (chart) => [
  { label: 'Requests', cls: 'c-req', values: chart.requests, area: true, total: sum(chart.requests) },
  { label: 'IoAs', cls: 'c-ioa', values: chart.ioas, axis: 'right', total: sum(chart.ioas) },
];

// Samples of one metric from Prometheus text: [{ labels, value }].
function promSamples(text, name) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = {};
    for (const [, key, value] of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
    samples.push({ labels, value: Number(m[3]) });
  }
  return samples;
}

const promSum = (samples, label, value) => samples.filter((s) => s.labels[label] === value).reduce((n, s) => n + s.value, 0);

// A deny/allow list answer as rows: [{ type, value, name?, source, added, expires, reason }].
function listRows(list) {
  return CLIENT_TYPES.flatMap(([type]) => (list[LIST_KEYS[type]] || []).map((entry) => ({ type, ...entry })));
}

function listChange(type, entries) {
  return { [LIST_KEYS[type]]: entries.map((e) => (NAMED_TYPES.has(type) ? { name: e.name, value: e.value } : e.value)) };
}

// Removes a client's own deny-list entries (cookies and API keys under any name).
async function unblockClient(type, id) {
  let entries = [{ value: id }];
  if (NAMED_TYPES.has(type)) {
    const list = await getJson('/v4/ase/blacklist');
    entries = (list[LIST_KEYS[type]] || []).filter((e) => e.value === id);
  }
  const result = entries.length ? await call('DELETE', '/v4/ase/blacklist', listChange(type, entries)) : { removed: 0 };
  if (!result.removed) {
    throw new ApiError(`${TYPE_LABEL[type]} ${id} has no entry of its own on the blocklist (a range or another identifier may cover it)`);
  }
  return result;
}

const markReviewed = (type, id, reviewed) =>
  call('POST', '/v5/ase/attacks/review', { client_type: type, client_id: id, reviewed });

// ---- page: overview --------------------------------------------------------------------

function overviewPage() {
  const body = h('div', { class: 'stack' }, h('div', { class: 'loading' }, 'Loading…'));
  const root = pageRoot('overview', pageHead('Overview', 'The last 24 hours, refreshed live'), body);

  async function load() {
    const now = Date.now();
    const [apis, attacks, deny, status, prom] = await Promise.all([
      getJson('/v4/ase/api'), getJson('/v4/abs/attack'), getJson('/v4/ase/blacklist'),
      getJson('/v4/ase/status'), call('GET', '/metrics', undefined, 'text'),
    ]);
    const activities = await Promise.all(apis.apis.map((a) => getJson(`/v5/ase/apis/${enc(a.api_id)}/activity?period=day`)));
    let chart = activityChart(activities, 'day', now);
    const perMinute = chart.buckets.length > 0 && recentOnly(chart, status.started, now);
    if (perMinute) {
      chart = minuteChart(await Promise.all(apis.apis.map((a) =>
        getJson(`/v5/ase/apis/${enc(a.api_id)}/activity?period=day&series=minute`))));
    }
    const recent = attacks.attacks.filter((a) => Date.parse(a.detected_at) >= now - DAY_MS);
    return { chart, perMinute, recent, activities, deny, status, decisions: promSamples(prom, 'enforcer_decisions_total') };
  }

  function render(d) {
    const series = requestLines(d.chart);
    // The chart's total, so card and chart agree; without series (an older server) the reports'.
    const total = d.chart.buckets.length && !d.perMinute ? series[0].total : sum(d.activities.map((a) => a.requests));
    const wouldBlock = promSum(d.decisions, 'decision', 'would_block');
    const s = d.status;
    const store = s.persistence.store === 'none' ? 'none' : s.persistence.healthy ? 'healthy' : 'failing';
    const topApis = d.activities.map((a) => ({ value: a.api, count: a.requests })).sort((a, b) => b.count - a.count).slice(0, 8);
    const denyByType = CLIENT_TYPES.map(([type, label]) => ({ value: label, count: (d.deny[LIST_KEYS[type]] || []).length }));
    body.replaceChildren(
      h('div', { class: 'status-strip' },
        h('span', {}, 'Mode ', h('b', {}, s.mode)), h('span', {}, 'Firewall ', h('b', {}, s.firewall)),
        h('span', {}, 'Connections ', h('b', {}, fmt(s.connections))), h('span', {}, 'Store ', h('b', {}, store)),
        h('span', {}, 'Started ', h('b', {}, fmtTime(s.started))), h('span', {}, 'Version ', h('b', {}, s.version))),
      h('div', { class: 'cards' },
        card('Requests, 24 h', fmt(total), plural(d.activities.length, 'API'), '', 'requests'),
        card('Allowed', fmt(promSum(d.decisions, 'decision', 'allow')), 'since start', 'ok', 'allowed'),
        card('Blocked', fmt(promSum(d.decisions, 'decision', 'block')), wouldBlock ? `since start · ${fmt(wouldBlock)} would block` : 'since start', 'danger', 'blocked'),
        card('IoAs, 24 h', fmt(d.recent.length), 'indicators of attack', d.recent.length ? 'danger' : '', 'ioas'),
        card('Blocklist', fmt(s.attack_list.deny), `allow list ${fmt(s.attack_list.allow)}`, '', 'deny')),
      panel('Requests and IoAs', d.perMinute ? 'last hour, per minute' : 'last 24 hours, per hour', legend(series),
        chartBox((width) => lineChart(d.chart.buckets, series, { width, label: d.perMinute ? 'Requests and IoAs per minute' : 'Requests and IoAs per hour' }))),
      h('div', { class: 'grid grid-2' },
        panel('Top APIs by requests', 'last 24 hours',
          chartBox((width) => columnChart(topApis, { width, label: 'Requests per API', emptyText: 'No requests in the last 24 hours' }))),
        panel('Blocklist by client type', `${fmt(s.attack_list.deny)} entries`,
          chartBox((width) => columnChart(denyByType, { width, cls: 'c-ioa', label: 'Blocklist entries per client type', emptyText: 'The blocklist is empty' })))),
      panel('Latest IoAs', 'last 24 hours', latestIoas(d.recent.slice(0, 8))));
  }

  return { root, load, render };
}

function latestIoas(attacks) {
  if (!attacks.length) return empty('No IoAs in the last 24 hours');
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Detected'), h('th', {}, 'IoA'), h('th', {}, 'Client'), h('th', {}, 'API'), h('th', {}, 'Detail'))),
    h('tbody', {}, attacks.map((a) => h('tr', {},
      h('td', {}, fmtTime(a.detected_at)), h('td', {}, h('span', { class: 'badge badge-danger' }, a.name)),
      h('td', { class: 'id-cell break' }, h('span', { class: 'muted' }, `${TYPE_LABEL[a.client_type] || a.client_type} `),
        h('a', { class: 'mono', href: clientHash(a.client_type, a.client_id) }, a.client_id)),
      h('td', {}, h('a', { href: hashFor(['api', a.api]) }, a.api)), h('td', { class: 'muted' }, a.detail))))));
}

// ---- pages: APIs and one API -----------------------------------------------------------

function apisPage(route) {
  let period = periodOf(route.params);
  const body = h('div', { class: 'stack' }, h('div', { class: 'loading' }, 'Loading…'));
  const picker = segmented('Period', 'period', PERIODS, period, (p) => {
    period = p;
    setParams({ period });
    reload(current, true);
  });
  const root = pageRoot('apis', pageHead('APIs', 'Traffic per API definition', picker), body);

  async function load() {
    const apis = (await getJson('/v4/ase/api')).apis;
    const activities = await Promise.all(apis.map((a) => getJson(`/v5/ase/apis/${enc(a.api_id)}/activity?period=${period}`)));
    return { apis, activities };
  }

  function render({ apis, activities }) {
    if (!apis.length) {
      body.replaceChildren(empty('No APIs are defined: add one with `enforcer api add`'));
      return;
    }
    const link = (name) => hashFor(['api', name], { period });
    const ranked = activities.map((a) => ({ value: a.api, count: a.requests })).sort((a, b) => b.count - a.count);
    body.replaceChildren(
      panel('Requests by API', `${fmt(sumCounts(ranked))} requests`,
        barList(ranked.filter((r) => r.count), { href: link, limit: 20, emptyText: 'No requests in this period' })),
      h('section', { class: 'panel panel-flush' }, h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['API', 'URL', 'Host', 'Servers', 'Blocking'].map((t) => h('th', {}, t)),
          ['Requests', 'Errors', 'IoAs'].map((t) => h('th', { class: 'num' }, t)))),
        h('tbody', {}, apis.map((api, i) => {
          const a = activities[i];
          return h('tr', { 'data-api': api.api_id },
            h('td', {}, h('a', { href: link(api.api_id) }, api.api_id)), h('td', { class: 'mono' }, api.url),
            h('td', {}, api.hostname), h('td', { class: 'mono' }, api.servers.join(', ') || '—'),
            h('td', {}, h('span', { class: `badge ${api.enable_blocking ? 'badge-accent' : ''}` }, api.enable_blocking ? 'blocking' : 'monitoring')),
            h('td', { class: 'num' }, fmt(a.requests)), h('td', { class: 'num' }, fmt(sumCounts(a.panes.error_codes))),
            h('td', { class: 'num' }, fmt(sumCounts(a.panes.ioas))));
        }))))));
  }

  return { root, load, render };
}

const API_PANES = [
  ['ioas', 'IoAs', 'No IoAs in this period', 'c-ioa'],
  ['error_codes', 'Error Codes', 'No error responses in this period', 'c-err'],
  ['tokens', 'Tokens', 'No tokens seen in this period', '', 'token'],
  ['users', 'Users', 'No user names seen in this period', '', 'username'],
  ['ip_addresses', 'IP Addresses', 'No requests in this period', '', 'ip'],
  ['device_types', 'Device Types', 'No requests in this period'],
  ['endpoints', 'Endpoints', 'No requests in this period'],
];

function apiPage(route) {
  const name = route.args[0] || '';
  let period = periodOf(route.params);
  const open = new Set();
  const body = h('div', { class: 'stack' }, h('div', { class: 'loading' }, 'Loading…'));
  const picker = segmented('Period', 'period', PERIODS, period, (p) => {
    period = p;
    setParams({ period });
    reload(current, true);
  });
  const crumbs = h('div', { class: 'crumbs' }, h('a', { href: '#/apis' }, 'APIs'), h('span', {}, name));
  const root = pageRoot('api', pageHead(name, 'API activity', picker, crumbs), body);

  async function load() {
    const now = Date.now();
    const from = new Date(now - PERIOD_DAYS[period] * DAY_MS).toISOString();
    const to = new Date(now).toISOString();
    const [activity, metrics] = await Promise.all([
      getJson(`/v5/ase/apis/${enc(name)}/activity?period=${period}`),
      getJson(`/v4/abs/metrics?api=${enc(name)}&earlier_date=${enc(from)}&later_date=${enc(to)}`),
    ]);
    return { activity, summary: metrics.req_resp_summary, chart: activityChart([activity], period, now) };
  }

  function render(d) {
    const s = d.summary;
    const series = requestLines(d.chart);
    body.replaceChildren(
      h('div', { class: 'cards' },
        card('Requests', fmt(s.total_requests), s.api_url, '', 'requests'),
        card('Success (2xx)', fmt(s.success), pct(s.success, s.total_requests), 'ok', 'success'),
        card('Sessions', fmt(s.sessions), `${fmt(s.no_sessions)} requests without one`, '', 'sessions'),
        card('Most popular method', s.most_popular_method || '—', null, '', 'method'),
        card('Most popular device', s.most_popular_device || '—', null, '', 'device')),
      panel('Requests and IoAs', fmtRange(d.activity.period.start, d.activity.period.end), legend(series),
        chartBox((width) => lineChart(d.chart.buckets, series, { width, label: `Requests and IoAs of ${name}` }))),
      h('div', { class: 'grid grid-2' },
        panel('Most popular IPs', 'top 3', s.most_popular_ips.length
          ? h('ul', { class: 'ip-list' }, s.most_popular_ips.map((ip) => h('li', {}, h('a', { class: 'mono', href: clientHash('ip', ip) }, ip))))
          : empty('No requests in this period')),
        panel('Servers', 'requests per backend',
          barList(s.servers.map((srv) => ({ value: srv.server, count: srv.count })), { emptyText: 'No request reached a server in this period' }))),
      h('div', { class: 'grid grid-3' }, API_PANES.map(([key, title, emptyText, cls, clientType]) =>
        activityPane(key, title, d.activity.panes[key] || [], {
          open, overflow: d.activity.overflow, cls, emptyText,
          href: clientType ? (value) => clientHash(clientType, value) : null,
        }))));
  }

  return { root, load, render };
}

// ---- page: client activity -------------------------------------------------------------

// The PingIntelligence dashboard's eight panes, in its order and with its titles.
const CLIENT_PANES = [
  ['ioas', 'IoAs', 'No IoAs in this period', 'c-ioa'],
  ['error_codes', 'Error Codes', 'No error responses in this period', 'c-err'],
  ['methods', 'Methods', 'No requests in this period'],
  ['apis', 'APIs', 'No APIs accessed in this period'],
  ['users', 'User', 'No user names seen in this period'],
  ['device_types', 'Device Types', 'No devices seen in this period'],
  ['endpoints', 'Endpoints', 'No endpoints accessed in this period'],
  ['ip_addresses', 'IP Address', 'No IP addresses seen in this period'],
];

// Where a pane's values lead: another client, or an API.
const PANE_LINKS = {
  apis: (value) => hashFor(['api', value]),
  users: (value) => clientHash('username', value),
  ip_addresses: (value) => clientHash('ip', value),
};

function clientPage(route) {
  const [type = '', id = ''] = route.args;
  const from = route.params.from || '';
  let period = periodOf(route.params);
  const open = new Set();
  const fromBlocklist = from === 'blocklist';

  const crumbs = fromBlocklist
    ? h('div', { class: 'crumbs' }, h('a', { id: 'crumb-blocklist', href: '#/lists' }, 'Blocklist'), h('span', {}, 'Client activity'))
    : from === 'attacks'
      ? h('div', { class: 'crumbs' }, h('a', { id: 'crumb-attacks', href: '#/attacks' }, 'Attacks'), h('span', {}, 'Client activity'))
      : from === 'ioas'
        ? h('div', { class: 'crumbs' }, h('a', { id: 'crumb-attacks', href: '#/attacks' }, 'Attacks'),
          h('a', { id: 'crumb-ioas', href: ioasHash(type, id) }, 'IoAs'), h('span', {}, 'Client activity'))
        : null;
  const actions = [
    fromBlocklist ? h('button', { id: 'back', type: 'button', class: 'btn', onclick: () => go('#/lists') }, '← Back') : null,
    h('button', { id: 'close', type: 'button', class: 'btn', onclick: () => goBack('#/overview') }, 'Close'),
  ];
  const title = h('span', {}, `${TYPE_LABEL[type] || type} `, h('span', { class: 'mono' }, id));
  const picker = segmented('Period', 'period', PERIODS, period, (p) => {
    period = p;
    setParams({ period });
    reload(current, true);
  });
  const summary = h('div', { class: 'summary' });
  const panes = h('div', { class: 'grid grid-4' });
  const root = pageRoot('client',
    pageHead('Client activity', title, actions, crumbs),
    h('section', { class: 'panel' }, h('div', { class: 'page-head' }, summary, picker)),
    panes);

  async function load() {
    try {
      return await getJson(`/v5/ase/clients/${enc(type)}/${enc(id)}/activity?period=${period}`);
    } catch (err) {
      // A client never seen (a deny-list entry that never called) is a state, not a failure.
      if (err.status === 404 && err.code === 'unknown_client') return { unknown: err.message };
      throw err;
    }
  }

  function render(d) {
    const known = !d.unknown;
    const ioaCount = known ? sumCounts(d.panes.ioas) : 0;
    summary.replaceChildren(
      h('div', {}, h('div', { class: 'big', id: 'apis-accessed' }, fmt(known ? d.apis_accessed : 0)), h('div', { class: 'cap' }, 'APIs accessed')),
      h('div', {}, h('div', { class: 'big', id: 'client-requests' }, fmt(known ? d.requests : 0)), h('div', { class: 'cap' }, 'Requests')),
      h('div', {}, h('div', { class: 'big' }, fmt(ioaCount)), h('div', { class: 'cap' }, 'IoAs')),
      h('div', { class: 'chips' },
        known && d.client.deny_listed ? h('span', { class: 'badge badge-danger', id: 'deny-listed' }, 'on the blocklist') : null,
        h('span', { class: 'muted' }, known ? fmtRange(d.period.start, d.period.end) : d.unknown)));
    panes.replaceChildren(...CLIENT_PANES.map(([key, paneTitle, emptyText, cls]) =>
      activityPane(key, paneTitle, known ? d.panes[key] || [] : [], {
        open, overflow: known ? d.overflow : null, cls, emptyText, href: PANE_LINKS[key] || null,
      })));
  }

  return { root, load, render };
}

// ---- page: attack management -----------------------------------------------------------

const humanize = (name) => name.charAt(0).toUpperCase() + name.slice(1).replace(/_/g, ' ');

function attacksPage(route) {
  const p = route.params;
  const state = {
    period: periodOf(p),
    type: p.type || '',
    client_type: oneOf(p.client_type, CLIENT_TYPES.map(([t]) => t), ''),
    api: p.api || '',
    search: p.search || '',
    reviewed: oneOf(p.reviewed, ['all', 'true', 'false'], 'all'),
    sort: oneOf(p.sort, ['time', 'count'], 'time'),
  };
  let searchTimer = 0;

  const apply = (patch) => {
    Object.assign(state, patch);
    setParams(patch);
    reload(current, true);
  };
  const apiSelect = select('f-api', [['', 'All APIs']], state.api, (api) => apply({ api }));
  const search = h('input', {
    id: 'f-search', type: 'search', placeholder: 'Client ID contains…', value: state.search, autocomplete: 'off',
    oninput: () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => apply({ search: search.value.trim() }), 300);
    },
  });
  const filters = h('form', { class: 'filters', id: 'attack-filters', onsubmit: (e) => e.preventDefault() },
    field('Period', segmented('Period', 'period', PERIODS, state.period, (period) => apply({ period }))),
    field('IoA type', select('f-type', [['', 'All types'], ...IOA_NAMES.map((n) => [n, humanize(n)])], state.type, (type) => apply({ type }))),
    field('Client type', select('f-client-type', [['', 'All clients'], ...CLIENT_TYPES], state.client_type, (t) => apply({ client_type: t }))),
    field('API', apiSelect),
    field('Search', search),
    field('Reviewed', select('f-reviewed', [['all', 'All'], ['false', 'Not reviewed'], ['true', 'Reviewed']], state.reviewed, (reviewed) => apply({ reviewed }))),
    field('Sort', select('f-sort', [['time', 'Latest first'], ['count', 'Most IoAs']], state.sort, (sort) => apply({ sort }))));
  const body = h('div', { class: 'stack' }, h('div', { class: 'loading' }, 'Loading…'));
  const root = pageRoot('attacks', pageHead('Attacks', 'Clients with indicators of attack (IoAs)'), h('section', { class: 'panel' }, filters), body);

  async function load() {
    const query = new URLSearchParams({ period: state.period, sort: state.sort, reviewed: state.reviewed });
    for (const key of ['type', 'client_type', 'api', 'search']) if (state[key]) query.set(key, state[key]);
    const [list, apis] = await Promise.all([getJson(`/v5/ase/attacks?${query}`), getJson('/v4/ase/api')]);
    return { list, apis: apis.apis.map((a) => a.api_id) };
  }

  // Keeps the API choices in step with the definitions without disturbing the selection.
  function fillApis(names) {
    const want = ['', ...names];
    const have = [...apiSelect.options].map((o) => o.value);
    if (want.join('\n') === have.join('\n')) return;
    apiSelect.replaceChildren(h('option', { value: '' }, 'All APIs'), names.map((n) => h('option', { value: n }, n)));
    if (state.api && !names.includes(state.api)) apiSelect.append(h('option', { value: state.api }, state.api));
    apiSelect.value = state.api;
  }

  // A row opens the client's IoAs screen, for the same period.
  const open = (a) => go(ioasHash(a.client_type, a.client_id, { period: state.period }));

  function render({ list, apis }) {
    fillApis(apis);
    const filtered = ['type', 'client_type', 'api', 'search'].some((k) => state[k]) || state.reviewed !== 'all';
    if (!list.attacks.length) {
      body.replaceChildren(empty(filtered ? 'No attacks match these filters' : 'No IoAs in this period'));
      return;
    }
    const rows = list.attacks.map((a) => h('tr', {
      class: 'clickable attack-row', tabindex: 0, title: 'Open this client\'s IoAs',
      'data-client-type': a.client_type, 'data-client-id': a.client_id,
      onclick: () => open(a),
      onkeydown: (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          open(a);
        }
      },
    },
      h('td', { class: 'id-cell break mono' }, a.client_id),
      h('td', {}, TYPE_LABEL[a.client_type] || a.client_type),
      h('td', { class: 'num' }, fmt(a.ioa_count)),
      h('td', {}, h('div', { class: 'chips' }, a.ioa_types.map((t) => h('span', { class: 'badge badge-danger', title: t.evidence ? `type ${t.type_id}: ${t.evidence}` : `type ${t.type_id}` }, `${t.type} × ${fmt(t.count)}`)))),
      h('td', {}, a.apis.join(', ')),
      h('td', {}, fmtTime(a.last_detected)),
      h('td', {}, h('div', { class: 'chips' },
        a.deny_listed ? h('span', { class: 'badge badge-danger' }, 'blocked') : null,
        h('span', { class: `badge ${a.reviewed ? 'badge-ok' : 'badge-warn'}` }, a.reviewed ? 'reviewed' : 'not reviewed'))),
      h('td', { class: 'actions' }, attackMenu(a))));
    body.replaceChildren(h('section', { class: 'panel panel-flush' },
      h('div', { class: 'panel-head' }, h('h2', {}, `${fmt(list.count)} ${list.count === 1 ? 'client' : 'clients'}`),
        h('span', { class: 'muted' }, fmtRange(list.period.start, list.period.end))),
      h('div', { class: 'table-wrap' }, h('table', { id: 'attacks' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Client ID'), h('th', {}, 'Type'), h('th', { class: 'num' }, 'IoAs'),
          h('th', {}, 'IoA types'), h('th', {}, 'APIs'), h('th', {}, 'Last detected'), h('th', {}, 'Status'), h('th', {}))),
        h('tbody', {}, rows)))));
  }

  return { root, load, render };
}

// The actions on an attacker: on its row in the list, and on its IoAs screen. `from` says
// where Client activity is opened from (its crumbs).
function attackMenu(a, from = 'attacks') {
  const label = `${TYPE_LABEL[a.client_type] || a.client_type} ${a.client_id}`;
  return rowMenu(`Actions for ${label}`, [
    ['Client activity', () => go(clientHash(a.client_type, a.client_id, { from })), { action: 'activity' }],
    ['Remove from deny list', () => mutate(() => unblockClient(a.client_type, a.client_id), `${label} removed from the blocklist`),
      { action: 'unblock', disabled: !a.deny_listed }],
    a.reviewed
      ? ['Mark not reviewed', () => mutate(() => markReviewed(a.client_type, a.client_id, false), `${label} marked not reviewed`), { action: 'review' }]
      : ['Mark reviewed', () => mutate(() => markReviewed(a.client_type, a.client_id, true), `${label} marked reviewed`), { action: 'review' }],
  ]);
}

// ---- page: one client's IoAs -----------------------------------------------------------

const ioasHash = (type, id, params = {}) => hashFor(['ioas', type, id], params);

// Detections per hour (day, week) or per UTC day (month, 6 months) over the period.
function ioaChart(detections, start, end, period) {
  const step = period === 'month' || period === '6months' ? DAY_MS : HOUR_MS;
  const first = Math.floor(Date.parse(start) / step) * step;
  const last = Date.parse(end);
  const buckets = [];
  for (let t = first; t <= last; t += step) buckets.push({ start: new Date(t), end: new Date(t + step), utc: step === DAY_MS });
  const counts = buckets.map(() => 0);
  for (const d of detections) {
    const i = Math.floor((Date.parse(d.detected_at) - first) / step);
    if (i >= 0 && i < counts.length) counts[i] += 1;
  }
  return { buckets, counts };
}

// As PingIntelligence's: a client's IoAs by type and over time, under a summary line whose
// menu leads to its client activity. Close goes back to where it was opened from.
function ioasPage(route) {
  const [type = '', id = ''] = route.args;
  let period = periodOf(route.params);
  const label = `${TYPE_LABEL[type] || type} ${id}`;
  const picker = segmented('Period', 'period', PERIODS, period, (p) => {
    period = p;
    setParams({ period });
    reload(current, true);
  });
  const crumbs = h('div', { class: 'crumbs' }, h('a', { id: 'crumb-attacks', href: '#/attacks' }, 'Attacks'), h('span', {}, 'IoAs'));
  const actions = [picker, h('button', { id: 'close', type: 'button', class: 'btn', onclick: () => goBack('#/attacks') }, 'Close')];
  const title = h('span', {}, `${TYPE_LABEL[type] || type} `, h('span', { class: 'mono' }, id));
  const summary = h('section', { class: 'panel summary-line', id: 'ioa-summary' });
  const body = h('div', { class: 'stack' }, h('div', { class: 'loading' }, 'Loading…'));
  const root = pageRoot('ioas', pageHead('IoAs', title, actions, crumbs), summary, body);

  async function load() {
    const query = new URLSearchParams({ period, client_type: type, search: id, reviewed: 'all' });
    const [list, log] = await Promise.all([getJson(`/v5/ase/attacks?${query}`), getJson('/v4/abs/attack')]);
    const entry = list.attacks.find((a) => a.client_type === type && a.client_id === id) || null;
    const detections = log.attacks.filter((d) => d.client_type === type && d.client_id === id);
    return { entry, period: list.period, detections };
  }

  function render({ entry, period: p, detections }) {
    const a = entry || { client_type: type, client_id: id, ioa_count: 0, ioa_types: [], apis: [], deny_listed: false, reviewed: false };
    const inPeriod = detections.filter((d) => {
      const t = Date.parse(d.detected_at);
      return t >= Date.parse(p.start) && t <= Date.parse(p.end);
    });
    summary.replaceChildren(h('div', { class: 'summary-row' },
      h('div', { class: 'summary' },
        h('div', {}, h('div', { class: 'big', id: 'ioa-count' }, fmt(a.ioa_count)), h('div', { class: 'cap' }, 'IoAs')),
        h('div', {}, h('div', { class: 'big' }, fmt(a.ioa_types.length)), h('div', { class: 'cap' }, 'IoA types')),
        h('div', {}, h('div', { class: 'big' }, fmt(a.apis.length)), h('div', { class: 'cap' }, a.apis.length === 1 ? 'API' : 'APIs')),
        h('div', { class: 'chips' },
          a.deny_listed ? h('span', { class: 'badge badge-danger' }, 'blocked') : null,
          h('span', { class: `badge ${a.reviewed ? 'badge-ok' : 'badge-warn'}` }, a.reviewed ? 'reviewed' : 'not reviewed'),
          h('span', { class: 'muted' }, entry
            ? `on ${a.apis.join(', ')} · detected ${fmtRange(a.first_detected, a.last_detected)}`
            : fmtRange(p.start, p.end)))),
      attackMenu(a, 'ioas')));
    if (!entry) {
      body.replaceChildren(empty(`No IoAs of ${label} in this period`));
      return;
    }
    const chart = ioaChart(inPeriod, p.start, p.end, period);
    const series = [{ label: 'IoAs', cls: 'c-ioa', values: chart.counts, area: true, total: sum(chart.counts) }];
    body.replaceChildren(
      h('div', { class: 'grid grid-2' },
        panel('IoAs by type', fmtRange(p.start, p.end),
          h('div', { 'data-pane': 'ioa-types' }, barList(a.ioa_types.map((t) => ({ value: t.type, count: t.count })), { cls: 'c-ioa' }))),
        panel('IoAs over time', inPeriod.length ? `${plural(inPeriod.length, 'detection')} kept` : null, legend(series),
          chartBox((width) => lineChart(chart.buckets, series, { width, label: `IoAs of ${label} over time` })))),
      panel('Detections', null, inPeriod.length
        ? h('div', { class: 'table-wrap' }, h('table', { id: 'detections' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Detected'), h('th', {}, 'IoA'), h('th', {}, 'API'), h('th', {}, 'Detail'))),
          h('tbody', {}, inPeriod.slice(0, 50).map((d) => h('tr', {},
            h('td', {}, fmtTime(d.detected_at)), h('td', {}, d.name), h('td', {}, d.api), h('td', { class: 'muted' }, d.detail))))))
        : empty('No detection of this client in this period is kept any more')));
  }

  return { root, load, render };
}

// ---- page: deny and allow lists --------------------------------------------------------

const TTLS = [['', 'Never'], ['900', '15 minutes'], ['3600', '1 hour'], ['86400', '1 day'], ['604800', '7 days'], ['2592000', '30 days']];

function listsPage(route) {
  let tab = oneOf(route.params.tab, ['deny', 'allow'], 'deny');
  let type = oneOf(route.params.type, ['all', ...CLIENT_TYPES.map(([t]) => t)], 'all');
  const endpoint = () => (tab === 'deny' ? '/v4/ase/blacklist' : '/v4/ase/whitelist');
  const listName = () => (tab === 'deny' ? 'blocklist' : 'allow list');

  const counts = { deny: h('span', { class: 'count' }), allow: h('span', { class: 'count' }) };
  const tabButton = (value, text) => h('button', {
    type: 'button', class: 'tab', id: `tab-${value}`, 'data-tab': value, role: 'tab',
    onclick: () => {
      tab = value;
      setParams({ tab });
      markTabs();
      reload(current, true);
    },
  }, text, counts[value]);
  const tabs = h('div', { class: 'tabs', role: 'tablist' }, tabButton('deny', 'Blocklist'), tabButton('allow', 'Allow list'));
  const markTabs = () => {
    for (const b of tabs.children) {
      b.classList.toggle('active', b.dataset.tab === tab);
      b.setAttribute('aria-selected', String(b.dataset.tab === tab));
    }
    submit.textContent = `Add to ${listName()}`;
  };
  const typeFilter = segmented('Client type', 'type', [['all', 'All'], ...CLIENT_TYPES], type, (t) => {
    type = t;
    setParams({ type: t === 'all' ? '' : t });
    rerender();
  });

  const addType = select('add-type', CLIENT_TYPES, 'ip', () => showName());
  const addName = h('input', { id: 'add-name', type: 'text', autocomplete: 'off' });
  const addValue = h('input', { id: 'add-value', type: 'text', autocomplete: 'off', required: true, placeholder: '203.0.113.7 or 10.0.0.0/8' });
  const addTtl = select('add-ttl', TTLS, '', () => {});
  const submit = h('button', { id: 'add-submit', type: 'submit', class: 'btn btn-primary' });
  const nameField = field('Name', addName);
  const showName = () => {
    const t = addType.value;
    nameField.hidden = !NAMED_TYPES.has(t);
    addName.required = NAMED_TYPES.has(t);
    addName.placeholder = t === 'cookie' ? 'JSESSIONID' : 'X-API-KEY';
    addValue.placeholder = { ip: '203.0.113.7 or 10.0.0.0/8', token: 'bearer token', cookie: 'cookie value', api_key: 'key value', username: 'user name' }[t];
  };
  const form = h('form', {
    id: 'add-form', class: 'add-form', 'data-pause-refresh': true,
    onsubmit: (e) => {
      e.preventDefault();
      addEntry();
    },
  }, field('Type', addType), nameField, field('Value', addValue, 'wide'), field('Expires after', addTtl), submit);
  showName();
  markTabs();

  function addEntry() {
    const t = addType.value;
    const entry = { name: addName.value.trim(), value: addValue.value.trim() };
    const change = { ...listChange(t, [entry]), ...(addTtl.value ? { ttl: addTtl.value } : {}) };
    const where = listName();
    mutate(async () => {
      const result = await call('POST', endpoint(), change);
      addValue.value = '';
      return result;
    }, (r) => (r && r.added ? `${TYPE_LABEL[t]} ${entry.value} added to the ${where}` : `${TYPE_LABEL[t]} ${entry.value} is already on the ${where}`));
  }

  function remove(row) {
    const where = listName();
    mutate(() => call('DELETE', endpoint(), listChange(row.type, [row])), `${TYPE_LABEL[row.type]} ${row.value} removed from the ${where}`);
  }

  const body = h('div', { class: 'stack' }, h('div', { class: 'loading' }, 'Loading…'));
  const root = pageRoot('lists',
    pageHead('Blocklist', 'Clients denied on every API that blocks, and clients always allowed'),
    tabs, h('section', { class: 'panel' }, form), typeFilter, body);

  async function load() {
    const [deny, allow] = await Promise.all([getJson('/v4/ase/blacklist'), getJson('/v4/ase/whitelist')]);
    return { deny: listRows(deny), allow: listRows(allow) };
  }

  function render(d) {
    counts.deny.textContent = fmt(d.deny.length);
    counts.allow.textContent = fmt(d.allow.length);
    const rows = d[tab].filter((r) => type === 'all' || r.type === type);
    if (!rows.length) {
      const what = type === 'all' ? '' : `${TYPE_LABEL[type]} `;
      body.replaceChildren(empty(tab === 'deny' ? `No ${what}entries on the blocklist` : `No ${what}entries on the allow list`));
      return;
    }
    body.replaceChildren(h('section', { class: 'panel panel-flush' }, h('div', { class: 'table-wrap' }, h('table', { id: `list-${tab}` },
      h('thead', {}, h('tr', {}, ['Type', 'Client ID', 'Source', 'Reason', 'Added', 'Expires', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.map((row) => listRow(row, tab, () => remove(row))))))));
  }

  return { root, load, render };
}

function listRow(row, tab, onRemove) {
  // A range is not a client: there is no activity to show for it.
  const linkable = !(row.type === 'ip' && row.value.includes('/'));
  const params = tab === 'deny' ? { from: 'blocklist' } : {};
  const value = linkable
    ? h('a', { class: 'mono client-link', href: clientHash(row.type, row.value, params) }, row.value)
    : h('span', { class: 'mono' }, row.value);
  return h('tr', { 'data-type': row.type, 'data-id': row.value },
    h('td', {}, TYPE_LABEL[row.type]),
    h('td', { class: 'id-cell break' }, row.name ? h('span', { class: 'muted' }, `${row.name} `) : null, value),
    h('td', {}, h('span', { class: `badge ${row.source === 'manual' ? '' : 'badge-warn'}` }, row.source)),
    h('td', { class: 'muted' }, row.reason || '—'),
    h('td', {}, fmtTime(row.added)),
    h('td', {}, row.expires ? fmtTime(row.expires) : 'Never'),
    h('td', { class: 'actions' }, h('button', {
      type: 'button', class: 'btn btn-small btn-danger', 'data-test': 'remove', 'data-id': row.value, 'data-type': row.type,
      onclick: onRemove,
    }, 'Remove')));
}

// ---- page: user activities ---------------------------------------------------------------

const RANGES = [['day', 'Last day'], ['week', '7 days'], ['month', '30 days'], ['6months', '6 months']];
const SAMPLES = [['HOUR', 'Hour'], ['DAY', 'Day'], ['WEEK', 'Week']];

// ISO 8601 of `ms` (unix milliseconds) in a fixed offset of `offsetMin` minutes.
function isoAt(ms, offsetMin) {
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, '0');
  const local = new Date(ms + offsetMin * 60e3);
  const sign = offsetMin >= 0 ? '+' : '-';
  return `${local.getUTCFullYear()}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())}T${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())}${sign}${pad(Math.abs(offsetMin) / 60)}:${pad(Math.abs(offsetMin) % 60)}`;
}

// The user activity filter for the last `days` days in buckets of `sample`: exactly as many
// whole buckets as the range holds (7 days of DAY is seven days), the current one last.
// The server keeps the buckets that lie wholly between startDate and endDate and aligns them
// to the hour, midnight or Monday in the offset of startDate, so both ends are bucket
// boundaries in the browser's current offset (fixed for the whole range, so that a daylight
// saving change inside it does not shift a boundary).
function userFilter(days, sample, now = Date.now()) {
  const offsetMin = -new Date(now).getTimezoneOffset();
  const shift = offsetMin * 60e3;
  const len = { HOUR: HOUR_MS, DAY: DAY_MS, WEEK: 7 * DAY_MS }[sample];
  const local = now + shift;
  // Day 0 (1970-01-01) was a Thursday: weeks start on day 4, a Monday.
  const end = sample === 'WEEK'
    ? (Math.floor((Math.floor(local / DAY_MS) - 4) / 7) * 7 + 4) * DAY_MS + len
    : (Math.floor(local / len) + 1) * len;
  const start = end - Math.ceil((days * DAY_MS) / len) * len;
  return `startDate ge "${isoAt(start - shift, offsetMin)}" and endDate le "${isoAt(end - shift, offsetMin)}" and sampleSize eq "${sample}"`;
}

let session = null; // the /dashboard/api/session promise

function usersPage(route) {
  let range = oneOf(route.params.range, RANGES.map(([r]) => r), 'week');
  let sample = oneOf(route.params.sample, SAMPLES.map(([s]) => s), 'DAY');
  const controls = [
    segmented('Range', 'range', RANGES, range, (r) => {
      range = r;
      setParams({ range });
      reload(current, true);
    }),
    segmented('Sample size', 'sample', SAMPLES, sample, (s) => {
      sample = s;
      setParams({ sample });
      reload(current, true);
    }),
  ];
  const body = h('div', { class: 'stack' }, h('div', { class: 'loading' }, 'Loading…'));
  const root = pageRoot('users', pageHead('User activity', 'Sign-ons, password resets and active users', controls), body);

  async function load() {
    const env = (await session).environment_id;
    const filter = userFilter(PERIOD_DAYS[range], sample);
    return getJson(`/v1/environments/${enc(env)}/userActivities?filter=${enc(filter)}`);
  }

  function render(d) {
    const rows = d._embedded.userActivities;
    const buckets = rows.map((r) => ({ start: new Date(r.startDate), end: new Date(r.endDate) }));
    const pick = (f) => rows.map(f);
    const series = [
      { label: 'Sign-on successes', cls: 'c-ok', values: pick((r) => r.userSignOns.successes) },
      { label: 'Sign-on failures', cls: 'c-fail', values: pick((r) => r.userSignOns.failures) },
      { label: 'Password resets', cls: 'c-reset', values: pick((r) => r.passwordResets) },
      { label: 'Active users', cls: 'c-users', values: pick((r) => r.totalActiveUsers) },
    ];
    const total = (i) => sum(series[i].values);
    const unit = { HOUR: 'hour', DAY: 'day', WEEK: 'week' }[sample];
    body.setAttribute('data-buckets', String(rows.length));
    body.replaceChildren(
      h('div', { class: 'cards' },
        card('Sign-on successes', fmt(total(0)), null, 'ok', 'sign-on-successes'),
        card('Sign-on failures', fmt(total(1)), `${pct(total(1), total(0) + total(1))} of sign-ons`, total(1) ? 'danger' : '', 'sign-on-failures'),
        card('Password resets', fmt(total(2)), null, '', 'password-resets'),
        card('Peak active users', fmt(Math.max(0, ...series[3].values)), `in one ${unit}`, '', 'active-users')),
      panel('User activity', rows.length ? `${fmt(rows.length)} ${unit}s · ${fmtRange(rows[0].startDate, rows[rows.length - 1].endDate)}` : null,
        legend(series), chartBox((width) => lineChart(buckets, series, { width, label: 'User activity over time' }))));
  }

  return { root, load, render };
}

// ---- boot ----------------------------------------------------------------------------

const PAGES = {
  overview: overviewPage,
  apis: apisPage,
  api: apiPage,
  client: clientPage,
  attacks: attacksPage,
  ioas: ioasPage,
  lists: listsPage,
  users: usersPage,
};

async function logout() {
  try {
    await call('POST', '/dashboard/logout');
  } catch (err) {
    showError(err);
    return;
  }
  leaving = true;
  location.assign(LOGIN_URL);
}

function initApp() {
  session = getJson('/dashboard/api/session');
  session.then((s) => {
    $('session-info').textContent = `${s.username} · ${s.mode} · v${s.version}`;
  }, (err) => showError(err, 'action'));
  $('nav-logout').addEventListener('click', logout);
  $('error-close').addEventListener('click', () => clearError());
  document.addEventListener('click', closeMenus);
  document.addEventListener('click', (e) => {
    const link = e.target.closest && e.target.closest('a[href^="#/"]');
    const sameTab = e.button === 0 && !e.ctrlKey && !e.metaKey && !e.shiftKey && !e.altKey;
    if (link && sameTab && link.getAttribute('href') !== location.hash) document.body.dataset.ready = '0';
  }, true);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeMenus();
  });
  window.addEventListener('scroll', closeMenus, { capture: true, passive: true });
  window.addEventListener('hashchange', mount);
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    closeMenus();
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => drawCharts(true), 150);
  });
  setInterval(tick, REFRESH_MS);
  mount();
}

function initLogin() {
  if (new URLSearchParams(location.search).get('failed') === '1') $('login-error').hidden = false;
}

if (document.body.dataset.app === 'login') initLogin();
else initApp();
