// Tandem dashboard: one WebSocket to the monitor that served this page,
// uPlot charts of the last minutes, and control buttons. Plain script (no
// build step); the schema is docs/monitoring.md, version 1.
/* global uPlot */
'use strict';

(function () {
  const SCHEMA_VERSION = 1;
  const WINDOW_S = 120; // seconds of history on the rate charts
  const MAX_POINTS = 600; // per-epoch charts
  const $ = (id) => document.getElementById(id);

  const perEpoch = { ts: [], pause: [], dirty: [] };
  // Per-second buckets for rates: key = whole second (wall clock, from the event ts).
  const buckets = new Map();
  let lastEpochAt = null; // performance.now() when the last epoch arrived
  let lagAtSnapshot = null;
  let snapshotAt = 0;
  let dirty = false;
  let requestSeq = 0;
  let socket = null;
  let retryMs = 500;

  function chart(id, label, color) {
    const el = $(id);
    const opts = {
      width: Math.max(300, el.clientWidth || 360),
      height: 180,
      scales: { x: { time: true } },
      legend: { show: false },
      series: [{}, { label, stroke: color, width: 1.5, fill: color + '22', points: { show: false } }],
      axes: [{ stroke: '#8a8f98', grid: { stroke: '#ffffff14' } }, { stroke: '#8a8f98', grid: { stroke: '#ffffff14' }, size: 60 }],
    };
    const plot = new uPlot(opts, [[], []], el);
    return { el, plot, points: 0 };
  }

  let charts = null;
  function makeCharts() {
    charts = {
      pause: chart('chart-pause', 'pause ms', '#59c2ff'),
      dirty: chart('chart-dirty', 'dirty pages', '#ffb454'),
      rate: chart('chart-rate', 'epochs/s', '#7fd962'),
      bytes: chart('chart-bytes', 'bytes/s', '#d2a6ff'),
      div: chart('chart-div', 'divergences/s', '#f07178'),
    };
    window.addEventListener('resize', () => {
      for (const c of Object.values(charts)) c.plot.setSize({ width: Math.max(300, c.el.clientWidth), height: 180 });
    });
  }

  function bucket(tsMs) {
    const key = Math.floor(tsMs / 1000);
    let b = buckets.get(key);
    if (!b) {
      b = { epochs: 0, bytes: 0, divergences: 0 };
      buckets.set(key, b);
    }
    return b;
  }

  function addEpoch(e, ts) {
    perEpoch.ts.push(ts / 1000);
    perEpoch.pause.push(e.pauseUs === null ? null : e.pauseUs / 1000);
    perEpoch.dirty.push(e.dirtyPages);
    if (perEpoch.ts.length > MAX_POINTS) for (const k of Object.keys(perEpoch)) perEpoch[k].shift();
    const b = bucket(ts);
    b.epochs += 1;
    b.bytes += e.bytes;
    $('last-epoch').textContent = String(e.epoch);
    dirty = true;
  }

  function setData(c, xs, ys) {
    c.plot.setData([xs, ys]);
    c.points = xs.length;
    c.el.dataset.points = String(xs.length);
  }

  function redraw() {
    if (!dirty || !charts) return;
    dirty = false;
    setData(charts.pause, perEpoch.ts, perEpoch.pause);
    setData(charts.dirty, perEpoch.ts, perEpoch.dirty);
    const now = Math.floor(Date.now() / 1000);
    for (const k of buckets.keys()) if (k < now - WINDOW_S) buckets.delete(k);
    // Whole seconds only: the current one is still filling.
    const xs = [], rate = [], bytes = [], div = [];
    for (let s = now - WINDOW_S; s < now; s++) {
      const b = buckets.get(s);
      xs.push(s);
      rate.push(b ? b.epochs : 0);
      bytes.push(b ? b.bytes : 0);
      div.push(b ? b.divergences : 0);
    }
    setData(charts.rate, xs, rate);
    setData(charts.bytes, xs, bytes);
    setData(charts.div, xs, div);
  }

  function setState(state, reason) {
    const el = $('state');
    el.textContent = state;
    el.dataset.state = state;
    $('reason').textContent = reason;
  }

  function setMode(mode, intervalMs) {
    $('mode').textContent = mode === null ? 'n/a' : mode;
    $('interval').textContent = intervalMs === null ? '–' : `${intervalMs} ms`;
  }

  function note(text) {
    const li = document.createElement('li');
    li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    const list = $('events');
    list.prepend(li);
    while (list.children.length > 100) list.lastChild.remove();
  }

  function offer(actions) {
    for (const b of document.querySelectorAll('button[data-action]')) b.disabled = !actions.includes(b.dataset.action);
  }

  // Same words as `tandem status` (src/monitor/view.ts, arbiterLine).
  function showArbiter(a) {
    const el = $('arbiter');
    el.dataset.kind = a.kind;
    if (a.kind === 'none') el.textContent = 'none (each node decides alone: a partition can make both serve)';
    else if (a.holder === null) el.textContent = 'etcd: nobody holds it';
    else el.textContent = `${a.holder} holds it at generation ${a.generation ?? '?'}, ${a.protected ? 'protected' : 'unprotected'}`;
  }

  function onEvent(e) {
    if (e.v !== SCHEMA_VERSION) {
      note(`schema version ${e.v} not understood (this page reads ${SCHEMA_VERSION})`);
      return;
    }
    switch (e.type) {
      case 'snapshot':
        $('node').textContent = e.node;
        setState(e.state, e.reason);
        setMode(e.mode, e.intervalMs);
        offer(e.actions);
        $('last-epoch').textContent = String(e.lastEpoch);
        showArbiter(e.arbiter);
        lagAtSnapshot = e.lagMs;
        snapshotAt = performance.now();
        lastEpochAt = null;
        for (const k of Object.keys(perEpoch)) perEpoch[k].length = 0;
        buckets.clear();
        for (const r of e.recent) addEpoch(r, r.ts);
        dirty = true;
        break;
      case 'epoch':
        addEpoch(e, e.ts);
        lastEpochAt = performance.now();
        break;
      case 'divergence':
        bucket(e.ts).divergences += 1;
        dirty = true;
        note(`divergence${e.connection ? ` on ${e.connection}` : ''}: ${e.reason}`);
        break;
      case 'state':
        setState(e.state, e.reason);
        note(`state ${e.previous} → ${e.state}: ${e.reason}`);
        break;
      case 'mode':
        setMode(e.mode, e.intervalMs);
        note(`mode ${e.mode}${e.intervalMs === null ? '' : ` (${e.intervalMs} ms)`}: ${e.reason}`);
        break;
      case 'control':
        note(`control ${e.action} by ${e.by}: ${e.ok ? 'done' : `refused (${e.code})`}`);
        break;
      case 'dropped':
        note(`this page fell behind and missed ${e.count} events`);
        break;
      case 'reply':
        result('ok', `${e.action}: done${e.result ? ` ${JSON.stringify(e.result)}` : ''}`);
        break;
      case 'error':
        result(e.code === 'ERR_MONITOR_UNAUTHORIZED' || e.code === 'ERR_MONITOR_RATE_LIMITED' ? 'refused' : 'error', `${e.message} [${e.code}]`);
        if (e.code === 'ERR_MONITOR_UNAUTHORIZED') $('token').focus();
        break;
      default:
        break; // newer event types are ignored, as the schema allows
    }
  }

  function result(outcome, text) {
    const out = $('control-result');
    out.dataset.outcome = outcome;
    out.textContent = text;
  }

  function updateLag() {
    let lag = null;
    if (lastEpochAt !== null) lag = performance.now() - lastEpochAt;
    else if (lagAtSnapshot !== null) lag = lagAtSnapshot + (performance.now() - snapshotAt);
    $('lag').textContent = lag === null ? '–' : lag < 1000 ? `${Math.round(lag)} ms` : `${(lag / 1000).toFixed(1)} s`;
  }

  function send(action) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      result('error', 'not connected');
      return;
    }
    const msg = { type: 'control', id: ++requestSeq, action };
    const token = $('token').value;
    // Sent even without a token: the monitor decides, and says why it refuses.
    if (token !== '') msg.token = token;
    if (action === 'set-interval') msg.intervalMs = Number($('interval-ms').value);
    if (action === 'set-mode') msg.mode = $('mode-select').value;
    if (action === 'failover' && !window.confirm('Fail over to this node now? The current primary will be fenced.')) return;
    result('pending', `${action}…`);
    socket.send(JSON.stringify(msg));
  }

  // Browsers cannot set headers on a WebSocket: a monitor that needs the token
  // to be read gets it as a subprotocol, which the monitor never echoes back.
  function protocols() {
    const token = $('token').value;
    if (token === '') return ['tandem.v1'];
    const bytes = new TextEncoder().encode(token);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    const b64url = btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    return ['tandem.v1', `tandem-token.${b64url}`];
  }

  let opened = false;
  // When a live stream was lost. It stays set through every failed retry, so
  // the page keeps saying the stream was lost (and since when) rather than
  // turning into "refused or unreachable" at the first retry, until a stream
  // is live again.
  let lostSince = null;
  let retryTimer = null;
  function connect() {
    clearTimeout(retryTimer);
    if (socket && socket.readyState !== WebSocket.CLOSED) {
      socket.onclose = null; // replaced, not lost: no retry from the old one
      socket.close();
    }
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    opened = false;
    socket = new WebSocket(url, protocols());
    $('link').textContent = lostSince ? `lost since ${lostSince}; reconnecting` : 'connecting';
    socket.onopen = () => {
      opened = true;
      lostSince = null;
      retryMs = 500;
      $('link').textContent = 'live';
    };
    socket.onmessage = (m) => {
      let e;
      try {
        e = JSON.parse(m.data);
      } catch {
        return;
      }
      onEvent(e);
    };
    socket.onclose = () => {
      if (opened) lostSince = new Date().toLocaleTimeString();
      const wait = Math.max(1, Math.round(retryMs / 1000));
      $('link').textContent = lostSince
        ? `lost since ${lostSince}; retrying in ${wait} s`
        : `refused or unreachable (if this monitor needs the token to be read, enter it); retrying in ${wait} s`;
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10_000);
    };
  }

  document.addEventListener('DOMContentLoaded', () => {
    makeCharts();
    for (const b of document.querySelectorAll('button[data-action]')) b.addEventListener('click', () => send(b.dataset.action));
    $('controls').addEventListener('submit', (ev) => ev.preventDefault());
    // A token entered while the stream is refused is tried at once.
    $('token').addEventListener('change', () => {
      if (!socket || socket.readyState !== WebSocket.OPEN) connect();
    });
    setInterval(redraw, 500);
    setInterval(updateLag, 250);
    connect();
  });
})();
