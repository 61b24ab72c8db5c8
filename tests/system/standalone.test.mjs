import { contractSuite } from './contract.mjs';
import { standalone, tempDir } from './harness.mjs';

contractSuite('standalone (embedded log and store)', async () => {
  const proc = await standalone(tempDir());
  return { urls: [proc.url, proc.url], stop: () => proc.kill('SIGTERM') };
});
