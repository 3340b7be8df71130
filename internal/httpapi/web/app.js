// gridbell operators' workspace. Plain script, no build step, nothing
// fetched from outside gridbell. Runs under CSP script-src 'self': no
// inline handlers, no inline styles, no eval.
'use strict';

const I18N = {
  zh: {
    title: '停电工作台', storm_on: '风暴模式', logout: '退出', login_title: '登录', user: '用户名', password: '密码',
    login: '登录', token_login: '使用 API 令牌', token: '令牌', use_token: '使用令牌', login_failed: '用户名或密码错误',
    login_locked: '密码错误次数过多，请一分钟后再试', tab_outages: '停电事件', tab_storm: '全局总览', tab_storm_grid: '{g} 网格总览', tab_hotline: '热线查询',
    tab_quality: '联系方式质量', tab_audit: '审计日志', outages: '停电事件', show: '显示', f_live: '进行中',
    f_attention: '需关注', f_all: '全部（近 24 小时）', c_id: '编号', c_kind: '类型', c_status: '状态', c_areas: '台区',
    c_start: '开始', c_etr: '预计复电', c_affected: '受影响', c_notified: '已通知', c_delivered: '已送达',
    c_restored: '已复电', c_dark: '仍停电', no_outages: '当前没有停电事件。', csv: '下载客户清单 (CSV)',
    confirm: '确认复电', priority: '重要客户（生命支持、高危、重要）', c_class: '类别', c_account: '户号', c_name: '户名',
    c_phones: '电话', c_power: '供电', c_sms: '短信', none: '无', call_list: '需电话联系（短信无法送达）', call_masked: '号码已隐藏：需电话联系名单的完整号码仅向调度员、本网格客户经理和有完整号码（pii）权限的人员显示，每次查看都记入审计日志',
    c_reason: '原因', still_dark: '仍未复电的电表', c_meter: '表号', c_last_seen: '最后在线', reported_out: '客户回复仍停电',
    customers: '全部受影响客户', c_area: '台区', c_grid: '网格', st_ok: '正常', st_partial: '部分停电', st_out: '停电',
    st_restoring: '复电核实中', sms_minutes: '每分钟短信（近 30 分钟）', c_minute: '时间', c_queued: '排队',
    c_sent: '已发送', c_failed: '失败', no_sms: '近 30 分钟没有短信。', hotline_ph: '户号或手机号', search: '查询',
    q_accounts: '户数', q_valid: '有效', q_fixed: '已修正', q_landline: '仅固话', q_invalid: '无效', q_missing: '缺失',
    q_opted_out: '退订', q_rate: '有效率', c_time: '时间', c_who: '人员', c_role: '角色', c_action: '操作',
    c_target: '对象', c_detail: '详情', confirm_title: '确认复电', reason: '原因（必填）', cancel: '取消',
    c_ref: '关于', c_phone: '号码', c_result: '结果', no_messages: '没有短信记录。', close: '关闭',
    live_on: '实时连接 · 最后更新', live_stale: '连接中断，正在重连 · 最后更新', live_off: '未连接', live_poll: '定时刷新 · 最后更新',
    k_fault: '故障停电', k_planned: '计划停电', s_active: '停电中', s_scheduled: '已计划', s_restored: '已复电',
    s_cancelled: '已取消', src_ami: '电表', src_oms: '调度系统', src_both: '电表+调度',
    cls_resident: '居民', cls_commercial: '商业', cls_industrial: '工业', cls_important: '重要', cls_high_risk: '高危',
    cls_life_support: '生命支持', r_landline: '仅有固话', r_invalid: '号码无效', r_missing: '无号码', r_opted_out: '已退订',
    r_failed: '发送失败', powered: '已供电', unpowered: '停电', sms_delivered: '已送达', sms_sent: '已发送',
    sms_queued: '排队中', sms_pending: '待处理', sms_held: '暂缓', sms_sending: '发送中', sms_failed: '失败',
    sms_undelivered: '未送达', sms_rejected: '被拒', sms_suppressed: '未发送', sms_none: '未发送',
    stat_affected: '受影响客户', stat_notified: '已通知', stat_delivered: '已送达', stat_restored: '已复电', stat_dark: '仍停电',
    confirm_q: '确认 {id} 已全部复电？', confirm_dark: '仍有 {n} 户未复电。如仍要确认，请填写原因；该事件将保留在“需关注”列表中，直到这些电表恢复。',
    need_reason: '请填写原因', confirmed_by: '{who} 于 {at} 确认复电', confirmed_reason: '原因：{r}',
    pending_area: '{area} 台区 {n} 块表停电，{s} 秒后判定是否为停电', pending_now: '{area} 台区 {n} 块表停电，正在判定',
    attention_banner: '已确认但仍有客户停电：', cause: '原因', source: '来源', etr: '预计复电', start: '开始',
    in_outage: '该客户处于已知停电中', back_in_outage: '该客户已恢复供电，所在停电事件尚未结束（其他客户仍在停电）', not_in_outage: '未发现该客户处于停电中',
    unknown_in_outage: '该客户在停电范围内，其电表尚未确认来电', unknown_state: '暂无该客户电表的供电信息', power_unknown: '供电状态未知', since: '停电开始', no_customer: '未找到该客户',
    last_outage: '最近一次停电', messages: '短信记录', history_of: '{name}（{acct}）的短信记录',
    kind_planned_notice: '计划停电通知', kind_outage: '停电通知', kind_etr_update: '复电时间更新', kind_restored: '复电通知',
    kind_arrears: '欠费提醒', kind_disconnect_notice: '停电（欠费）通知', kind_balance_low: '余额不足',
    kind_balance_exhausted: '余额耗尽', kind_manager_digest: '客户经理摘要', customers_out: '停电客户 {n} 户，停电台区 {a} 个',
    a_confirm: '确认复电', a_export: '导出', a_pii_view: '查看完整号码', a_call_list: '查看需电话联系名单号码', a_lookup: '热线查询', a_login: '登录',
    a_login_failed: '登录失败', role_admin: '管理员', role_dispatcher: '调度员', role_manager: '客户经理', role_hotline: '热线坐席',
    role_ingest: '接入', error: '出错了', unknown: '未知',
  },
  en: {
    title: 'Outage workspace', storm_on: 'Storm mode', logout: 'Log out', login_title: 'Log in', user: 'Name', password: 'Password',
    login: 'Log in', token_login: 'Use an API token', token: 'Token', use_token: 'Use token', login_failed: 'Wrong name or password',
    login_locked: 'Too many wrong passwords: try again in a minute', tab_outages: 'Outages', tab_storm: 'Overview', tab_storm_grid: 'Grid {g}',
    tab_hotline: 'Hotline lookup', tab_quality: 'Contact quality', tab_audit: 'Audit log', outages: 'Outages', show: 'Show',
    f_live: 'Live', f_attention: 'Needs attention', f_all: 'All (last 24 h)', c_id: 'ID', c_kind: 'Kind', c_status: 'Status',
    c_areas: 'Areas', c_start: 'Start', c_etr: 'ETR', c_affected: 'Affected', c_notified: 'Notified', c_delivered: 'Delivered',
    c_restored: 'Restored', c_dark: 'Still dark', no_outages: 'No outages right now.', csv: 'Customer list (CSV)',
    confirm: 'Confirm restoration', priority: 'Priority customers (life support, high risk, important)', c_class: 'Class',
    c_account: 'Account', c_name: 'Name', c_phones: 'Phones', c_power: 'Power', c_sms: 'SMS', none: 'None',
    call_list: 'Call list (no SMS could reach them)', call_masked: 'Numbers masked: the call list is shown in full to dispatchers, the grid\'s managers and people with the pii permission, each view audited', c_reason: 'Why', still_dark: 'Meters still dark', c_meter: 'Meter',
    c_last_seen: 'Last seen', reported_out: 'Customers who replied "still out"', customers: 'All affected customers',
    c_area: 'Area', c_grid: 'Grid', st_ok: 'Normal', st_partial: 'Partly out', st_out: 'Out', st_restoring: 'Verifying',
    sms_minutes: 'SMS per minute (last 30 min)', c_minute: 'Minute', c_queued: 'Queued', c_sent: 'Sent', c_failed: 'Failed',
    no_sms: 'No SMS in the last 30 minutes.', hotline_ph: 'Account or phone number', search: 'Search',
    q_accounts: 'Accounts', q_valid: 'Valid', q_fixed: 'Fixed', q_landline: 'Landline only', q_invalid: 'Invalid',
    q_missing: 'Missing', q_opted_out: 'Opted out', q_rate: 'Valid-list rate', c_time: 'Time', c_who: 'Who', c_role: 'Role',
    c_action: 'Action', c_target: 'Target', c_detail: 'Detail', confirm_title: 'Confirm restoration',
    reason: 'Reason (required)', cancel: 'Cancel', c_ref: 'About', c_phone: 'Number', c_result: 'Result',
    no_messages: 'No messages.', close: 'Close', live_on: 'Live · last update', live_stale: 'Connection lost, reconnecting · last update',
    live_off: 'Not connected', live_poll: 'Polling · last update', k_fault: 'Fault', k_planned: 'Planned', s_active: 'Active',
    s_scheduled: 'Scheduled', s_restored: 'Restored', s_cancelled: 'Cancelled', src_ami: 'Meters', src_oms: 'OMS',
    src_both: 'Meters + OMS', cls_resident: 'Resident', cls_commercial: 'Commercial', cls_industrial: 'Industrial',
    cls_important: 'Important', cls_high_risk: 'High risk', cls_life_support: 'Life support', r_landline: 'Landline only',
    r_invalid: 'Invalid number', r_missing: 'No number', r_opted_out: 'Opted out', r_failed: 'Delivery failed',
    powered: 'Powered', unpowered: 'Out', sms_delivered: 'Delivered', sms_sent: 'Sent', sms_queued: 'Queued',
    sms_pending: 'Pending', sms_held: 'Held', sms_sending: 'Sending', sms_failed: 'Failed', sms_undelivered: 'Undelivered',
    sms_rejected: 'Rejected', sms_suppressed: 'Not sent', sms_none: 'Not sent', stat_affected: 'Affected',
    stat_notified: 'Notified', stat_delivered: 'Delivered', stat_restored: 'Restored', stat_dark: 'Still dark',
    confirm_q: 'Confirm that {id} is restored?',
    confirm_dark: '{n} customers are still dark. To confirm anyway, give a reason; the outage stays on the "needs attention" list until their meters come back.',
    need_reason: 'Please give a reason', confirmed_by: 'Confirmed by {who} at {at}', confirmed_reason: 'Reason: {r}',
    pending_area: '{n} meters dark in {area}, deciding in {s} s', pending_now: '{n} meters dark in {area}, deciding now',
    attention_banner: 'Confirmed with customers still dark:', cause: 'Cause', source: 'Source', etr: 'ETR', start: 'Start',
    in_outage: 'This customer is in a known outage', back_in_outage: 'Power is back for this customer; the outage is still open for others', not_in_outage: 'No known outage for this customer',
    unknown_in_outage: 'This customer is within an outage; its meter has not confirmed power yet', unknown_state: 'No word yet from this customer\'s meters', power_unknown: 'Power unknown', since: 'Since',
    no_customer: 'No customer found', last_outage: 'Latest outage', messages: 'Messages', history_of: 'Messages to {name} ({acct})',
    kind_planned_notice: 'Planned outage notice', kind_outage: 'Outage', kind_etr_update: 'ETR update', kind_restored: 'Restored',
    kind_arrears: 'Arrears', kind_disconnect_notice: 'Disconnection notice', kind_balance_low: 'Balance low',
    kind_balance_exhausted: 'Balance exhausted', kind_manager_digest: 'Manager digest',
    customers_out: '{n} customers out, {a} areas affected', a_confirm: 'Confirmation', a_export: 'Export',
    a_pii_view: 'Full numbers viewed', a_call_list: 'Call list numbers viewed', a_lookup: 'Hotline lookup', a_login: 'Login', a_login_failed: 'Failed login',
    role_admin: 'Admin', role_dispatcher: 'Dispatcher', role_manager: 'Customer manager', role_hotline: 'Hotline agent',
    role_ingest: 'Ingest', error: 'Something went wrong', unknown: 'unknown',
  },
};

const state = {
  me: null, token: sessionStorage.getItem('gridbell-token') || '', lang: localStorage.getItem('gridbell-lang') || 'zh',
  outages: [], filter: 'live', tab: 'outages', current: null, ws: null, es: null, lastHeard: 0, storm: false,
  reloadTimer: 0, pollTimer: 0, stormTimer: 0, loadedAt: 0, pending: [], pendingTimer: 0,
};
window.gridbell = { timings: [] }; // read by the browser test

const $ = (s) => document.querySelector(s);
const $$ = (s) => Array.from(document.querySelectorAll(s));

function t(key, vars) {
  let s = I18N[state.lang][key] ?? I18N.zh[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace('{' + k + '}', v);
  return s;
}
function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
// Formatters are cached: building one costs more than formatting with it,
// and a storm's lists format thousands of times.
const formatters = new Map();
function fmt(ts, withDate = true) {
  if (!ts) return '—';
  const key = state.lang + (state.me?.timezone || '') + withDate;
  let f = formatters.get(key);
  if (!f) {
    const opts = { timeZone: state.me?.timezone || 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
    Object.assign(opts, withDate ? { month: state.lang === 'zh' ? 'numeric' : 'short', day: 'numeric' } : { second: '2-digit' });
    f = new Intl.DateTimeFormat('en-US', opts);
    formatters.set(key, f);
  }
  if (!withDate) return f.format(new Date(ts));
  // One date style per language, the SMS's: 12月6日 23:53, Dec 6 23:53.
  const p = Object.fromEntries(f.formatToParts(new Date(ts)).map((x) => [x.type, x.value]));
  return state.lang === 'zh' ? `${p.month}月${p.day}日 ${p.hour}:${p.minute}` : `${p.month} ${p.day} ${p.hour}:${p.minute}`;
}
const word = (prefix, v) => (v ? t(prefix + v) : '');
const clsBadge = (c) => `<span class="cls cls-${esc(c)}">${esc(word('cls_', c) || c)}</span>`;
function smsWord(status) {
  if (!status) return t('sms_none');
  const [head, ...rest] = status.split(':');
  const w = I18N[state.lang]['sms_' + head] ? t('sms_' + head) : head;
  return rest.length ? w + '（' + rest.join(':').trim() + '）' : w;
}
function phones(list) {
  if (!list || !list.length) return '—';
  return list.map((p) => (p.includes('*') ? `<span class="phone">${esc(p)}</span>` : `<a class="phone" href="tel:${esc(p)}">${esc(dialText(p))}</a>`)).join(' ');
}
// dialText writes a Chinese number as people here write it: a mobile as its
// 11 digits (13812345678), a landline with its trunk 0 and area code
// (010-98439974, 0571-88886666); any other number as given.
function dialText(p) {
  if (!p.startsWith('+86')) return p;
  const n = p.slice(3);
  if (/^1\d{10}$/.test(n)) return n;
  const area = /^(10|2\d)/.test(n) ? 2 : 3;
  return '0' + n.slice(0, area) + '-' + n.slice(area);
}
const power = (on) => (on ? `<span class="good">${t('powered')}</span>` : `<span class="dark">${t('unpowered')}</span>`);

// rowHTML turns an item into one <tr>; cells are [label key, html, class].
function rowHTML(cells, trAttrs) {
  const labels = new Map();
  const label = (k) => { let v = labels.get(k); if (v === undefined) { v = esc(t(k)); labels.set(k, v); } return v; };
  return (x) => `<tr ${trAttrs ? trAttrs(x) : ''}>` + cells(x).map(([k, html, cls]) =>
    `<td data-label="${label(k)}"${cls ? ` class="${cls}"` : ''}>${html}</td>`).join('') + '</tr>';
}

// rows fills tbody with one <tr> per item of list. Given keyOf, the table
// is a long one (an outage's customers): see placeRows.
function rows(tbody, list, cells, trAttrs, keyOf) {
  const html = rowHTML(cells, trAttrs);
  if (keyOf) { placeRows(tbody, list, keyOf, html); return; }
  tbody.innerHTML = list.map(html).join('');
}

// ---- long tables ----
// Built at once, a storm's lists (2,000 customers, as many dark meters)
// cost the browser seconds of style and layout before any of it showed.
// placeRows builds the first screenful at once (FIRST_ROWS over all the
// tables of a render, in page order) and the rest in chunks, one a frame;
// a later render of the same table (a live update, the other language)
// keeps every row whose HTML is unchanged, and rows that do change are
// replaced in place, so the reader's scroll position holds. Each <tr>
// carries its key and HTML as gbKey and gbHTML: the DOM is the state.
const FIRST_ROWS = 60, CHUNK_ROWS = 300;
let firstRows = 0; // what the current render may still build at once: firstScreen() sets it
const jobs = []; // tables with rows still to place, in page order
const drawnWaiters = [];
const rowTemplate = document.createElement('template');

function placeRows(tbody, list, keyOf, html) {
  const i = jobs.findIndex((j) => j.tbody === tbody);
  if (i >= 0) jobs.splice(i, 1); // an older render of this table gives way
  const keys = new Set(list.map(keyOf));
  const old = new Map();
  for (const tr of Array.from(tbody.rows)) {
    if (!keys.has(tr.gbKey) || old.has(tr.gbKey)) tr.remove(); else old.set(tr.gbKey, tr);
  }
  const wrap = tbody.closest('.long');
  if (wrap) { // a first guess at the height, until the list is laid out
    const rowPx = matchMedia('(max-width: 640px)').matches ? 150 : 32;
    wrap.style.containIntrinsicBlockSize = 'auto ' + (40 + list.length * rowPx) + 'px';
  }
  const job = { tbody, list, keyOf, html, old, i: 0, cur: tbody.firstElementChild, built: 0 };
  const done = placeChunk(job, firstRows);
  firstRows -= job.built;
  if (!done) { jobs.push(job); pumpRows(); }
}

// firstScreen starts a render of long tables: the first FIRST_ROWS new rows
// are built at once, the others after the first paint.
function firstScreen() { firstRows = FIRST_ROWS; }

// placeChunk places the job's next rows until it has built budget new
// ones; it reports whether the table is complete.
function placeChunk(job, budget) {
  const items = [];
  let fresh = '', built = 0;
  for (let i = job.i; i < job.list.length && built < budget; i++) {
    const x = job.list[i], key = job.keyOf(x), h = job.html(x), o = job.old.get(key);
    job.old.delete(key); // a key twice in the list gets a row each
    const keep = o && o.gbHTML === h;
    if (!keep) { fresh += h; built++; }
    items.push({ key, html: h, tr: keep ? o : null, old: keep ? null : o });
  }
  rowTemplate.innerHTML = fresh; // one parse for the chunk
  const made = Array.from(rowTemplate.content.children);
  let m = 0;
  for (const it of items) {
    if (!it.tr) {
      it.tr = made[m++];
      it.tr.gbKey = it.key;
      it.tr.gbHTML = it.html;
      if (it.old) { if (job.cur === it.old) job.cur = it.old.nextElementSibling; it.old.remove(); }
    }
    placeRow(job, it.tr);
  }
  job.i += items.length;
  job.built = built;
  if (job.i < job.list.length) return false;
  while (job.cur) { const next = job.cur.nextElementSibling; job.cur.remove(); job.cur = next; }
  return true;
}

// placeRow puts tr at the job's cursor: every row before it is placed.
function placeRow(job, tr) {
  const cur = job.cur;
  if (cur === tr) { job.cur = tr.nextElementSibling; return; }
  if (cur && cur.nextElementSibling === tr) { // cur moved further down: it comes back in its turn
    cur.remove();
    job.cur = tr.nextElementSibling;
    return;
  }
  job.tbody.insertBefore(tr, cur);
}

let pumping = false;
function pumpRows() {
  if (pumping) return;
  pumping = true;
  requestAnimationFrame(() => setTimeout(() => { // after the frame is painted
    pumping = false;
    const job = jobs[0];
    if (job && placeChunk(job, CHUNK_ROWS)) jobs.shift();
    if (jobs.length) { pumpRows(); return; }
    for (const fn of drawnWaiters.splice(0)) fn();
  }, 0));
}

// whenDrawn calls fn once every long table is complete.
function whenDrawn(fn) {
  if (jobs.length) drawnWaiters.push(fn); else fn();
}

function empty(id, list) { $(id).hidden = list.length > 0; }

class ApiError extends Error {
  constructor(status, body) { super((body && body.error) || String(status)); this.status = status; this.body = body; }
}
async function call(path, opt = {}) {
  const headers = Object.assign({}, opt.headers);
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  if (opt.method && opt.method !== 'GET' && state.me && state.me.csrf) headers['X-CSRF-Token'] = state.me.csrf;
  let body = opt.body;
  if (opt.json !== undefined) { body = JSON.stringify(opt.json); headers['Content-Type'] = 'application/json'; }
  return fetch(path, { method: opt.method || 'GET', headers, body, credentials: 'same-origin' });
}
async function api(path, opt = {}) {
  const r = await call(path, opt);
  const ct = r.headers.get('Content-Type') || '';
  const body = ct.includes('json') ? await r.json() : null;
  if (r.status === 401 && path !== '/api/v1/login') { showLogin(); }
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// ---- language ----
function applyLang() {
  document.documentElement.lang = state.lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of $$('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of $$('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  $('#lang').textContent = state.lang === 'zh' ? 'English' : '中文';
  $('#lang').lang = state.lang === 'zh' ? 'en' : 'zh';
  document.title = t('title') + ' · gridbell';
  if (state.me) { renderWho(); renderOutages(); if (state.ws) renderWorkspace(state.ws); showLive(); }
}
$('#lang').addEventListener('click', () => {
  state.lang = state.lang === 'zh' ? 'en' : 'zh';
  localStorage.setItem('gridbell-lang', state.lang);
  applyLang();
  if (state.tab !== 'outages') loadTab(state.tab);
});

// ---- login ----
function showLogin() {
  // Called again while the form shows (a live update refused after a
  // logout), it must not take the focus back: keys typed into the
  // password would go into the name.
  const shown = !$('#login').hidden;
  stopLive();
  state.me = null;
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  if (!shown) $('#loginName').focus();
}
$('#loginForm').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('#loginError').textContent = '';
  try {
    state.token = '';
    sessionStorage.removeItem('gridbell-token');
    state.me = await api('/api/v1/login', { method: 'POST', json: { name: $('#loginName').value, password: $('#loginPassword').value } });
    $('#loginPassword').value = '';
    start();
  } catch (err) {
    $('#loginError').textContent = err.status === 429 ? t('login_locked') : t('login_failed');
  }
});
$('#tokenUse').addEventListener('click', () => {
  state.token = $('#tokenInput').value.trim();
  sessionStorage.setItem('gridbell-token', state.token);
  boot();
});
$('#logout').addEventListener('click', async () => {
  try { await api('/api/v1/logout', { method: 'POST' }); } catch (_) { /* the session is gone either way */ }
  state.token = '';
  sessionStorage.removeItem('gridbell-token');
  showLogin();
});

async function boot() {
  try { state.me = await api('/api/v1/me'); } catch (_) { showLogin(); return; }
  start();
}

const can = {
  confirm: () => ['admin', 'dispatcher'].includes(state.me.role),
  outages: () => ['admin', 'dispatcher', 'manager'].includes(state.me.role),
  audit: () => state.me.role === 'admin',
};
function renderWho() {
  const m = state.me;
  $('#who').textContent = m.name + ' · ' + t('role_' + m.role) + (m.grids.length ? ' · ' + m.grids.join(', ') : '');
  // A manager of one grid sees that grid's overview, not the whole company's.
  const one = m.role === 'manager' && m.grids.length === 1;
  for (const el of $$('[data-i18n=tab_storm]')) el.textContent = one ? t('tab_storm_grid', { g: m.grids[0] }) : t('tab_storm');
}
function start() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#logout').hidden = !state.me.session && !state.token;
  renderWho();
  for (const b of $$('#tabs button')) {
    const tab = b.dataset.tab;
    b.hidden = tab === 'audit' ? !can.audit() : tab === 'hotline' ? false : !can.outages();
  }
  selectTab(can.outages() ? 'outages' : 'hotline');
  if (can.outages()) startLive();
}

// ---- tabs ----
$('#tabs').addEventListener('click', (e) => { const b = e.target.closest('button[data-tab]'); if (b) selectTab(b.dataset.tab); });
function selectTab(tab) {
  state.tab = tab;
  for (const b of $$('#tabs button')) b.setAttribute('aria-selected', String(b.dataset.tab === tab));
  for (const s of $$('.tab')) s.hidden = s.id !== 'tab-' + tab;
  loadTab(tab);
}
function loadTab(tab) {
  clearInterval(state.stormTimer);
  if (tab === 'storm') { loadStorm(); state.stormTimer = setInterval(loadStorm, 15000); }
  if (tab === 'quality') loadQuality();
  if (tab === 'audit') loadAudit();
}

// ---- live feed ----
function heard() { state.lastHeard = Date.now(); showLive(); }
function showLive() {
  const el = $('#live');
  if (!state.lastHeard) { el.dataset.state = 'off'; el.textContent = t('live_off'); return; }
  const stale = Date.now() - state.lastHeard > 40000 || el.dataset.state === 'retry';
  const mode = state.es ? (stale ? 'live_stale' : 'live_on') : 'live_poll';
  el.dataset.state = stale ? 'retry' : 'on';
  el.textContent = t(mode) + ' ' + fmt(state.lastHeard, false);
}
setInterval(() => { if (state.me) showLive(); }, 5000);

function startLive() {
  stopLive();
  if (state.token) { // EventSource cannot send a bearer token: poll instead
    const poll = async () => {
      try { const d = await api('/api/v1/outages'); feed({ outages: recent(d.outages), storm: state.storm }); } catch (_) { /* shown as stale */ }
    };
    poll();
    state.pollTimer = setInterval(poll, 10000);
    return;
  }
  const es = new EventSource('/api/v1/events');
  state.es = es;
  es.addEventListener('outages', (e) => { $('#live').dataset.state = 'on'; feed(JSON.parse(e.data)); });
  es.addEventListener('alive', () => { $('#live').dataset.state = 'on'; heard(); });
  es.addEventListener('error', () => {
    $('#live').dataset.state = 'retry';
    showLive();
    if (es.readyState === EventSource.CLOSED) { // refused: logged out, or the server is gone
      setTimeout(async () => { if (state.es === es) { try { await api('/api/v1/me'); startLive(); } catch (_) { setTimeout(startLive, 5000); } } }, 3000);
    }
  });
}
function stopLive() {
  if (state.es) state.es.close();
  state.es = null;
  clearInterval(state.pollTimer);
}
function recent(list) {
  const cut = Date.now() - 24 * 3600e3;
  return list.filter((o) => o.status === 'active' || o.status === 'scheduled' || o.needs_attention || (o.restored_at && Date.parse(o.restored_at) > cut));
}
// feed takes a live update. Counts of the open outage show at once; its
// lists are fetched again when customers went out or came back (or, for
// SMS figures alone, at most every 15 s: a storm sends thousands a minute).
function feed(msg) {
  heard();
  const prev = state.outages.find((o) => o.id === state.current);
  state.outages = msg.outages || [];
  // Remaining seconds of each pending window by the server's clock, counted
  // down from when the message came.
  const at = Date.parse(msg.at) || Date.now();
  state.pending = (msg.pending || []).map((p) => ({ ...p, left: Date.parse(p.decide_at) - at, from: Date.now() }));
  renderPending();
  state.storm = !!msg.storm;
  $('#storm').hidden = !state.storm;
  renderOutages();
  const cur = state.outages.find((o) => o.id === state.current);
  if (cur && prev && state.ws) {
    const power = (o) => [o.counts.affected, o.counts.restored, o.counts.dark, o.status, o.confirmed_by].join();
    if (power(cur) !== power(prev)) {
      clearTimeout(state.reloadTimer);
      state.reloadTimer = setTimeout(() => openOutage(state.current, true), 300);
    } else if (cur.counts.notified !== prev.counts.notified || cur.counts.delivered !== prev.counts.delivered) {
      state.ws.outage.counts.notified = cur.counts.notified;
      state.ws.outage.counts.delivered = cur.counts.delivered;
      renderStats(state.ws.outage.counts);
      if (Date.now() - state.loadedAt > 15000) openOutage(state.current, true);
    }
  }
  if (state.tab === 'storm') loadStorm();
}

// ---- outages ----
$('#filter').addEventListener('change', (e) => { state.filter = e.target.value; renderOutages(); });
function shown() {
  const live = (o) => o.status === 'active' || o.status === 'scheduled';
  if (state.filter === 'live') return state.outages.filter(live);
  if (state.filter === 'attention') return state.outages.filter((o) => o.needs_attention);
  return state.outages;
}
// outageName is how people read an outage: an OMS id as the OMS wrote it;
// a meter-detected one (AMI-<area>-<start in UTC>) as its area and its start
// in local time, "TA-0003 12月6日 23:53", its id kept in the title.
function outageName(o) {
  const m = /^AMI-(.+)-\d{8}T\d{6}(?:-\d+)?$/.exec(o.id);
  return m && o.start ? `${areaLabel(m[1], (o.area_names || {})[m[1]])} ${fmt(o.start)}` : o.id;
}

// areaLabel writes a transformer area as a person reads it: "name (code)"
// when the contacts file names it, else its code.
const areaLabel = (code, name) => (name ? `${name} (${code})` : code);
const outageAreas = (o, n) => {
  const as = (o.areas || []).map((a) => areaLabel(a, (o.area_names || {})[a]));
  return n && as.length > n ? as.slice(0, n).join(' ') + ' …' : as.join(' ');
};

// causeText is an outage's cause in the page's language: the plain phrase
// when gridbell knows the OMS's words, else the words as the OMS wrote them.
const causeText = (o) => (o.cause_phrases && o.cause_phrases[state.lang]) || o.cause;

// renderPending says which areas have meters dark with no outage decided
// yet, and in how many seconds the momentary window closes.
function renderPending() {
  clearTimeout(state.pendingTimer);
  const list = state.pending || [];
  $('#pending').hidden = !list.length;
  if (!list.length) return;
  $('#pending').textContent = list.map((p) => {
    const s = Math.ceil((p.left - (Date.now() - p.from)) / 1000);
    return t(s > 0 ? 'pending_area' : 'pending_now', { n: p.meters, area: areaLabel(p.area, p.name), s });
  }).join('；');
  state.pendingTimer = setTimeout(renderPending, 1000);
}
function renderOutages() {
  const list = shown();
  rows($('#outageTable tbody'), list, (o) => [
    ['c_id', `<span title="${esc(o.id)}">${esc(outageName(o))}</span>` + (o.needs_attention ? ' ⚠' : '')], ['c_kind', esc(word('k_', o.kind) || o.kind)],
    ['c_status', esc(word('s_', o.status) || o.status)], ['c_areas', esc(outageAreas(o, 6))],
    ['c_start', fmt(o.start)], ['c_etr', fmt(o.etr)], ['c_affected', o.counts.affected, 'num'],
    ['c_notified', o.counts.notified, 'num'], ['c_delivered', o.counts.delivered, 'num'],
    ['c_restored', o.counts.restored, 'num'], ['c_dark', o.counts.dark, 'num' + (o.counts.dark ? ' dark' : '')],
  ], (o) => `class="clickable${o.id === state.current ? ' sel' : ''}" data-id="${esc(o.id)}"`);
  empty('#noOutages', list);
  const att = state.outages.filter((o) => o.needs_attention);
  $('#attention').hidden = !att.length;
  $('#attention').textContent = t('attention_banner') + ' ' + att.map((o) => `${outageName(o)} (${o.counts.dark})`).join(', ');
}
$('#outageTable tbody').addEventListener('click', (e) => { const tr = e.target.closest('tr[data-id]'); if (tr) openOutage(tr.dataset.id); });

// openOutage shows outage id. The page times itself for the browser test
// and for DevTools (performance marks gridbell:*): fetch, building the first
// screenful, its layout, its paint, and every row of every list placed.
async function openOutage(id, quiet) {
  const began = performance.now();
  performance.mark('gridbell:open');
  state.current = id;
  $('#detail').hidden = false;
  renderOutages();
  try {
    const ws = await api('/api/v1/outages/' + encodeURIComponent(id) + '/workspace');
    if (state.current !== id) return;
    const fetched = performance.now();
    state.ws = ws;
    renderWorkspace(ws);
    const rendered = performance.now();
    void document.body.offsetHeight; // style and layout, measured on their own
    const laidOut = performance.now();
    const ms = (at) => Math.round(at - began);
    const timing = { outage: id, customers: ws.customers.length, quiet: !!quiet, fetch_ms: ms(fetched),
      render_ms: Math.round(rendered - fetched), layout_ms: Math.round(laidOut - rendered) };
    const res = performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/workspace')).at(-1);
    if (res) { // the server's answer, its transfer, and the JSON parse
      Object.assign(timing, { server_ms: Math.round(res.responseStart - res.requestStart),
        download_ms: Math.round(res.responseEnd - res.responseStart), parse_ms: Math.round(fetched - res.responseEnd),
        bytes: res.encodedBodySize });
      for (const st of res.serverTiming || []) timing['server_' + st.name + '_ms'] = Math.round(st.duration);
    }
    requestAnimationFrame(() => setTimeout(() => { // after paint
      timing.painted_ms = ms(performance.now());
      performance.measure('gridbell:first-screen', 'gridbell:open');
      whenDrawn(() => {
        void document.body.offsetHeight;
        timing.all_rows_ms = ms(performance.now());
        performance.measure('gridbell:all-rows', 'gridbell:open');
        window.gridbell.timings.push(timing);
      });
    }));
    if (!quiet) $('#detail').scrollIntoView({ block: 'start' });
  } catch (err) {
    $('#dTitle').textContent = id + ' — ' + t('error') + ' (' + err.message + ')';
  }
}

function renderStats(c) {
  $('#dStats').innerHTML = ['affected', 'notified', 'delivered', 'restored', 'dark'].map((k) =>
    `<div class="stat${k === 'dark' && c.dark ? ' alert' : ''}" data-stat="${k}"><b>${c[k]}</b><span>${t('stat_' + k)}</span></div>`).join('');
}

function renderWorkspace(ws) {
  state.loadedAt = Date.now();
  firstScreen();
  const o = ws.outage;
  $('#dTitle').textContent = outageName(o) + ' · ' + (word('k_', o.kind) || o.kind) + ' · ' + (word('s_', o.status) || o.status);
  $('#dMeta').textContent = [t('start') + ' ' + fmt(o.start), t('etr') + ' ' + fmt(o.etr), o.cause ? t('cause') + ' ' + causeText(o) : '',
    t('source') + ' ' + (word('src_', o.source) || o.source), outageAreas(o)].filter(Boolean).join(' · ');
  renderStats(o.counts);
  $('#dConfirmed').hidden = !o.confirmed_by;
  $('#dConfirmed').textContent = o.confirmed_by ? t('confirmed_by', { who: o.confirmed_by, at: fmt(o.confirmed_at) }) +
    (o.confirm_reason ? ' · ' + t('confirmed_reason', { r: o.confirm_reason }) : '') : '';
  $('#confirm').hidden = !can.confirm() || !!o.confirmed_by || o.status === 'cancelled';

  const seen = new Set();
  const priority = ws.customers.filter((x) => ['life_support', 'high_risk', 'important'].includes(x.class) && !seen.has(x.account) && seen.add(x.account));
  $('#classCounts').textContent = ['life_support', 'high_risk', 'important'].map((k) => `${t('cls_' + k)} ${ws.classes[k] || 0}`).join(' · ');
  rows($('#priorityTable tbody'), priority, (x) => [['c_class', clsBadge(x.class)], ['c_account', esc(x.account)], ['c_name', esc(x.name)],
    ['c_phones', phones(x.phones)], ['c_power', power(x.powered)], ['c_sms', esc(smsWord(x.status))]],
  (x) => `class="clickable" data-account="${esc(x.account)}" data-name="${esc(x.name)}"`, (x) => x.account);
  empty('#noPriority', priority);

  $('#callCount').textContent = ws.call_list.length;
  rows($('#callTable tbody'), ws.call_list, (x) => [['c_account', esc(x.account)], ['c_name', esc(x.name)], ['c_class', clsBadge(x.class)],
    ['c_phones', phones(x.phones)], ['c_reason', `<span class="bad">${esc(t('r_' + x.reach))}</span>`]],
  (x) => `class="clickable" data-account="${esc(x.account)}" data-name="${esc(x.name)}"`, (x) => x.account);
  empty('#noCall', ws.call_list);
  $('#callNote').hidden = ws.call_list_full || !ws.call_list.length;
  $('#callNote').textContent = t('call_masked');

  $('#darkCount').textContent = ws.dark.length;
  const byAccount = new Map(ws.customers.map((c) => [c.account, c])); // the dark list names its customers by account
  const of = (x) => byAccount.get(x.account) || {};
  rows($('#darkTable tbody'), ws.dark, (x) => [['c_meter', esc(x.meter)], ['c_account', esc(x.account)], ['c_name', esc(of(x).name)],
    ['c_class', clsBadge(of(x).class)], ['c_phones', phones(of(x).phones)], ['c_last_seen', fmt(x.last_seen)]],
  (x) => `data-meter="${esc(x.meter)}"`, (x) => x.meter);
  empty('#noDark', ws.dark);

  $('#reportedCount').textContent = ws.reported_out.length;
  rows($('#reportedTable tbody'), ws.reported_out, (x) => [['c_account', esc(x.account)], ['c_name', esc(x.name)],
    ['c_class', clsBadge(x.class)], ['c_phones', phones(x.phones)]], null, (x) => x.account);
  empty('#noReported', ws.reported_out);

  $('#custCount').textContent = ws.customers.length;
  rows($('#custTable tbody'), ws.customers, (x) => [['c_account', esc(x.account)], ['c_name', esc(x.name)], ['c_class', clsBadge(x.class)],
    ['c_area', esc(areaLabel(x.area, (ws.outage.area_names || {})[x.area]))], ['c_grid', esc(x.grid)], ['c_phones', phones(x.phones)], ['c_sms', esc(smsWord(x.status))], ['c_power', power(x.powered)]],
  (x) => `class="clickable" data-account="${esc(x.account)}" data-name="${esc(x.name)}"`, (x) => x.account + ' ' + x.meter);
}

// A click on a customer shows its message history.
for (const id of ['#priorityTable', '#callTable', '#custTable']) {
  $(id).addEventListener('click', (e) => {
    if (e.target.closest('a')) return; // a tel: link
    const tr = e.target.closest('tr[data-account]');
    if (tr) showHistory(tr.dataset.account, tr.dataset.name);
  });
}
async function showHistory(acct, name) {
  $('#historyTitle').textContent = t('history_of', { name, acct });
  const d = await api('/api/v1/accounts/' + encodeURIComponent(acct) + '/messages');
  rows($('#historyTable tbody'), d.messages, (m) => [['c_time', fmt(m.at)], ['c_kind', esc(word('kind_', m.kind) || m.kind)],
    ['c_ref', esc(m.ref)], ['c_phone', phones([m.phone])],
    ['c_result', `<span class="${m.delivered ? 'good' : m.failed ? 'bad' : ''}">${esc(smsWord(m.status + (m.reason ? ': ' + m.reason : '')))}</span>`]]);
  empty('#noHistory', d.messages);
  $('#historyDialog').showModal();
}

// ---- confirm ----
$('#confirm').addEventListener('click', () => {
  const o = state.ws.outage;
  $('#confirmText').textContent = t('confirm_q', { id: outageName(o) });
  warnDark(o.counts.dark);
  $('#confirmError').textContent = '';
  $('#reason').value = '';
  $('#confirmDialog').showModal();
});
function warnDark(n) {
  $('#confirmWarn').hidden = !n;
  $('#reasonLabel').hidden = !n;
  $('#confirmWarn').textContent = n ? t('confirm_dark', { n }) : '';
}
$('#confirmCancel').addEventListener('click', () => $('#confirmDialog').close());
$('#confirmForm').addEventListener('submit', async (e) => {
  e.preventDefault();
  const reason = $('#reason').value.trim();
  if (!$('#reasonLabel').hidden && !reason) { $('#confirmError').textContent = t('need_reason'); return; }
  try {
    await api('/api/v1/outages/' + encodeURIComponent(state.ws.outage.id) + '/confirm', { method: 'POST', json: reason ? { reason } : {} });
    $('#confirmDialog').close();
    openOutage(state.current, true);
  } catch (err) {
    if (err.status === 409 && err.body && err.body.needs_reason) { warnDark(err.body.dark); $('#confirmError').textContent = t('need_reason'); return; }
    $('#confirmError').textContent = t('error') + ': ' + err.message;
  }
});

// ---- CSV: fetched with the session or token, saved under the outage's name ----
$('#csv').addEventListener('click', async () => {
  const id = state.current;
  const r = await call('/api/v1/outages/' + encodeURIComponent(id) + '/customers?format=csv');
  if (!r.ok) { $('#dConfirmed').hidden = false; $('#dConfirmed').textContent = t('error') + ' (' + r.status + ')'; return; }
  const blob = await r.blob();
  const m = /filename="([^"]+)"/.exec(r.headers.get('Content-Disposition') || '');
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = m ? m[1] : 'customers-' + id + '.csv';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
});

// ---- storm overview ----
async function loadStorm() {
  let d;
  try { d = await api('/api/v1/storm'); } catch (_) { return; }
  $('#storm').hidden = !d.storm;
  $('#stormSummary').textContent = (d.storm ? t('storm_on') + ' · ' : '') + t('customers_out', { n: d.out, a: d.areas_out });
  $('#tiles').innerHTML = d.grids.map((g) => `<div class="grid-block"><h3>${esc(g.grid)} ${g.manager ? '· ' + esc(g.manager) : ''}
    <span class="count">${g.out} / ${g.customers}</span></h3>` + g.feeders.map((f) => `<div class="feeder"><b>${esc(f.feeder || '—')}</b>` +
    f.areas.map((a) => `<span class="tile s-${esc(a.state)}" title="${esc(areaLabel(a.area, a.name))} ${esc(t('st_' + a.state))} ${a.out}/${a.customers}${a.outage ? ' ' + esc(a.outage) : ''}">${esc(areaLabel(a.area, a.name))}<small>${a.out}/${a.customers}</small></span>`).join('') +
    '</div>').join('') + '</div>').join('');
  const top = Math.max(1, ...d.sms.map((m) => m.queued));
  const bar = (v) => `${v} <progress max="${top}" value="${v}"></progress>`;
  rows($('#smsTable tbody'), d.sms.slice().reverse(), (m) => [['c_minute', fmt(m.at, false)], ['c_queued', bar(m.queued)],
    ['c_sent', bar(m.sent)], ['c_delivered', bar(m.delivered)], ['c_failed', m.failed, m.failed ? 'bad' : '']]);
  empty('#noSms', d.sms);
}

// ---- hotline ----
$('#hotlineForm').addEventListener('submit', async (e) => {
  e.preventDefault();
  const out = $('#hotlineResult');
  let d;
  try {
    d = await api('/api/v1/hotline?q=' + encodeURIComponent($('#hotlineQ').value.trim()));
  } catch (err) {
    out.innerHTML = `<p class="empty">${esc(err.status === 404 ? t('no_customer') : t('error') + ': ' + err.message)}</p>`;
    return;
  }
  out.innerHTML = d.customers.map((c) => {
    const o = c.outage;
    // One state (c.state): out, back (verified powered while the outage
    // goes on for others; the restored SMS went out), powered, or unknown.
    const live = o && (o.status === 'active' || o.status === 'scheduled');
    const head = c.state === 'out' ? `<p class="verdict dark">${t('in_outage')}</p>`
      : c.state === 'unknown' ? `<p class="verdict">${t(live ? 'unknown_in_outage' : 'unknown_state')}</p>`
      : `<p class="verdict good">${t(c.state === 'back' && live ? 'back_in_outage' : 'not_in_outage')}</p>`;
    const outage = o ? `<p>${live ? '' : t('last_outage') + ': '}${esc(outageName(o))} · ${esc(word('k_', o.kind))} · ${esc(word('s_', o.status))}
      · ${t('since')} ${fmt(o.start)} · ${t('etr')} ${fmt(o.etr)}${o.cause ? ' · ' + t('cause') + ' ' + esc(causeText(o)) : ''}</p>` : '';
    const msgs = c.messages.map((m) => `<tr><td data-label="${t('c_time')}">${fmt(m.at)}</td><td data-label="${t('c_kind')}">${esc(word('kind_', m.kind) || m.kind)}</td>
      <td data-label="${t('c_ref')}">${esc(m.ref)}</td><td data-label="${t('c_phone')}">${phones([m.phone])}</td>
      <td data-label="${t('c_result')}"><span class="${m.delivered ? 'good' : m.failed ? 'bad' : ''}">${esc(smsWord(m.status))}</span></td></tr>`).join('');
    return `<div class="hotline-card"><h3>${esc(c.name)} · ${esc(c.account)} · ${clsBadge(c.class)} · ${esc(c.grid)}</h3>${head}${outage}
      <p>${t('c_phones')}: ${phones(c.phones)} · ${c.state === 'unknown' ? `<span>${t('power_unknown')}</span>` : power(c.powered)}</p><h3>${t('messages')}</h3>
      ${msgs ? `<table class="list"><thead><tr><th>${t('c_time')}</th><th>${t('c_kind')}</th><th>${t('c_ref')}</th><th>${t('c_phone')}</th><th>${t('c_result')}</th></tr></thead><tbody>${msgs}</tbody></table>` : `<p class="empty">${t('no_messages')}</p>`}</div>`;
  }).join('');
});

// ---- quality and audit ----
async function loadQuality() {
  const d = await api('/api/v1/contacts/quality');
  rows($('#qualityTable tbody'), d.grids || [], (g) => [['c_grid', esc(g.grid)], ['q_accounts', g.accounts, 'num'], ['q_valid', g.valid, 'num'],
    ['q_fixed', g.fixed, 'num'], ['q_landline', g.landline_only, 'num'], ['q_invalid', g.invalid, 'num' + (g.invalid ? ' bad' : '')],
    ['q_missing', g.missing, 'num'], ['q_opted_out', g.opted_out, 'num'], ['q_rate', (100 * g.valid_list_rate).toFixed(1) + '%', 'num']]);
}
async function loadAudit() {
  const d = await api('/api/v1/audit?limit=200');
  rows($('#auditTable tbody'), d.entries, (e) => [['c_time', fmt(e.at)], ['c_who', esc(e.name)], ['c_role', esc(word('role_', e.role))],
    ['c_action', esc(word('a_', e.action) || e.action)], ['c_target', esc(e.target)], ['c_detail', esc(e.detail)]]);
}

applyLang();
boot();
