// Tandem dashboard: one WebSocket to the monitor that served this page,
// uPlot charts over one time window, the pair, pre-copy progress, the events
// and control buttons. Plain script (no build step); the schema is
// docs/monitoring.md, version 1. Fields a monitor may not send yet (the pair's
// `peer`, `history`, `generation`, ...) are read when present and shown as
// n/a when absent.
/* global uPlot */
'use strict';

(function () {
  const SCHEMA_VERSION = 1;
  const MAX_WINDOW_S = 3600; // the longest window offered; older seconds are let go
  const MAX_EVENTS = 100;
  const CHART_HEIGHT = 170;
  // Fields without events of their own (service clients, held output) are asked for this often; a
  // status reply is a whole snapshot, so not more often, and not while the page is not seen.
  const STATUS_POLL_MS = 5000;
  const AXIS_FONT = '12px system-ui, sans-serif';
  const TICK_SIZE = 8;
  const TICK_GAP = 5;
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------
  // Formatting: every number the page shows carries its unit.

  function decimalsFor(step) {
    // Enough decimals that ticks one step apart read differently (0.25 needs 2).
    let d = 0;
    while (d < 4 && Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) > 1e-6 * 10 ** d) d++;
    return d;
  }

  function fixed(v, maxDecimals) {
    return Number(v.toFixed(maxDecimals)).toString();
  }

  /** Decimal byte units, as the logs print them. */
  const BYTE_UNITS = [[1e9, 'GB'], [1e6, 'MB'], [1e3, 'kB'], [1, 'B']];
  function byteUnit(max) {
    for (const [div, name] of BYTE_UNITS) if (max >= div) return [div, name];
    return [1, 'B'];
  }
  function bytes(n) {
    const [div, name] = byteUnit(n);
    return `${fixed(n / div, div === 1 ? 0 : 1)} ${name}`;
  }
  const rate = (bps) => `${bytes(bps)}/s`;

  function duration(ms) {
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${fixed(s, s < 10 ? 1 : 0)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function lagText(ms) {
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  const two = (n) => String(n).padStart(2, '0');
  function clock(ms, seconds = true) {
    const d = new Date(ms);
    return `${two(d.getHours())}:${two(d.getMinutes())}${seconds ? `:${two(d.getSeconds())}` : ''}`;
  }
  function dateTime(ms) {
    const d = new Date(ms);
    const today = new Date();
    const sameDay = d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() && d.getDate() === today.getDate();
    return sameDay ? clock(ms) : `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${clock(ms)}`;
  }

  // Axis units: the unit is chosen from the largest tick, so all ticks of an axis share it.
  const AXIS_UNITS = {
    // Values in ms.
    ms: (max) => (max >= 1000 ? [1000, ' s'] : max > 0 && max < 1 ? [0.001, ' µs'] : [1, ' ms']),
    // Values in bytes per second.
    bytesPerSecond: (max) => {
      const [div, name] = byteUnit(max);
      return [div, ` ${name}/s`];
    },
    perSecond: () => [1, '/s'],
    pages: (max) => (max >= 10_000 ? [1000, 'k pages'] : [1, ' pages']),
  };

  const WHOLE_STEPS = [];
  for (let e = 0; e <= 12; e++) for (const m of [1, 2, 5]) WHOLE_STEPS.push(m * 10 ** e);

  let measureCtx = null;
  function textWidth(text) {
    if (measureCtx === null) {
      measureCtx = document.createElement('canvas').getContext('2d');
      measureCtx.font = AXIS_FONT;
    }
    return measureCtx.measureText(text).width;
  }

  // ---------------------------------------------------------------------------
  // What the page knows.

  let windowS = 300;
  /** Whole seconds of the monitor's clock -> what happened in them. */
  const buckets = new Map();
  /** Monitor-clock ms where this page's data starts: the charts start there, never earlier. */
  let dataStartMs = null;
  /** The monitor's clock minus this browser's, from the last snapshot (event times are the monitor's). */
  let clockOffsetMs = 0;
  const serverNow = () => Date.now() + clockOffsetMs;

  let role = null;
  let mode = null;
  let state = null;
  let stateReason = '';
  let lastEpoch = 0;
  let lastEpochAt = null; // performance.now() when the last epoch arrived
  let lagAtSnapshot = null;
  let snapshotAt = 0;
  /** performance.now() since which the guest runs without a standby; null: protected, or not known yet. */
  let unprotectedSince = null;
  let precopy = null;
  /** What the last snapshot or status reply said of this node and its peer (undefined: the monitor does not send it). */
  let self = {};
  let peer;
  let lastFailover;
  let lastPeerKey = null;

  /**
   * A monitor may show several domains (docs/monitoring.md, "Several
   * domains"): the page follows one, `picked`, and keeps a line on each for
   * the overview. name -> { state, lastEpoch, lastEpochAt, lagAtSnapshot, snapshotAt }.
   */
  const domains = new Map();
  /** The domain the page shows; null until the first snapshot (or an older monitor, without domains). */
  let picked = null;
  /** Asked for in the address (#domain=NAME) or last picked here. */
  let wanted = null;

  let dirty = false;
  let drawnSecond = 0;
  let requestSeq = 0;
  const statusRequests = new Set();
  let socket = null;
  let retryMs = 500;

  // ---------------------------------------------------------------------------
  // Charts: per-second buckets, one window for all of them.

  let xMin = 0;
  let xMax = 1;

  function chart(id, unit, color) {
    const el = $(id);
    const c = { el, unit, plot: null, points: 0, x: { splits: [], texts: [] }, y: { splits: [], texts: [] }, ySize: 50 };
    const xLabelW = textWidth('00:00:00');
    const opts = {
      width: Math.max(1, el.clientWidth),
      height: CHART_HEIGHT,
      // Room on the right for the last time label, above for the top value's.
      padding: [10, Math.ceil(xLabelW / 2) + 4, 0, 0],
      scales: {
        x: { time: true, range: () => [xMin, xMax] },
        y: { range: (u, min, max) => [0, max === null || !(max > 0) ? 1 : max * 1.15] },
      },
      legend: { show: false },
      cursor: { show: false },
      series: [{}, { stroke: color, width: 1.5, fill: color + '22', points: { show: false }, spanGaps: false }],
      axes: [
        {
          stroke: '#8a8f98',
          font: AXIS_FONT,
          grid: { stroke: '#ffffff14' },
          ticks: { size: TICK_SIZE },
          gap: TICK_GAP,
          // Labels at least a label's width and a gap apart, whatever the chart's width.
          space: xLabelW + 24,
          values: (u, splits, _i, _space, incr) => {
            const texts = splits.map((v) => (v === null ? '' : clock(v * 1000, incr < 60)));
            c.x = { splits, texts };
            return texts;
          },
        },
        {
          stroke: '#8a8f98',
          font: AXIS_FONT,
          grid: { stroke: '#ffffff14' },
          ticks: { size: TICK_SIZE },
          gap: TICK_GAP,
          space: 28,
          // Counts tick at whole numbers: half a page or half an epoch is no tick to read.
          ...(unit === 'pages' || unit === 'perSecond' ? { incrs: WHOLE_STEPS } : {}),
          values: (u, splits, _i, _space, incr) => {
            const max = Math.max(0, ...splits.filter((v) => v !== null));
            const [div, suffix] = AXIS_UNITS[unit](max);
            const d = decimalsFor(incr / div);
            const texts = splits.map((v) => (v === null ? '' : `${(v / div).toFixed(d)}${v === div && suffix === ' pages' ? ' page' : suffix}`));
            c.y = { splits, texts };
            return texts;
          },
          // As wide as its widest label: nothing clipped, no space wasted.
          size: (u, values) => {
            const w = values ? Math.max(0, ...values.map((t) => textWidth(String(t)))) : 40;
            c.ySize = Math.ceil(w) + TICK_SIZE + TICK_GAP + 4;
            return c.ySize;
          },
        },
      ],
      hooks: { draw: [(u) => recordAxes(c, u)] },
    };
    c.plot = new uPlot(opts, [[], []], el);
    return c;
  }

  /**
   * Where the axis labels were drawn, on the chart element (data-axes), so a
   * reader (the browser test) can check them without reading pixels.
   */
  function recordAxes(c, u) {
    const ratio = uPlot.pxRatio || 1;
    const plotLeft = u.bbox.left / ratio;
    const x = [];
    c.x.splits.forEach((v, i) => {
      if (v === null || c.x.texts[i] === '') return;
      const centre = plotLeft + u.valToPos(v, 'x');
      const w = textWidth(c.x.texts[i]);
      x.push({ text: c.x.texts[i], left: Math.round((centre - w / 2) * 10) / 10, right: Math.round((centre + w / 2) * 10) / 10 });
    });
    const y = c.y.texts.filter((t) => t !== '').map((t) => ({ text: t, width: Math.ceil(textWidth(t)) }));
    c.el.dataset.axes = JSON.stringify({ width: u.width, yRoom: c.ySize - TICK_SIZE - TICK_GAP, from: u.scales.x.min, to: u.scales.x.max, x, y });
  }

  let charts = null;
  function makeCharts() {
    charts = {
      pause: chart('chart-pause', 'ms', '#59c2ff'),
      dirty: chart('chart-dirty', 'pages', '#ffb454'),
      rate: chart('chart-rate', 'perSecond', '#7fd962'),
      bytes: chart('chart-bytes', 'bytesPerSecond', '#d2a6ff'),
      div: chart('chart-div', 'perSecond', '#f07178'),
    };
    // A chart follows its box: the window's width, a panel shown or hidden.
    const resized = new ResizeObserver((entries) => {
      for (const entry of entries) {
        const c = Object.values(charts).find((ch) => ch.el === entry.target);
        const width = c ? Math.floor(c.el.clientWidth) : 0;
        if (width > 0 && width !== c.plot.width) c.plot.setSize({ width, height: CHART_HEIGHT });
      }
    });
    for (const c of Object.values(charts)) resized.observe(c.el);
  }

  function bucket(tsMs) {
    const key = Math.floor(tsMs / 1000);
    let b = buckets.get(key);
    if (!b) {
      b = { epochs: 0, bytes: 0, divergences: 0, pauseMaxMs: null, dirty: 0 };
      buckets.set(key, b);
    }
    return b;
  }

  function addEpoch(e, ts) {
    const b = bucket(ts);
    b.epochs += 1;
    b.bytes += e.bytes;
    b.dirty += e.dirtyPages;
    if (e.pauseUs !== null) b.pauseMaxMs = Math.max(b.pauseMaxMs ?? 0, e.pauseUs / 1000);
    lastEpoch = e.epoch;
    $('last-epoch').textContent = String(e.epoch);
    dirty = true;
  }

  function setData(c, xs, ys) {
    c.plot.setData([xs, ys]);
    c.points = xs.length;
    c.el.dataset.points = String(xs.length);
    // The first point's time (ms): a chart never starts before its data.
    c.el.dataset.first = xs.length > 0 ? String(xs[0] * 1000) : '';
  }

  function redraw() {
    if (!charts) return;
    const now = Math.floor(serverNow() / 1000);
    if (!dirty && now === drawnSecond) return;
    dirty = false;
    drawnSecond = now;
    for (const k of buckets.keys()) if (k < now - MAX_WINDOW_S - 1) buckets.delete(k);
    xMin = now - windowS;
    xMax = now;
    // Whole seconds only: the current one is still filling, and a second
    // before the data starts is unknown, not zero.
    const first = dataStartMs === null ? now : Math.max(xMin, Math.ceil(dataStartMs / 1000));
    const xs = [], epochs = [], sent = [], div = [], pause = [], pages = [];
    for (let s = first; s < now; s++) {
      const b = buckets.get(s);
      xs.push(s);
      epochs.push(b ? b.epochs : 0);
      sent.push(b ? b.bytes : 0);
      div.push(b ? b.divergences : 0);
      // Per-epoch values exist only in seconds that had an epoch: a gap, not a zero.
      pause.push(b && b.pauseMaxMs !== null ? b.pauseMaxMs : null);
      pages.push(b && b.epochs > 0 ? b.dirty / b.epochs : null);
    }
    setData(charts.pause, xs, pause);
    setData(charts.dirty, xs, pages);
    setData(charts.rate, xs, epochs);
    setData(charts.bytes, xs, sent);
    setData(charts.div, xs, div);
    applyPanels();
  }

  function divergencesInWindow() {
    for (const [k, b] of buckets) if (k >= xMin && b.divergences > 0) return true;
    return false;
  }

  /** Why a panel does not apply to this node as it runs now; null: it applies. */
  const NOT_APPLICABLE = {
    pause: () => (role === 'secondary' ? 'n/a on a secondary: it applies checkpoints and never pauses the guest' : null),
    div: () => {
      if (mode === 'colo' || divergencesInWindow()) return null;
      if (role === 'secondary') return "n/a on a secondary: the primary compares the replicas' outputs";
      return `n/a in ${mode ?? 'this'} mode: only COLO compares outputs`;
    },
  };

  function applyPanels() {
    for (const [key, why] of Object.entries(NOT_APPLICABLE)) {
      const fig = $(`fig-${key}`);
      const na = role === null ? null : why();
      fig.dataset.na = String(na !== null);
      fig.querySelector('.chart').hidden = na !== null;
      const note = fig.querySelector('.na');
      note.hidden = na === null;
      note.textContent = na ?? '';
    }
    $('caption-dirty').textContent = role === 'secondary' ? 'pages written per checkpoint' : 'dirty pages per epoch';
  }

  // ---------------------------------------------------------------------------
  // State, lag, protection.

  /** The guest this node runs has no standby (a standing-by secondary runs none). */
  function isUnprotected(r, s, reason) {
    if (r === 'primary') return s !== 'protected';
    if (r === 'secondary') return s === 'failed-over' && /; unprotected\b/.test(reason);
    return false;
  }

  function setState(s, reason) {
    const el = $('state');
    el.textContent = s;
    el.dataset.state = s;
    const r = $('reason');
    r.textContent = reason;
    r.title = reason;
    const was = state !== null && isUnprotected(role, state, stateReason);
    state = s;
    stateReason = reason;
    const is = isUnprotected(role, s, reason);
    if (!is) unprotectedSince = null;
    else if (!was) unprotectedSince = performance.now();
    if (s !== 'precopy' && s !== 're-protecting') precopy = null;
    showPrecopy();
    fillSelf();
    updateLag(); // the lag's words change with the state: never one without the other
  }

  /**
   * Since when the guest has been unprotected, for a snapshot that says it
   * is: the kept history's last loss of protection, else the last acked
   * epoch, else (never protected) the process's start, asked of /healthz.
   */
  function unprotectedStart(e) {
    const now = performance.now();
    if (Array.isArray(e.history)) {
      let since = null;
      let protectedNow = null;
      for (const h of e.history) {
        if (!h || h.type !== 'state') continue;
        const p = !isUnprotected(e.node, h.state, h.reason);
        if (protectedNow === true && !p) since = h.ts;
        protectedNow = p;
      }
      if (since !== null) return now - Math.max(0, e.ts - since);
    }
    if (e.lagMs !== null) return now - e.lagMs;
    askUptime();
    return null;
  }

  function askUptime() {
    const token = $('token').value;
    fetch('/healthz', { cache: 'no-store', headers: token === '' ? {} : { authorization: `Bearer ${token}` } })
      .then((r) => r.json())
      .then((h) => {
        if (unprotectedSince === null && isUnprotected(role, state, stateReason) && typeof h.uptimeSeconds === 'number') {
          unprotectedSince = performance.now() - h.uptimeSeconds * 1000;
        }
      })
      .catch(() => {}); // the lag then reads plain "unprotected"
  }

  function currentLag() {
    if (lastEpochAt !== null) return performance.now() - lastEpochAt;
    if (lagAtSnapshot !== null) return lagAtSnapshot + (performance.now() - snapshotAt);
    return null;
  }

  function lagNow() {
    if (state !== null && isUnprotected(role, state, stateReason)) {
      return unprotectedSince === null ? 'unprotected' : `unprotected for ${Math.floor((performance.now() - unprotectedSince) / 1000)} s`;
    }
    // A secondary that took over and is protected again: its own epochs ended with the failover,
    // and the new standby's acks are not reported here, so a time since its last epoch would mislead.
    if (role === 'secondary' && state === 'failed-over') return 'n/a';
    const lag = currentLag();
    return lag === null ? '–' : lagText(lag);
  }

  function updateLag() {
    const text = lagNow();
    const el = $('lag');
    el.textContent = text;
    el.dataset.unprotected = String(text.startsWith('unprotected'));
    $('pair-self-lag').textContent = text;
  }

  function setMode(m, intervalMs) {
    mode = m;
    $('mode').textContent = m === null ? 'n/a' : m;
    const interval = $('interval');
    interval.textContent = intervalMs === null ? '–' : `${intervalMs} ms`;
    interval.hidden = intervalMs === null; // no timer, nothing to show next to the mode
    applyPanels();
  }

  // ---------------------------------------------------------------------------
  // Pre-copy progress.

  function showPrecopy() {
    const p = precopy;
    const active = p !== null && role === 'primary' && (state === 'precopy' || state === 're-protecting');
    const panel = $('precopy');
    panel.hidden = !active;
    if (!active) {
      delete panel.dataset.percent;
      return;
    }
    $('precopy-title').textContent = `${state === 're-protecting' ? 'Re-protecting: pre-copy' : 'Pre-copy'}, round ${p.iteration}`;
    const bar = $('precopy-bar');
    if (p.done) {
      bar.value = 100;
      panel.dataset.percent = '100';
      $('precopy-percent').textContent = 'live rounds done';
    } else if (p.percent === null) {
      bar.removeAttribute('value'); // indeterminate: this saver does not count pages
      delete panel.dataset.percent;
      $('precopy-percent').textContent = 'pages not counted';
    } else {
      bar.value = p.percent;
      panel.dataset.percent = String(p.percent);
      $('precopy-percent').textContent = `${p.percent.toFixed(1)} %`;
    }
    $('precopy-rate').textContent = rate(p.bytesPerSecond);
    $('precopy-eta').textContent = p.done ? 'taking the first checkpoint' : p.etaMs === null ? 'ETA n/a' : `ETA ${duration(p.etaMs)}`;
    const pages = p.pagesSent !== null && p.pagesTotal !== null ? `${p.pagesSent}/${p.pagesTotal} pages, ` : '';
    $('precopy-detail').textContent = `${pages}${bytes(p.bytes)} sent in ${duration(p.elapsedMs)}`;
  }

  // ---------------------------------------------------------------------------
  // The pair: this node and its peer side by side.

  const na = (v, fmt = String, none = 'n/a') => (v === undefined || v === null ? none : fmt(v));

  function fillSelf() {
    $('pair-self-head').textContent = role === null ? 'this node' : `this node (${role})`;
    $('pair-self-role').textContent = role ?? '–';
    $('pair-self-state').textContent = state ?? '–';
    $('pair-self-generation').textContent = na(self.generation, String, self.generation === null ? 'n/a (not known)' : 'n/a');
    $('pair-self-heartbeat').textContent = na(self.heartbeat);
    $('pair-self-epoch').textContent = String(lastEpoch);
    $('pair-self-held').textContent = na(self.heldBytes, bytes, self.heldBytes === null ? 'n/a (none held here)' : 'n/a');
    const serving = role === 'primary' || state === 'failed-over';
    $('pair-self-clients').textContent = serving ? na(self.clients) : 'n/a (not serving)';
  }

  function peerKey(p) {
    return p === null ? 'none' : `${p.reachable}|${p.node}|${p.state}|${p.heartbeat}|${p.generation}`;
  }

  function peerLine(p) {
    if (p === null) return 'peer: none reported';
    if (!p.reachable) return `peer at ${p.url}: unreachable${p.error ? ` (${p.error})` : ''}`;
    return `peer ${p.node ?? '?'} at ${p.url}: ${p.state ?? '?'}${p.heartbeat ? `, heartbeat ${p.heartbeat}` : ''}${p.generation === null || p.generation === undefined ? '' : `, generation ${p.generation}`}`;
  }

  function fillPeer() {
    const ids = ['role', 'state', 'generation', 'heartbeat', 'epoch', 'lag', 'held', 'clients'];
    const set = (k, v) => ($(`pair-peer-${k}`).textContent = v);
    const note = $('peer-note');
    if (peer === undefined || peer === null) {
      for (const k of ids) set(k, 'n/a');
      $('pair-peer-head').textContent = 'peer';
      note.textContent = peer === undefined ? 'peer: n/a (this monitor does not report its peer)' : 'peer: n/a (none configured or not asked yet)';
      return;
    }
    const p = peer;
    $('pair-peer-head').textContent = p.node ? `peer (${p.node})` : 'peer';
    set('role', na(p.node, String, '?'));
    set('state', p.reachable ? na(p.state, String, '?') : 'unreachable');
    set('generation', na(p.generation));
    set('heartbeat', na(p.heartbeat));
    set('epoch', na(p.lastEpoch));
    const peerUnprotected = p.reachable && p.node && p.state && isUnprotected(p.node, p.state, p.reason ?? '');
    set('lag', peerUnprotected ? 'unprotected' : na(p.lagMs, lagText));
    set('held', na(p.heldBytes, bytes));
    set('clients', p.node === 'primary' || p.state === 'failed-over' ? na(p.clients) : 'n/a (not serving)');
    const when = typeof p.fetchedAt === 'number' ? `, as of ${clock(p.fetchedAt)}` : '';
    note.textContent = p.reachable ? `peer's monitor: ${p.url}${when}` : `peer's monitor ${p.url} unreachable${p.error ? `: ${p.error}` : ''}${when}`;
  }

  function fillLastFailover() {
    const el = $('last-failover');
    if (lastFailover === undefined) el.textContent = 'last failover: n/a (this monitor does not report it)';
    else if (lastFailover === null) el.textContent = 'last failover: none';
    else {
      const gen = typeof lastFailover.generation === 'number' ? `, generation ${lastFailover.generation}` : '';
      el.textContent = `last failover: ${dateTime(lastFailover.ts)} (${lastFailover.reason}${gen})`;
    }
  }

  // Same words as `tandem status` (src/monitor/view.ts, arbiterLine).
  function showArbiter(a) {
    const el = $('arbiter');
    if (!a) {
      el.textContent = 'n/a';
      return;
    }
    el.dataset.kind = a.kind;
    if (a.kind === 'none') el.textContent = 'none (each node decides alone: a partition can make both serve)';
    else if (a.holder === null) el.textContent = 'etcd: nobody holds it';
    else el.textContent = `${a.holder} holds it at generation ${a.generation ?? '?'}, ${a.protected ? 'protected' : 'unprotected'}`;
  }

  /** The fields of a snapshot (or a status reply) that no event of their own keeps current. */
  function takeStatus(e) {
    self = { generation: e.generation, heartbeat: e.heartbeat, heldBytes: e.heldBytes, clients: e.clients };
    if ('peer' in e) peer = e.peer;
    else peer = undefined;
    if ('lastFailover' in e) lastFailover = e.lastFailover;
    else lastFailover = undefined;
    if (e.arbiter) showArbiter(e.arbiter);
    fillSelf();
    fillPeer();
    fillLastFailover();
  }

  // ---------------------------------------------------------------------------
  // The events list.

  /** An event as one line of the list; null: not listed (a peer report that changes nothing). */
  function describe(e) {
    switch (e.type) {
      case 'state':
        return `state ${e.previous} → ${e.state}: ${e.reason}`;
      case 'mode':
        return `mode ${e.mode}${e.intervalMs === null ? '' : ` (${e.intervalMs} ms)`}: ${e.reason}`;
      case 'control':
        return `control ${e.action} by ${e.by}: ${e.ok ? 'done' : `refused (${e.code})`}`;
      case 'divergence':
        return `divergence${e.connection ? ` on ${e.connection}` : ''}: ${e.reason}`;
      case 'peer': {
        const p = peerOf(e);
        const key = peerKey(p);
        if (key === lastPeerKey) return null;
        lastPeerKey = key;
        return peerLine(p);
      }
      case 'failover':
        return `failover: ${e.reason}${typeof e.generation === 'number' ? ` (generation ${e.generation})` : ''}`;
      default:
        return null;
    }
  }

  /**
   * The peer as a `peer` event tells it: its fields, or a nested `peer`
   * object (null: no peer). The envelope's `node` is the sender, so the
   * peer's role is the other one unless the event names it.
   */
  function peerOf(e) {
    if (e.peer === null) return null;
    const fields = e.peer && typeof e.peer === 'object' ? e.peer : e;
    const role = fields === e ? (e.peerNode ?? e.role ?? (e.node === 'primary' ? 'secondary' : 'primary')) : fields.node;
    return {
      url: fields.url, reachable: fields.reachable, error: fields.error, fetchedAt: fields.fetchedAt, node: role, state: fields.state, reason: fields.reason,
      generation: fields.generation, heartbeat: fields.heartbeat, lastEpoch: fields.lastEpoch, lagMs: fields.lagMs, heldBytes: fields.heldBytes, clients: fields.clients,
    };
  }

  function note(ts, text) {
    const li = document.createElement('li');
    li.textContent = `${clock(ts)} ${text}`;
    const list = $('events');
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  function listEvent(e) {
    const text = describe(e);
    if (text !== null) note(e.ts, text);
  }

  function fillHistory(e) {
    if (!Array.isArray(e.history)) {
      $('history-note').textContent = 'events since this page opened (this monitor keeps no history)';
      return;
    }
    $('events').replaceChildren();
    lastPeerKey = null;
    for (const h of e.history) if (h && typeof h === 'object' && typeof h.ts === 'number') listEvent(h);
    $('history-note').textContent = `the monitor's last ${e.history.length} events, then new ones as they come`;
  }

  // ---------------------------------------------------------------------------
  // The stream.

  function onSnapshot(e) {
    role = e.node;
    clockOffsetMs = e.ts - Date.now();
    $('node').textContent = e.node;
    lagAtSnapshot = e.lagMs;
    snapshotAt = performance.now();
    lastEpochAt = null;
    lastEpoch = e.lastEpoch;
    $('last-epoch').textContent = String(e.lastEpoch);
    buckets.clear();
    const oldest = e.recent.length > 0 ? e.recent[0].ts : e.ts;
    dataStartMs = Math.min(oldest, e.ts);
    for (const r of e.recent) addEpoch(r, r.ts);
    $('last-epoch').textContent = String(e.lastEpoch);
    precopy = e.precopy ?? null;
    state = null; // a fresh start: the snapshot says where things stand
    setState(e.state, e.reason);
    unprotectedSince = isUnprotected(role, e.state, e.reason) ? unprotectedStart(e) : null;
    setMode(e.mode, e.intervalMs);
    offer(e.actions);
    takeStatus(e);
    fillHistory(e);
    // The peer as the snapshot tells it is news to no one: only changes from it are listed.
    if ('peer' in e) lastPeerKey = peerKey(e.peer);
    dirty = true;
    redraw();
  }

  // ---------------------------------------------------------------------------
  // Domains: the picker and the overview.

  /** Keeps the overview's line of the event's domain; true when the event is about the domain picked (or names none). */
  function trackDomain(e) {
    const name = typeof e.domain === 'string' ? e.domain : null;
    if (name === null) return true;
    if (e.type === 'detached') {
      // Its node stopped: off the overview; if it was the one shown, the page shows another.
      domains.delete(name);
      fillDomains();
      if (name === picked) {
        note(e.ts, `domain ${name} is no longer shown by this monitor`);
        picked = null;
        const next = domains.keys().next();
        if (!next.done) pick(next.value);
      }
      return false;
    }
    let d = domains.get(name);
    if (d === undefined) {
      if (e.type !== 'snapshot') return name === picked;
      d = { state: null, lastEpoch: 0, lastEpochAt: null, lagAtSnapshot: null, snapshotAt: 0, snapshot: null };
      domains.set(name, d);
      fillDomains();
    }
    if (e.type === 'snapshot') {
      Object.assign(d, { state: e.state, lastEpoch: e.lastEpoch, lastEpochAt: null, lagAtSnapshot: e.lagMs, snapshotAt: performance.now(), snapshot: e });
      if (picked === null) {
        if (wanted === null || wanted === name) picked = name;
        // The domain asked for may come next (a connection's snapshots come back to back); if not, the first one.
        else if (pickTimer === null) pickTimer = setTimeout(pickFirst, 300);
      }
    } else if (e.type === 'state') d.state = e.state;
    else if (e.type === 'epoch') Object.assign(d, { lastEpoch: e.epoch, lastEpochAt: performance.now() });
    if (e.type === 'snapshot' || e.type === 'state') fillDomains();
    return name === picked;
  }

  let pickTimer = null;
  /** The domain asked for is not shown here: the first one is, from its snapshot. */
  function pickFirst() {
    pickTimer = null;
    if (picked !== null || domains.size === 0) return;
    const [name, d] = domains.entries().next().value;
    picked = name;
    fillDomains();
    onSnapshot(d.snapshot);
  }

  function domainLag(d) {
    if (d.lastEpochAt !== null) return lagText(performance.now() - d.lastEpochAt);
    if (d.lagAtSnapshot !== null) return lagText(d.lagAtSnapshot + (performance.now() - d.snapshotAt));
    return '–';
  }

  /** The picker and the overview table, shown once there is more than one domain. */
  function fillDomains() {
    const several = domains.size > 1;
    $('domains').hidden = !several;
    $('domain-picker').hidden = !several;
    const select = $('domain');
    const names = [...domains.keys()];
    if ([...select.options].map((o) => o.value).join('\n') !== names.join('\n')) {
      select.replaceChildren(...names.map((n) => new Option(n, n)));
    }
    if (picked !== null) select.value = picked;
    const rows = names.map((n) => {
      const d = domains.get(n);
      const tr = document.createElement('tr');
      tr.dataset.domain = n;
      tr.setAttribute('aria-selected', String(n === picked));
      const cell = (text) => {
        const td = document.createElement('td');
        td.textContent = text;
        return td;
      };
      const state = document.createElement('span');
      state.className = 'state';
      state.dataset.state = d.state ?? 'unknown';
      state.textContent = d.state ?? '?';
      const stateCell = document.createElement('td');
      stateCell.append(state);
      const lag = cell(domainLag(d));
      lag.className = 'domain-lag';
      tr.append(cell(n), stateCell, cell(String(d.lastEpoch)), lag);
      tr.addEventListener('click', () => pick(n));
      return tr;
    });
    $('domains-rows').replaceChildren(...rows);
  }

  function updateDomainLags() {
    if (domains.size < 2) return;
    for (const tr of $('domains-rows').children) {
      const d = domains.get(tr.dataset.domain);
      if (d !== undefined) tr.querySelector('.domain-lag').textContent = domainLag(d);
    }
  }

  /** Shows another domain: a fresh stream brings its snapshot (its recent epochs, its history) for the charts. */
  function pick(name) {
    if (name === picked || !domains.has(name)) return;
    wanted = name;
    window.history.replaceState(null, '', `#domain=${encodeURIComponent(name)}`);
    connect();
  }

  function onEvent(e) {
    if (e.v !== SCHEMA_VERSION) {
      note(serverNow(), `schema version ${e.v} not understood (this page reads ${SCHEMA_VERSION})`);
      return;
    }
    // Another domain's broadcast: only its line in the overview.
    if (typeof e.seq === 'number' && !trackDomain(e)) return;
    switch (e.type) {
      case 'snapshot':
        onSnapshot(e);
        break;
      case 'epoch':
        addEpoch(e, e.ts);
        lastEpochAt = performance.now();
        fillSelf();
        break;
      case 'precopy':
        precopy = e;
        showPrecopy();
        break;
      case 'divergence':
        bucket(e.ts).divergences += 1;
        dirty = true;
        listEvent(e);
        break;
      case 'state':
        setState(e.state, e.reason);
        listEvent(e);
        break;
      case 'mode':
        setMode(e.mode, e.intervalMs);
        listEvent(e);
        break;
      case 'control':
        listEvent(e);
        break;
      case 'peer':
        peer = peerOf(e);
        fillPeer();
        listEvent(e);
        break;
      case 'failover':
        lastFailover = { ts: e.ts, reason: e.reason, generation: e.generation ?? null };
        fillLastFailover();
        listEvent(e);
        break;
      case 'dropped':
        note(serverNow(), `this page fell behind and missed ${e.count} events`);
        break;
      case 'reply':
        if (statusRequests.delete(e.id)) {
          if (e.result) takeStatus(e.result);
        } else result('ok', `${e.action}: done${e.result ? ` ${JSON.stringify(e.result)}` : ''}`);
        break;
      case 'error':
        if (statusRequests.delete(e.id)) break; // the next poll asks again
        result(e.code === 'ERR_MONITOR_UNAUTHORIZED' || e.code === 'ERR_MONITOR_RATE_LIMITED' ? 'refused' : 'error', `${e.message} [${e.code}]`);
        if (e.code === 'ERR_MONITOR_UNAUTHORIZED') $('token').focus();
        break;
      default:
        break; // newer event types are ignored, as the schema allows
    }
  }

  function offer(actions) {
    for (const b of document.querySelectorAll('button[data-action]')) b.disabled = !actions.includes(b.dataset.action);
  }

  function result(outcome, text) {
    const out = $('control-result');
    out.dataset.outcome = outcome;
    out.textContent = text;
  }

  function pollStatus() {
    if (document.hidden || !socket || socket.readyState !== WebSocket.OPEN) return;
    const id = `status-${++requestSeq}`;
    statusRequests.add(id);
    socket.send(JSON.stringify(picked === null ? { type: 'status', id } : { type: 'status', id, domain: picked }));
  }

  function send(action) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      result('error', 'not connected');
      return;
    }
    const msg = { type: 'control', id: ++requestSeq, action };
    if (picked !== null) msg.domain = picked;
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
    const raw = new TextEncoder().encode(token);
    let bin = '';
    for (const b of raw) bin += String.fromCharCode(b);
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
    statusRequests.clear();
    // Each connection starts with one snapshot per domain: the overview is rebuilt from them.
    picked = null;
    domains.clear();
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
      if (opened) lostSince = clock(Date.now());
      const wait = Math.max(1, Math.round(retryMs / 1000));
      $('link').textContent = lostSince
        ? `lost since ${lostSince}; retrying in ${wait} s`
        : `refused or unreachable (if this monitor needs the token to be read, enter it); retrying in ${wait} s`;
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10_000);
    };
  }

  function chooseWindow(seconds) {
    windowS = seconds;
    dirty = true;
    redraw();
  }

  document.addEventListener('DOMContentLoaded', () => {
    const select = $('window');
    const saved = Number(localStorage.getItem('tandem.window'));
    if ([...select.options].some((o) => Number(o.value) === saved)) select.value = String(saved);
    windowS = Number(select.value);
    select.addEventListener('change', () => {
      localStorage.setItem('tandem.window', select.value);
      chooseWindow(Number(select.value));
    });
    const asked = /^#domain=(.+)$/.exec(location.hash);
    if (asked !== null) wanted = decodeURIComponent(asked[1]);
    $('domain').addEventListener('change', (ev) => pick(ev.target.value));
    makeCharts();
    applyPanels();
    fillSelf();
    fillPeer();
    fillLastFailover();
    for (const b of document.querySelectorAll('button[data-action]')) b.addEventListener('click', () => send(b.dataset.action));
    $('controls').addEventListener('submit', (ev) => ev.preventDefault());
    // A token entered while the stream is refused is tried at once.
    $('token').addEventListener('change', () => {
      if (!socket || socket.readyState !== WebSocket.OPEN) connect();
    });
    setInterval(redraw, 500);
    setInterval(updateLag, 250);
    setInterval(updateDomainLags, 1000);
    setInterval(pollStatus, STATUS_POLL_MS);
    connect();
  });
})();
