/**
 * sd-native's image server inside your own fastify app: its routes (OpenAI /v1/images/*,
 * A1111 /sdapi/v1/*, jobs API + SSE, /metrics, the web page) mounted under /sd beside yours.
 * (Standalone: `npx sd-native serve --model <dir>`. Express: `await (await createServer(o)).ready()`,
 * then `expressApp.use('/sd', (req, res) => app.routing(req, res))`.)
 *
 *   npx tsx examples/http-server.ts ./stable-diffusion-v1-5     # then open http://127.0.0.1:8080/sd/
 */
import Fastify from 'fastify';
import { LocalBackend, PipelineExecutor, sdNativeRoutes } from '../lib/server/index.js'; // from 'sd-native/server'

const executor = await PipelineExecutor.load([process.argv[2] ?? './stable-diffusion-v1-5'], { device: process.env.DEVICE ?? 'cpu' });
const sd = sdNativeRoutes({ backend: new LocalBackend(executor, { maxBatch: 4, batchWaitMs: 50 }), executor });

const app = Fastify();
app.get('/', async () => ({ hello: 'my app', images: '/sd/' }));
await app.register(sd.plugin, { prefix: '/sd' });
await app.listen({ host: '127.0.0.1', port: 8080 });

process.once('SIGTERM', () => void sd.drain().then(() => app.close()).then(() => executor.dispose()));
