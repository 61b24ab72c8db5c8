import { contractSuite } from './contract.mjs';
import { Proc, distributedEnv, freePort, migrate, unique } from './harness.mjs';

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
