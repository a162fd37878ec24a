/**
 * A preload that CPU-profiles the process it is loaded into, for keys.bench.ts's BENCH_PROFILE: Node 20
 * refuses --cpu-prof in NODE_OPTIONS, --import is allowed. The profiler starts at load; on exit (the
 * service calls process.exit after SIGTERM) the profile is written, synchronously as an in-thread
 * inspector session answers, to $BENCH_PROFILE_DIR/service-<pid>.cpuprofile (Chrome DevTools, speedscope).
 *
 *   NODE_OPTIONS="--import /abs/dist/bench-build/bench/cpuProfile.js" BENCH_PROFILE_DIR=/tmp/prof node ...
 *
 * Main thread only: worker threads (the PKCS#11 calls) run preloads too, and spend their time in the
 * token's native code, which a JavaScript profile does not show anyway.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';

const dir = process.env.BENCH_PROFILE_DIR;
if (dir && isMainThread) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  process.once('exit', () => {
    session.post('Profiler.stop', (error, result) => {
      if (error) console.error(`cpuProfile: ${error.message}`);
      else writeFileSync(join(dir, `service-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
