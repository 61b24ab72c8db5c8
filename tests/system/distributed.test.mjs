import { contractSuite } from './contract.mjs';
import { contractV2Suite } from './contract_v2.mjs';
import { Proc, distributedEnv, freePort, migrate, unique } from './harness.mjs';

/** Two edges and `processor all` on Kafka and Cassandra. */
async function twoEdges() {
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
}

contractSuite('Kafka and Cassandra (two edges, processors apart)', twoEdges);
contractV2Suite('Kafka and Cassandra (two edges, processors apart)', twoEdges);
