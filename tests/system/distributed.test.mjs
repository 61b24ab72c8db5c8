import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { contractSuite } from './contract.mjs';
import { contractV2Suite } from './contract_v2.mjs';
import { contractV3Suite } from './contract_v3.mjs';
import { Proc, call, connect, distributedEnv, freePort, migrate, token, unique, waitUntil } from './harness.mjs';

/** Two edges and `processor all` on Kafka and Cassandra. */
async function twoEdges() {
  const env = distributedEnv();
  migrate(env);
  // Started once /readyz on its ops port says every processor has its consumer.
  const processors = await new Proc(['processor', 'all'], { ...env, TIDINGS_NODE_ID: unique('processors') },
    { port: await freePort(), ops: true }).start();
  const edges = [];
  for (const name of ['edge-a', 'edge-b']) {
    edges.push(await new Proc(['edge'], { ...env, TIDINGS_NODE_ID: unique(name) }, { port: await freePort() }).start());
  }
  return {
    urls: edges.map((e) => e.url),
    processorsUrl: processors.url,
    /** One more edge of this deployment, with `extra` settings. */
    edge: async (extra) => {
      const e = await new Proc(['edge'], { ...env, TIDINGS_NODE_ID: unique('edge-x'), ...extra }, { port: await freePort() }).start();
      return { url: e.url, stop: () => e.kill('SIGTERM') };
    },
    stop: async () => {
      for (const p of [...edges, processors]) await p.kill('SIGTERM');
    },
  };
}

contractSuite('Kafka and Cassandra (two edges, processors apart)', twoEdges);
contractV2Suite('Kafka and Cassandra (two edges, processors apart)', twoEdges);
contractV3Suite('Kafka and Cassandra (two edges, processors apart)', twoEdges);

describe('processors are observable (Kafka and Cassandra)', () => {
  let deployment;
  before(async () => { deployment = await twoEdges(); });
  after(async () => deployment?.stop());

  const metric = (text, name) => {
    const line = text.split('\n').find((l) => l.startsWith(name));
    return line === undefined ? undefined : Number(line.split(' ').at(-1));
  };

  it('processor all serves health, readiness and metrics: process, build, readiness and batches of each processor', async () => {
    const ops = deployment.processorsUrl;
    assert.equal((await fetch(`${ops}/healthz`)).status, 200);
    assert.equal((await fetch(`${ops}/readyz`)).status, 200);
    let text = await (await fetch(`${ops}/metrics`)).text();
    assert.ok(metric(text, 'process_cpu_seconds_total') >= 0, 'process CPU');
    assert.ok(metric(text, 'process_resident_memory_bytes') > 1e6, 'process RSS');
    assert.equal(metric(text, 'tidings_build_info{version="'), 1);
    for (const p of ['sequencer', 'persistence', 'fanout', 'typing', 'presence', 'inbox']) {
      assert.equal(metric(text, `tidings_processor_ready{processor="${p}"}`), 1, `${p} ready`);
    }

    const room = unique('observed');
    const ada = await connect(deployment.urls[0], { token: token('ada') });
    await call(ada, 'join', { room });
    const mentionsBefore = metric(text, 'tidings_inbox_notifications_total{reason="mention"}');
    assert.ok(mentionsBefore >= 0, 'the inbox counters are there before the first batch');
    assert.equal((await call(ada, 'send', { room, id: 'm1', text: 'counted, @bob' })).seq, 1);
    await waitUntil('batches counted', async () => {
      text = await (await fetch(`${ops}/metrics`)).text();
      return ['sequencer', 'persistence', 'fanout', 'inbox'].every((p) => metric(text, `tidings_processor_batch_records_count{processor="${p}"}`) > 0)
        && metric(text, 'tidings_inbox_notifications_total{reason="mention"}') > mentionsBefore;
    });
    assert.ok(metric(text, 'tidings_processor_batch_seconds_count{processor="sequencer"}') > 0);
    // Store and log latency, per backend and operation: persistence appended to Cassandra,
    // the sequencer committed a Kafka transaction.
    assert.ok(metric(text, 'tidings_store_op_seconds_count{backend="cassandra",op="append"}') > 0, 'store append timed');
    assert.ok(metric(text, 'tidings_log_op_seconds_count{backend="kafka",op="commit_with"}') > 0, 'log transaction timed');
    await waitUntil('presence counts ada online', async () => {
      text = await (await fetch(`${ops}/metrics`)).text();
      return metric(text, 'tidings_presence_online_users') >= 1 && metric(text, 'tidings_presence_online_connections') >= 1;
    });
    // Lag is sampled every 5 s, per processor, topic and partition; caught up, it is 0, or 1
    // on Kafka where the offset after a transaction's last record is its commit marker.
    await waitUntil('lag sampled', async () => {
      text = await (await fetch(`${ops}/metrics`)).text();
      const lines = text.split('\n').filter((l) => l.startsWith('tidings_processor_lag_records{')
        && l.includes('processor="persistence"') && l.includes('topic="tidings.room-log"'));
      return lines.length > 0 && lines.every((l) => Number(l.split(' ').at(-1)) <= 1);
    });
    ada.close();

    const edge = await (await fetch(`${deployment.urls[0]}/metrics`)).text();
    assert.ok(metric(edge, 'process_resident_memory_bytes') > 1e6, 'the edge shows process metrics too');
    assert.match(edge, /tidings_build_info\{[^}]*version="/);
  });
});
