// The monitoring config against what Tidings really exports: every metric name that the alert
// rules (infra/monitoring/alerts.yml) and the Grafana dashboard
// (infra/monitoring/grafana/dashboards/tidings.json) mention must be in a real scrape of
// `tidings standalone` after some traffic (a histogram by its _bucket, _sum and _count), and
// the label names and values their selectors use must be on those series. The processors'
// metrics are also checked in `tidings processor all` on Kafka and Cassandra, where they come
// from their own process.
//
// A few counters exist only from their first event (a vector metric with no series is not
// shown at all). The traffic here causes the ones it can: an error ack, a refused connection,
// a slow reader dropped. The others are listed in EVENT_ONLY with the reason, and for those
// the name must be defined in the Rust sources instead.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Proc, call, connect, distributedEnv, freePort, migrate, sleep, standalone, tempDir, token, unique, waitUntil } from './harness.mjs';
import { RawWs } from './rawws.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;
const FILES = ['infra/monitoring/alerts.yml', 'infra/monitoring/grafana/dashboards/tidings.json'];

/** Counters that no cheap traffic makes appear; checked against the sources instead. */
const EVENT_ONLY = {
  tidings_processor_session_failures_total: 'a processor session ending on an error',
  tidings_dead_letters_total: 'a record on the log that does not decode',
  tidings_store_errors_total: 'a failed store call',
  tidings_log_errors_total: 'a failed log call',
};
/** Label values a selector may name that only an event brings: (metric, label, value). */
const EVENT_ONLY_VALUES = [
  ['tidings_edge_errors_total', 'code', 'unavailable', 'edge/src/errors.rs'],
];
/** Series Prometheus itself makes, and labels it adds to every scraped series. */
const PROMETHEUS_OWN = new Set(['up', 'ALERTS']);
const TARGET_LABELS = new Set(['job', 'instance']);

const read = (path) => readFileSync(join(ROOT, path), 'utf8');

/** Every `.rs` file under the workspace's crates (not target/, not node_modules). */
function rustSources(dir = ROOT, out = []) {
  for (const name of readdirSync(dir)) {
    if (['target', 'node_modules', '.git', 'tests'].includes(name)) continue;
    const path = join(dir, name);
    const stat = statSync(path);
    if (stat.isDirectory()) rustSources(path, out);
    else if (name.endsWith('.rs')) out.push(readFileSync(path, 'utf8'));
  }
  return out;
}

/** The PromQL the files hold: alert expressions and dashboard targets and annotations. */
function queries() {
  const exprs = [];
  // alerts.yml: `expr: one line` or `expr: |` and the more-indented lines under it.
  const lines = read(FILES[0]).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)expr:\s*(.*)$/.exec(lines[i]);
    if (!m) continue;
    if (m[2] !== '|') {
      exprs.push({ file: FILES[0], expr: m[2] });
      continue;
    }
    const block = [];
    while (i + 1 < lines.length && (lines[i + 1].trim() === '' || lines[i + 1].search(/\S/) > m[1].length)) block.push(lines[++i]);
    exprs.push({ file: FILES[0], expr: block.join('\n') });
  }
  const dashboard = JSON.parse(read(FILES[1]));
  for (const panel of dashboard.panels) {
    for (const t of panel.targets ?? []) exprs.push({ file: FILES[1], expr: t.expr, where: panel.title });
  }
  for (const a of dashboard.annotations?.list ?? []) if (a.expr) exprs.push({ file: FILES[1], expr: a.expr, where: a.name });
  for (const v of dashboard.templating.list) {
    if (v.type === 'query') exprs.push({ file: FILES[1], expr: String(v.query?.query ?? v.query), where: `$${v.name}` });
  }
  return exprs;
}

/** Metric names a text mentions: Tidings' own and the process collector's (also in prose). */
const mentioned = (text) => new Set(text.match(/\b(?:tidings|process)_[a-z0-9_]+\b/g) ?? []);

/** Selectors with label matchers: [{ name, label, op, value }]. */
function matchers(expr) {
  const out = [];
  for (const sel of expr.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
    for (const m of sel[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      out.push({ name: sel[1], label: m[1], op: m[2], value: m[3] });
    }
  }
  return out;
}

/** Label names after by, without, on and ignoring. */
function groupingLabels(expr) {
  const out = new Set();
  for (const g of expr.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)) {
    for (const l of g[1].split(',').map((s) => s.trim()).filter(Boolean)) out.add(l);
  }
  return out;
}

/** Prometheus text → { types: name → type, series: name → [labels] }. */
function parseScrape(text) {
  const types = new Map();
  const series = new Map();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)/.exec(line);
    if (t) types.set(t[1], t[2]);
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (!series.has(m[1])) series.set(m[1], []);
    series.get(m[1]).push(labels);
  }
  return { types, series };
}

/** What is wrong with the names `names` against a scrape (empty: nothing). */
function missingNames(names, scrape, sources) {
  const problems = [];
  for (const name of [...names].sort()) {
    if (scrape.series.has(name)) continue;
    if (scrape.types.get(name) === 'histogram') {
      const lacking = ['_bucket', '_sum', '_count'].filter((s) => !scrape.series.has(name + s));
      if (lacking.length) problems.push(`${name}: a histogram without ${lacking.join(', ')}`);
      continue;
    }
    if (EVENT_ONLY[name]) {
      if (!sources.some((s) => s.includes(`"${name}"`))) problems.push(`${name}: not in the scrape, and no Rust source defines it`);
      continue;
    }
    problems.push(`${name}: not exported (not in the scrape${scrape.types.has(name) ? `; declared as ${scrape.types.get(name)} with no series` : ''})`);
  }
  return problems;
}

/** What is wrong with the selectors' labels (and, with `grouping`, the labels the queries
 * group or match by) against a scrape. */
function labelProblems(exprs, scrape, sources, { grouping = true } = {}) {
  const problems = [];
  const allLabels = new Set([...TARGET_LABELS, 'le']);
  for (const list of scrape.series.values()) for (const labels of list) for (const l of Object.keys(labels)) allLabels.add(l);
  for (const { file, expr, where } of exprs) {
    const at = `${file}${where ? ` (${where})` : ''}`;
    for (const { name, label, op, value } of matchers(expr)) {
      if (PROMETHEUS_OWN.has(name) || TARGET_LABELS.has(label) || EVENT_ONLY[name]) continue;
      const list = scrape.series.get(name);
      if (!list) continue; // missingNames reports it
      if (!list.some((l) => label in l)) {
        problems.push(`${at}: ${name} has no label ${label}`);
        continue;
      }
      if (op !== '=' || value.includes('$')) continue;
      if (list.some((l) => l[label] === value)) continue;
      const known = EVENT_ONLY_VALUES.find(([n, l, v]) => n === name && l === label && v === value);
      if (known && sources.some((s) => s.includes(`"${value}"`))) continue;
      problems.push(`${at}: no series ${name}{${label}="${value}"} (seen: ${[...new Set(list.map((l) => l[label]))].join(', ')})`);
    }
    for (const label of grouping ? groupingLabels(expr) : []) {
      if (!allLabels.has(label)) problems.push(`${at}: groups by ${label}, a label no Tidings series has`);
    }
  }
  return problems;
}

describe('the monitoring config names metrics Tidings exports', () => {
  const exprs = queries();
  const names = new Set(FILES.flatMap((f) => [...mentioned(read(f))]));
  const sources = rustSources();

  it('finds the queries and names it checks', () => {
    assert.ok(exprs.filter((e) => e.file === FILES[0]).length >= 15, 'alert expressions read');
    assert.ok(exprs.filter((e) => e.file === FILES[1]).length >= 30, 'dashboard queries read');
    for (const name of ['tidings_processor_lag_records', 'tidings_edge_forced_disconnects_total', 'tidings_store_op_seconds_bucket']) {
      assert.ok(names.has(name), name);
    }
    for (const { expr } of exprs) {
      for (const { name } of matchers(expr)) {
        assert.ok(/^(tidings|process)_/.test(name) || PROMETHEUS_OWN.has(name), `a selector of ${name}: neither Tidings' nor Prometheus's own`);
      }
    }
  });

  describe('standalone, after traffic', () => {
    let proc;
    let scrape;
    before(async () => {
      proc = await standalone(tempDir(), {
        TIDINGS_MAX_TEXT: '4000',
        // The smallest output bound allowed, so that a reader that stops reading is dropped soon.
        TIDINGS_MAX_OUT_BYTES: String(64 * 1024),
        TIDINGS_MAX_REPLY_BYTES: String(64 * 1024),
      });
    });
    after(() => proc?.kill('SIGTERM'));

    it('traffic: sends, an error ack, a mention, a refused origin, a slow reader dropped', async () => {
      const room = unique('observed');
      const ada = await connect(proc.url, { token: token('ada') });
      assert.equal((await call(ada, 'join', { room })).ok, true);
      assert.equal((await call(ada, 'send', { room, id: 'm1', text: 'hello @bob' })).seq, 1);
      // A bad send: an error ack, counted by code.
      const bad = await call(ada, 'send', { room, id: 'm2' });
      assert.equal(bad.ok, false, JSON.stringify(bad));
      // A page from another origin: refused before it is served.
      const refused = await fetch(`${proc.url}/socket.io/?EIO=4&transport=polling`, { headers: { origin: 'https://elsewhere.example' } });
      assert.equal(refused.status, 403);

      // A reader that stops reading while asking for large history pages is dropped.
      const big = unique('big');
      assert.equal((await call(ada, 'join', { room: big })).ok, true);
      const text = '€'.repeat(4000);
      for (let i = 0; i < 40; i++) assert.equal((await call(ada, 'send', { room: big, id: `b${i}`, text })).ok, true);
      const ws = await RawWs.open(proc.port);
      try {
        assert.ok((await ws.sioConnect({ token: token(unique('slow')) })).startsWith('40'));
        assert.equal((await ws.call(1, 'join', { room: big })).ok, true);
        ws.pause();
        for (let i = 0; i < 800 && !ws.isClosed; i++) {
          ws.sendText(`42${100 + i}["history",{"room":"${big}","limit":20}]`);
          if (i % 16 === 15) await sleep(20);
        }
        await waitUntil('the slow reader is dropped', async () =>
          /tidings_edge_forced_disconnects_total\{[^}]*reason="slow_consumer"/.test(await (await fetch(`${proc.url}/metrics`)).text()), 20000);
      } finally {
        ws.close();
      }
      ada.close();

      // Lag is sampled every 5 s; batches and the mention's notice follow the sends.
      await waitUntil('lag sampled and batches counted', async () => {
        const text = await (await fetch(`${proc.url}/metrics`)).text();
        scrape = parseScrape(text);
        return (scrape.series.get('tidings_processor_lag_records') ?? []).some((l) => l.processor === 'persistence' && l.topic === 'tidings.room-log')
          && (scrape.series.get('tidings_processor_batch_records_count') ?? []).some((l) => l.processor === 'persistence');
      }, 30000);
    });

    it('every metric name in alerts.yml and the dashboard is in the scrape', () => {
      assert.ok(scrape, 'scraped after traffic');
      const problems = missingNames(names, scrape, sources);
      const eventOnly = [...names].filter((n) => EVENT_ONLY[n] && !scrape.series.has(n));
      console.log(`monitoring: ${names.size} metric names checked against the scrape; from the sources only: ${eventOnly.join(', ') || 'none'}`);
      assert.deepEqual(problems, [], problems.join('\n'));
    });

    it('every label a selector or a grouping uses is on those series', () => {
      const problems = labelProblems(exprs, scrape, sources);
      assert.deepEqual(problems, [], problems.join('\n'));
    });
  });

  describe('processor all on Kafka and Cassandra', () => {
    let processors;
    let scrape;
    before(async () => {
      const env = distributedEnv();
      migrate(env);
      processors = await new Proc(['processor', 'all'], { ...env, TIDINGS_NODE_ID: unique('monitoring') },
        { port: await freePort(), ops: true }).start();
    });
    after(() => processors?.kill('SIGTERM'));

    it('exports every processor, store, log, presence, inbox and process metric the config names', async () => {
      const edge = await new Proc(['edge'], { ...distributedEnv(), TIDINGS_NODE_ID: unique('monitoring-edge') }, { port: await freePort() }).start();
      try {
        const room = unique('observed');
        const ada = await connect(edge.url, { token: token('ada') });
        assert.equal((await call(ada, 'join', { room })).ok, true);
        assert.equal((await call(ada, 'send', { room, id: 'm1', text: 'hello @bob' })).seq, 1);
        ada.close();
      } finally {
        await edge.kill('SIGTERM');
      }
      await waitUntil('lag sampled and batches counted', async () => {
        scrape = parseScrape(await (await fetch(`${processors.url}/metrics`)).text());
        return (scrape.series.get('tidings_processor_lag_records') ?? []).some((l) => l.processor === 'persistence' && l.topic === 'tidings.room-log')
          && (scrape.series.get('tidings_store_op_seconds_count') ?? []).some((l) => l.backend === 'cassandra');
      }, 30000);
      // The edge's own metrics, and the labels only they have, are the standalone test's business.
      const processorSide = new Set([...names].filter((n) => !n.startsWith('tidings_edge_')));
      const problems = [...missingNames(processorSide, scrape, sources),
        ...labelProblems(exprs.map((e) => ({ ...e, expr: e.expr.replace(/tidings_edge_\w+\s*\{[^}]*\}/g, '') })), scrape, sources, { grouping: false })];
      assert.deepEqual(problems, [], problems.join('\n'));
    });
  });
});
