import { contractSuite } from './contract.mjs';
import { contractV2Suite } from './contract_v2.mjs';
import { contractV3Suite } from './contract_v3.mjs';
import { standalone, tempDir } from './harness.mjs';

contractSuite('standalone (embedded log and store)', async () => {
  const proc = await standalone(tempDir());
  return { urls: [proc.url, proc.url], stop: () => proc.kill('SIGTERM') };
});

contractV2Suite('standalone (embedded log and store)', async () => {
  const proc = await standalone(tempDir());
  return { urls: [proc.url, proc.url], stop: () => proc.kill('SIGTERM') };
});

contractV3Suite('standalone (embedded log and store)', async () => {
  const proc = await standalone(tempDir());
  return {
    urls: [proc.url, proc.url],
    stop: () => proc.kill('SIGTERM'),
    // Standalone is one process: another edge is another standalone.
    edge: async (env) => {
      const other = await standalone(tempDir(), env);
      return { url: other.url, stop: () => other.kill('SIGTERM') };
    },
  };
});
