import { spawnSync } from 'node:child_process';
import { contractSuite } from './contract.mjs';
import { BIN, Proc, distributedEnv, freePort, unique } from './harness.mjs';

export function migrate(env) {
  const result = spawnSync(BIN, ['migrate'], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120000 });
  if (result.status !== 0) throw new Error(`tidings migrate failed: ${result.stderr}`);
}

contractSuite('Kafka and Cassandra (two edges, processors apart)', async () => {
  const env = distributedEnv();
  migrate(env);
  const processors = await new Proc(['processor', 'all'], { ...env, TIDINGS_NODE_ID: unique('processors') }).start();
  const edges = [];
  for (const name of ['edge-a', 'edge-b']) {
    edges.push(await new Proc(['edge'], { ...env, TIDINGS_NODE_ID: unique(name) }, { port: await freePort() }).start());
  }
  return {
    urls: edges.map((e) => e.url),
    stop: async () => {
      for (const p of [...edges, processors]) await p.kill('SIGTERM');
    },
  };
});
