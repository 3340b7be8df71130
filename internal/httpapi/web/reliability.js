// The monthly reliability view for grid managers (docs/interfaces.md §9):
// one table of the month and, per grid, a small bar chart of SAIDI over the
// last six months. It calls /api/v1/reliability with the session or the
// token the main page stored; nothing is fetched from anywhere else.
'use strict';
const $ = (s) => document.querySelector(s);
const token = sessionStorage.getItem('gridbell-token') || '';

function api(path) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  return fetch(path, { headers, credentials: 'same-origin' });
}

function monthRange(m) { // "2026-11" → ["2026-11-01", "2026-12-01"]
  const [y, mo] = m.split('-').map(Number);
  const next = mo === 12 ? [y + 1, 1] : [y, mo + 1];
  const pad = (n) => String(n).padStart(2, '0');
  return [`${y}-${pad(mo)}-01`, `${next[0]}-${pad(next[1])}-01`];
}

function query(m, by, planned, fmt) {
  const [from, to] = monthRange(m);
  let q = `/api/v1/reliability?from=${from}&to=${to}&by=${by}&planned=${planned}`;
  if (fmt) q += '&format=' + fmt;
  return q;
}

function cell(tr, text) {
  const td = document.createElement('td');
  td.textContent = text;
  tr.appendChild(td);
}

function fillTable(rep) {
  const body = $('#table tbody');
  body.replaceChildren();
  $('#keyHead').textContent = { grid: '网格 grid', feeder: '线路 feeder', area: '台区 area' }[rep.by];
  for (const r of [...rep.rows, rep.total]) {
    const tr = document.createElement('tr');
    if (r === rep.total) tr.className = 'total';
    const p = r.proactive;
    [r.key, r.customers_served, r.interruptions, r.customer_minutes, r.saifi, r.saidi, r.caidi, r.maifi,
      r.frequent_outage_customers, p.notified, p.called, p.called_before_sms, p.median_lead_s ? Math.round(p.median_lead_s) + ' s' : '–']
      .forEach((v) => cell(tr, v));
    body.appendChild(tr);
  }
}

const svgNS = 'http://www.w3.org/2000/svg';

function chart(title, points) { // points: [{label, value}]
  const box = document.createElement('figure');
  const cap = document.createElement('figcaption');
  cap.textContent = title;
  box.appendChild(cap);
  const w = 180, h = 80, max = Math.max(1, ...points.map((p) => p.value));
  const svg = document.createElementNS(svgNS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h + 14}`);
  svg.setAttribute('width', w);
  svg.setAttribute('role', 'img');
  const bw = w / points.length;
  points.forEach((p, i) => {
    const bh = Math.round((p.value / max) * h);
    const r = document.createElementNS(svgNS, 'rect');
    r.setAttribute('x', i * bw + 2);
    r.setAttribute('y', h - bh);
    r.setAttribute('width', bw - 4);
    r.setAttribute('height', bh);
    r.setAttribute('fill', '#3b6ea5');
    const t = document.createElementNS(svgNS, 'title');
    t.textContent = `${p.label}: ${p.value}`;
    r.appendChild(t);
    svg.appendChild(r);
    const l = document.createElementNS(svgNS, 'text');
    l.setAttribute('x', i * bw + bw / 2);
    l.setAttribute('y', h + 12);
    l.setAttribute('font-size', '9');
    l.setAttribute('text-anchor', 'middle');
    l.textContent = p.label.slice(5);
    svg.appendChild(l);
  });
  box.appendChild(svg);
  return box;
}

async function fillCharts(m, planned) {
  const months = [];
  let [y, mo] = m.split('-').map(Number);
  for (let i = 0; i < 6; i++) {
    months.unshift(`${y}-${String(mo).padStart(2, '0')}`);
    mo--;
    if (mo === 0) { mo = 12; y--; }
  }
  const reps = await Promise.all(months.map((x) => api(query(x, 'grid', planned)).then((r) => (r.ok ? r.json() : { rows: [] }))));
  const grids = new Map();
  reps.forEach((rep, i) => {
    for (const r of rep.rows) {
      if (!grids.has(r.key)) grids.set(r.key, months.map((label) => ({ label, value: 0 })));
      grids.get(r.key)[i].value = r.saidi;
    }
  });
  const charts = $('#charts');
  charts.replaceChildren();
  for (const [g, pts] of [...grids].sort()) charts.appendChild(chart(g, pts));
}

async function show(ev) {
  if (ev) ev.preventDefault();
  const m = $('#month').value, by = $('#by').value, planned = $('#planned').value;
  $('#status').textContent = '…';
  const res = await api(query(m, by, planned));
  if (!res.ok) {
    $('#status').textContent = res.status === 401 ? '请先在工作台登录 · log in on the workspace first' : 'error ' + res.status;
    return;
  }
  fillTable(await res.json());
  $('#status').textContent = '';
  fillCharts(m, planned);
}

async function csv() {
  const res = await api(query($('#month').value, $('#by').value, $('#planned').value, 'csv'));
  if (!res.ok) return;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(await res.blob());
  a.download = `reliability-${$('#month').value}.csv`;
  a.click();
  URL.revokeObjectURL(a.href);
}

const now = new Date();
now.setMonth(now.getMonth() - 1); // a manager reviews the month just past
$('#month').value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}`;
$('#ask').addEventListener('submit', show);
$('#csv').addEventListener('click', csv);
show();
