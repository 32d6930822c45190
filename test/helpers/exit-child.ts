/**
 * Child process for test/dispose-running.test.ts: loads the tiny pipeline and exits without
 * disposing it — `idle` right after the load, `running` while a generate runs (process.exit during
 * the call). The parent checks the exit code is 0 and nothing is printed after "exiting". Note: the
 * exit waits for the running native call to finish (it is not aborted at exit; native/addon).
 */
import { StableDiffusionPipeline } from '../../lib/index.js';

const [mode, model] = process.argv.slice(2);
const pipe = await StableDiffusionPipeline.fromPretrained(model);
if (mode === 'idle') {
  process.stdout.write('exiting\n');
  process.exit(0);
}
pipe.generate({ prompt: 'x', numInferenceSteps: 20, width: 64, height: 64, seed: 1 }).then(
  () => process.stdout.write('finished\n'), (e: unknown) => process.stdout.write(`rejected ${(e as Error).message}\n`));
setTimeout(() => { process.stdout.write('exiting\n'); process.exit(0); }, 300);
