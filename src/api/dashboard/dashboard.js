// flashsale launch control: one page, no dependencies. Reads the operator API of the server that
// served it every second; the token lives in sessionStorage only.
'use strict';
(function () {
  const OUTCOMES = [['ok', '#1f9d55'], ['sold_out', '#3f6ad8'], ['limit_exceeded', '#8b5cf6'],
    ['launch_not_open', '#9ca3af'], ['overloaded', '#d97706'], ['rate_limited', '#db2777'],
    ['unavailable', '#c81e1e'], ['not_found', '#6b7280'], ['error', '#7f1d1d'], ['rejected', '#d1d5db']];
  const HISTORY = 600;
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem('fs_token') || '';
  let launch = sessionStorage.getItem('fs_launch') || '';
  let series = new Map(); // unix second -> series entry
  let loadedFor = '';     // the launch whose 10 minutes are loaded
  let timer = null, busy = false, current = null;

  function api(method, path, body) {
    const opts = { method, headers: { Authorization: 'Bearer ' + token } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then((r) => r.json().catch(() => ({})).then((j) => {
      if (r.status === 401) { signOut('The token was refused.'); throw new Error('unauthorized'); }
      if (!r.ok) throw new Error((j.error || r.status) + ': ' + (j.message || r.statusText));
      return j;
    }));
  }

  function say(text, isError) {
    const m = $('msg');
    m.textContent = text;
    m.className = 'msg' + (isError ? ' error' : '');
  }

  function signOut(why) {
    sessionStorage.removeItem('fs_token');
    token = '';
    clearInterval(timer);
    $('main-view').hidden = true;
    $('login-view').hidden = false;
    $('who').textContent = '';
    $('login-error').textContent = why || '';
  }

  function signIn(ev) {
    ev.preventDefault();
    token = $('token').value.trim();
    const l = $('launch-input').value.trim();
    if (l) launch = l;
    start();
  }

  function start() {
    api('GET', '/admin/v1/whoami').then((me) => {
      sessionStorage.setItem('fs_token', token);
      $('token').value = '';
      $('who').textContent = me.name + ' (' + me.role + ')';
      $('login-view').hidden = true;
      $('main-view').hidden = false;
      const viewer = me.role !== 'operator';
      for (const id of ['btn-open', 'btn-pause', 'btn-close', 'btn-pause-all', 'restock-btn'])
        $(id).disabled = viewer;
      return api('GET', '/admin/v1/launches');
    }).then((list) => {
      const sel = $('launch-select');
      sel.textContent = '';
      const ids = list.launches.slice();
      if (launch && ids.indexOf(launch) < 0) ids.push(launch);
      if (!launch && ids.length) launch = ids[ids.length - 1];
      for (const id of ids) {
        const o = document.createElement('option');
        o.value = o.textContent = id;
        sel.appendChild(o);
      }
      sel.value = launch;
      clearInterval(timer);
      timer = setInterval(refresh, 1000);
      refresh();
    }).catch((e) => { if (e.message !== 'unauthorized') $('login-error').textContent = e.message; });
  }

  function refresh() {
    if (!launch || busy) return;
    busy = true;
    sessionStorage.setItem('fs_launch', launch);
    const full = loadedFor !== launch;
    const want = launch;
    Promise.all([
      api('GET', '/admin/v1/launches/' + encodeURIComponent(launch) + '/stats?window=5&seconds=' + (full ? HISTORY : 5)),
      api('GET', '/admin/v1/launches/' + encodeURIComponent(launch) + '/audit?count=20'),
    ]).then(([st, audit]) => {
      if (want !== launch) return;
      if (full) { series = new Map(); loadedFor = launch; }
      for (const s of st.series) series.set(s.t, s);
      const newest = st.series.length ? st.series[st.series.length - 1].t : 0;
      for (const t of series.keys()) if (t <= newest - HISTORY) series.delete(t);
      current = st.current;
      render(st);
      renderAudit(audit.entries);
    }).catch((e) => { if (e.message !== 'unauthorized') say(e.message, true); })
      .finally(() => { busy = false; });
  }

  function fmt(n, digits) { return n === null || n === undefined ? '-' : Number(n).toFixed(digits); }

  function render(st) {
    const c = st.current, w = st.window;
    $('launch-name').textContent = c.name;
    const state = $('state');
    state.textContent = c.state;
    state.className = 'state ' + c.state;
    const tb = $('skus').tBodies[0];
    tb.textContent = '';
    const rs = $('restock-sku'), keep = rs.value;
    rs.textContent = '';
    for (const s of c.skus) {
      const tr = document.createElement('tr');
      tr.dataset.sku = s.sku;
      const bar = document.createElement('div');
      bar.className = 'bar';
      for (const part of ['sold', 'held', 'available']) {
        const d = document.createElement('div');
        d.className = part;
        d.style.width = (s.total > 0 ? (100 * s[part] / s.total) : 0) + '%';
        bar.appendChild(d);
      }
      const cells = [s.sku, bar, s.total, s.available, s.held, s.sold, s.per_user_limit];
      const names = ['sku', 'bar', 'total', 'available', 'held', 'sold', 'limit'];
      cells.forEach((v, i) => {
        const td = document.createElement('td');
        td.className = names[i] + (i >= 2 ? ' num' : '');
        if (v instanceof Element) td.appendChild(v); else td.textContent = v;
        tr.appendChild(td);
      });
      tb.appendChild(tr);
      const o = document.createElement('option');
      o.value = o.textContent = s.sku;
      rs.appendChild(o);
    }
    if (keep) rs.value = keep;
    $('rps-total').textContent = fmt(w.per_second.total, 1);
    $('rps-ok').textContent = fmt(w.per_second.ok, 1);
    $('rps-soldout').textContent = fmt(w.per_second.sold_out, 1);
    $('p50').textContent = fmt(w.p50_ms, 2);
    $('p99').textContent = fmt(w.p99_ms, 2);
    $('share-ratelimited').textContent = fmt(100 * w.rate_limited_share, 1) + '%';
    $('share-overloaded').textContent = fmt(100 * w.overloaded_share, 1) + '%';
    let total = 0;
    for (const s of series.values()) total += s.total;
    $('total-10m').textContent = total;
    drawCharts();
  }

  function renderAudit(entries) {
    const tb = $('audit').tBodies[0];
    tb.textContent = '';
    for (const e of entries) {
      const tr = document.createElement('tr');
      let change;
      if (e.action === 'restock') change = 'delta ' + e.detail.delta + ': available ' + e.before.available + ' → ' + e.after.available;
      else if (!e.before) change = 'created (' + e.after.state + ')';
      else change = e.before.state + ' → ' + e.after.state;
      for (const v of [e.at, e.who, e.action, e.sku || '', change]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.appendChild(td);
      }
      tb.appendChild(tr);
    }
  }

  function axes(ctx, W, H, max, label) {
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = '#6b7280';
    ctx.font = '11px sans-serif';
    ctx.fillText(label + ' max ' + (max >= 10 ? Math.round(max) : max.toFixed(2)), 4, 12);
    ctx.fillText('-10 min', 4, H - 3);
    ctx.fillText('now', W - 24, H - 3);
  }

  function drawCharts() {
    const now = Math.max(...series.keys(), Math.floor(Date.now() / 1000) - 1);
    const ts = [];
    for (let t = now - HISTORY + 1; t <= now; t++) ts.push(t);
    // reservations per second, stacked by outcome
    const cv = $('chart-rps'), ctx = cv.getContext('2d'), W = cv.width, H = cv.height;
    let max = 1;
    for (const t of ts) { const s = series.get(t); if (s && s.total > max) max = s.total; }
    axes(ctx, W, H, max, 'req/s');
    const dx = W / ts.length;
    ts.forEach((t, i) => {
      const s = series.get(t);
      if (!s) return;
      let y = H - 14;
      for (const [name, color] of OUTCOMES) {
        const v = s[name] || 0;
        if (!v) continue;
        const h = (H - 30) * v / max;
        ctx.fillStyle = color;
        ctx.fillRect(i * dx, y - h, Math.max(dx, 1), h);
        y -= h;
      }
    });
    const lg = $('chart-legend');
    if (!lg.childNodes.length) {
      for (const [name, color] of OUTCOMES) {
        const sw = document.createElement('span');
        sw.className = 'sw';
        sw.style.background = color;
        lg.appendChild(sw);
        lg.appendChild(document.createTextNode(name));
      }
    }
    // latency
    const lv = $('chart-lat'), lc = lv.getContext('2d'), LW = lv.width, LH = lv.height;
    let lmax = 0.1;
    for (const t of ts) { const s = series.get(t); if (s && s.p99_ms > lmax) lmax = s.p99_ms; }
    axes(lc, LW, LH, lmax, 'ms');
    for (const [key, color] of [['p50_ms', '#1f9d55'], ['p99_ms', '#c81e1e']]) {
      lc.strokeStyle = color;
      lc.beginPath();
      let pen = false;
      ts.forEach((t, i) => {
        const s = series.get(t);
        if (!s || s[key] === null || s[key] === undefined) { pen = false; return; }
        const x = i * dx + dx / 2, y = LH - 14 - (LH - 30) * s[key] / lmax;
        if (pen) lc.lineTo(x, y); else lc.moveTo(x, y);
        pen = true;
      });
      lc.stroke();
    }
  }

  function act(action) {
    const what = { open: 'Open', pause: 'Pause', close: 'Close (for good: a closed launch cannot reopen)' }[action];
    if (!window.confirm(what + ' launch ' + launch + '?')) return;
    api('POST', '/admin/v1/launches/' + encodeURIComponent(launch) + '/' + action)
      .then((l) => { say('Launch ' + l.launch + ' is now ' + l.state + '.'); refresh(); })
      .catch((e) => say(e.message, true));
  }

  function pauseAll() {
    if (!window.confirm('Pause EVERY open launch?')) return;
    api('POST', '/admin/v1/pause-all')
      .then((r) => { say('Paused ' + r.count + ' launch(es): ' + r.paused.join(', ')); refresh(); })
      .catch((e) => say(e.message, true));
  }

  function restock(ev) {
    ev.preventDefault();
    const sku = $('restock-sku').value, delta = parseInt($('restock-delta').value, 10);
    if (!sku || !delta) { say('Choose a SKU and a non-zero number of units.', true); return; }
    if (delta < 0 && !window.confirm('Remove ' + (-delta) + ' units from ' + sku + '?')) return;
    api('POST', '/admin/v1/launches/' + encodeURIComponent(launch) + '/skus/' + encodeURIComponent(sku) + '/restock', { delta })
      .then((r) => { say('Restocked ' + sku + ': ' + r.available + ' available of ' + r.total + '.'); refresh(); })
      .catch((e) => say(e.message, true));
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', signIn);
    $('logout').addEventListener('click', () => signOut(''));
    $('btn-open').addEventListener('click', () => act('open'));
    $('btn-pause').addEventListener('click', () => act('pause'));
    $('btn-close').addEventListener('click', () => act('close'));
    $('btn-pause-all').addEventListener('click', pauseAll);
    $('restock-form').addEventListener('submit', restock);
    $('launch-select').addEventListener('change', (e) => { launch = e.target.value; say(''); refresh(); });
    if (token) start();
  });
})();
