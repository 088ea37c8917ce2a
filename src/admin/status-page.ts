// GET /: the operator's status page. One static document, its style and script inline, so it
// needs no build step and fetches nothing but /status.json (./status.ts), every 2 s, from the
// relay itself. Read-only: it has no form and sends nothing but that GET (the search box and the
// page buttons only change that GET's query: which accounts, which page of them).
//
// Everything shown comes from the relay's data (account emails, provider replies, MAIL FROM
// addresses an MTA chose), so the script writes it only as text (textContent, never innerHTML):
// a reply text like `<img onerror=...>` stays text. The Content-Security-Policy allows just this
// script and style (by hash) and connections to the page's own origin, as a second fence.
import { createHash } from 'node:crypto';

/** How often the page asks for /status.json. */
export const REFRESH_MS = 2_000;

const STYLE = `
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #c62828; --warn: #9a6700; --line: #8884; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; }
h1 { font-size: 1.3rem; margin: 0 0 .5rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
.banner { padding: .5rem .75rem; border-radius: 4px; border: 1px solid var(--line); }
.banner.good { border-color: var(--ok); color: var(--ok); }
.banner.bad { border-color: var(--bad); color: var(--bad); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid var(--line); }
th { font-weight: 600; white-space: nowrap; }
.state-ok { color: var(--ok); font-weight: 600; }
.state-limit { color: var(--warn); font-weight: 600; }
.state-bad { color: var(--bad); font-weight: 600; }
.small { font-size: 12px; opacity: .8; }
.mono { font-family: ui-monospace, monospace; font-size: 12px; }
#updated { margin-left: .5rem; }
`;

const SCRIPT = `
'use strict';
const REFRESH_MS = ${REFRESH_MS};
const byId = (id) => document.getElementById(id);

/** An element holding only text: data from the relay never becomes markup. */
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function cell(field, ...children) {
  const td = document.createElement('td');
  td.dataset.field = field;
  for (const c of children) td.append(typeof c === 'string' ? el('div', c) : c);
  return td;
}

function ago(iso) {
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  const a = Math.abs(s);
  const span = a < 90 ? a + ' s' : a < 5400 ? Math.round(a / 60) + ' min' : Math.round(a / 3600) + ' h';
  return s >= 0 ? 'in ' + span : span + ' ago';
}

function when(iso) {
  return iso ? iso.replace('T', ' ').slice(0, 19) + 'Z (' + ago(iso) + ')' : '\\u2014';
}

function against(sent, limit) {
  return limit === null || limit === undefined ? String(sent) + ' (no limit counted)' : sent + ' of ' + limit;
}

function stateClass(state) {
  if (state === 'ok') return 'state-ok';
  if (state === 'cold') return 'state-ok';
  if (state === 'at_limit_until' || state === 'paused_by_quota' || state === 'starting') return 'state-limit';
  return 'state-bad';
}

function accountRow(a) {
  const tr = document.createElement('tr');
  tr.dataset.account = a.email;
  const health = [el('div', a.words, stateClass(a.health)), el('div', a.health + (a.can_send ? ', can send' : ', cannot send now'), 'small mono')];
  if (a.advice) health.push(el('div', a.advice, 'small'));
  const c = a.connections;
  const limit = [];
  if (a.at_limit_until) limit.push(el('div', 'at limit until ' + when(a.at_limit_until)));
  if (a.paused) limit.push(el('div', 'paused until ' + when(a.paused.until)), el('div', a.paused.reason, 'small'));
  const error = a.last_error ? [el('div', a.last_error, 'mono')] : [el('div', '\\u2014')];
  if (a.last_error_at) error.push(el('div', when(a.last_error_at), 'small'));
  tr.append(
    cell('email', el('div', a.email), el('div', a.provider, 'small')),
    cell('health', ...health),
    cell('token', when(a.token_expires_at)),
    cell('connections', c ? c.busy + ' in use, ' + c.idle + ' idle' : '\\u2014', ...(c && (c.opening || c.waiting) ? [el('div', c.opening + ' opening, ' + c.waiting + ' waiting', 'small')] : [])),
    cell('sent', el('div', 'last hour: ' + against(a.sent.last_hour, a.limits.messages_per_hour)), el('div', 'last day: ' + against(a.sent.last_day, a.limits.messages_per_day)), ...limit),
    cell('error', ...error),
  );
  return tr;
}

function refusalRow(r) {
  const tr = document.createElement('tr');
  tr.append(
    cell('at', when(r.at)),
    cell('stage', r.stage),
    cell('account', r.account || '\\u2014', ...(r.mail_from ? [el('div', 'MAIL FROM ' + r.mail_from, 'small')] : []), ...(r.client ? [el('div', 'client ' + r.client, 'small')] : [])),
    cell('reason', r.reason),
    cell('reply', el('div', r.reply, 'mono'), ...(r.advice ? [el('div', r.advice, 'small')] : [])),
  );
  return tr;
}

/** Which accounts the next GET asks for: the search box and the page buttons change it. */
const view = { q: '', page: 1 };

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? d + ' d ' + h + ' h' : h ? h + ' h ' + m + ' min' : m + ' min ' + (s % 60) + ' s';
}

function renderPager(p, states) {
  byId('page-info').textContent = 'Accounts ' + (p.matching ? (p.number - 1) * p.per_page + 1 : 0) + '\u2013' + Math.min(p.number * p.per_page, p.matching) +
    ' of ' + p.matching + (p.q ? ' matching \u201c' + p.q + '\u201d' : '') + ' (' + p.total + ' in all; page ' + p.number + ' of ' + p.pages + '), problems first. ' +
    Object.entries(states).map(([k, n]) => k + ': ' + n).join(', ');
  byId('prev').disabled = p.number <= 1;
  byId('next').disabled = p.number >= p.pages;
  view.page = p.number;
}

function render(s) {
  byId('version').textContent = 'version ' + s.version + ', up ' + duration(s.uptime_s);
  if (s.totals) byId('totals').textContent = 'Since start: ' + s.totals.accepted + ' accepted, ' + s.totals.deferred + ' deferred (4xx), ' + s.totals.refused + ' refused (5xx).';
  renderPager(s.page, s.account_states);
  const r = s.readiness;
  const banner = byId('banner');
  banner.className = 'banner ' + (r.ready ? 'good' : 'bad');
  const lines = [r.ready ? 'Ready: at least one account can send now.' : 'Not ready: ' + r.reasons.join('; ') + '.'];
  if (r.ready && r.unable.length) lines.push('Cannot send now: ' + r.unable.map((u) => u.email + ' (' + u.state + ')').join(', ') + (r.unable_total > r.unable.length ? ' and ' + (r.unable_total - r.unable.length) + ' more' : '') + '.');
  if (r.store_problem) lines.push('Store: ' + r.store_problem + '.');
  banner.replaceChildren(...lines.map((l) => el('div', l)));
  byId('sessions').textContent = String(s.inbound_sessions);
  byId('accounts').replaceChildren(...s.accounts.map(accountRow));
  byId('no-accounts').hidden = s.accounts.length > 0;
  byId('refusals').replaceChildren(...s.recent_refusals.map(refusalRow));
  byId('no-refusals').hidden = s.recent_refusals.length > 0;
  byId('updated').textContent = 'updated ' + s.generated_at.replace('T', ' ').slice(0, 19) + 'Z';
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  try {
    const query = new URLSearchParams({ q: view.q, page: String(view.page) });
    const res = await fetch('status.json?' + query, { cache: 'no-store', headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    render(await res.json());
  } catch (e) {
    const banner = byId('banner');
    banner.className = 'banner bad';
    banner.replaceChildren(el('div', 'The relay did not answer (' + (e && e.message ? e.message : e) + '); trying again.'));
  } finally {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

byId('search').addEventListener('input', (e) => { view.q = e.target.value.trim(); view.page = 1; refresh(); });
byId('prev').addEventListener('click', () => { view.page--; refresh(); });
byId('next').addEventListener('click', () => { view.page++; refresh(); });
refresh();
`;

const sha256 = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>xoauth2-relay status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<h1>xoauth2-relay <span id="version" class="small"></span> <span id="updated" class="small"></span></h1>
<div id="banner" class="banner">Loading…</div>
<p class="small">Inbound SMTP sessions open: <span id="sessions">—</span>. <span id="totals"></span> This page refreshes itself every ${REFRESH_MS / 1000} s.</p>
<h2>Accounts</h2>
<p class="small"><input id="search" type="search" placeholder="Search: email, provider or state" aria-label="Search accounts" autocomplete="off">
<button id="prev" type="button">Previous</button> <button id="next" type="button">Next</button> <span id="page-info"></span></p>
<table>
<thead><tr><th>Account</th><th>Health</th><th>Token expires</th><th>Connections</th><th>Sent (against its limits)</th><th>Last error</th></tr></thead>
<tbody id="accounts"></tbody>
</table>
<p id="no-accounts" class="small" hidden>No account is configured.</p>
<h2>Recent refused or deferred transactions</h2>
<table>
<thead><tr><th>When</th><th>Stage</th><th>Account</th><th>Reason</th><th>Reply given to the MTA</th></tr></thead>
<tbody id="refusals"></tbody>
</table>
<p id="no-refusals" class="small" hidden>None since the relay started.</p>
<script>${SCRIPT}</script>
</body>
</html>
`;

/** The page's headers: only its own inline script and style run, and it may only fetch from its origin. */
const HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy': [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
};

export const statusPage = (): { headers: Record<string, string>; body: string } => ({ headers: HEADERS, body: HTML });
