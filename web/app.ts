/**
 * The web page of `sd-native serve` (served at `/`): a form that queues a job on the jobs API
 * (`POST /v1/jobs`), follows it over Server-Sent Events (`GET /v1/jobs/:id/events`: queue
 * position, steps, previews, result), shows the image with its parameters and a download link,
 * and keeps a gallery of this session's images. No framework; compiled by web/tsconfig.json.
 */
interface ModelItem { id: string; default_width: number; default_height: number; scheduler: string }
interface JobResult { images: string[]; seeds: number[]; parameters: string[]; seconds: number }
type JobEvent =
  | { type: 'queued'; position: number }
  | { type: 'started' }
  | { type: 'step'; step: number; numSteps: number; preview?: string }
  | { type: 'result'; result: JobResult }
  | { type: 'error'; error: { code: string; message: string } }
  | { type: 'cancelled' };

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const form = $<HTMLFormElement>('form');
const modelSelect = $<HTMLSelectElement>('model');
const schedulerSelect = $<HTMLSelectElement>('scheduler');
const progress = $<HTMLProgressElement>('progress');
const progressText = $<HTMLDivElement>('progressText');
const errorBox = $<HTMLDivElement>('error');
const result = $<HTMLElement>('result');
const image = $<HTMLImageElement>('image');
const parameters = $<HTMLPreElement>('parameters');
const download = $<HTMLAnchorElement>('download');
const gallery = $<HTMLDivElement>('gallery');
const generateButton = $<HTMLButtonElement>('generate');
const cancelButton = $<HTMLButtonElement>('cancel');
let models: ModelItem[] = [];
let currentJob: string | undefined;
let events: EventSource | undefined;

async function getJson<T>(url: string, init?: RequestInit): Promise<T> {
  const res = await fetch(url, init);
  const body = await res.json() as T & { error?: { code: string; message: string } };
  if (!res.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${res.status}`);
  return body;
}

function numberField(id: string): number | undefined {
  const v = $<HTMLInputElement>(id).value.trim();
  return v === '' ? undefined : Number(v);
}

function showError(message: string | undefined): void {
  errorBox.hidden = message === undefined;
  errorBox.textContent = message ?? '';
}

function setBusy(busy: boolean): void {
  generateButton.disabled = busy;
  cancelButton.disabled = !busy;
}

function applyModelDefaults(): void {
  const m = models.find((x) => x.id === modelSelect.value);
  if (!m) return;
  $<HTMLInputElement>('width').placeholder = String(m.default_width);
  $<HTMLInputElement>('height').placeholder = String(m.default_height);
  schedulerSelect.options[0].textContent = `model default (${m.scheduler})`;
}

function showImage(id: string, r: JobResult, index: number): void {
  const src = `data:image/png;base64,${r.images[index]}`;
  image.src = src;
  parameters.textContent = `${r.parameters[index]}\nTime: ${r.seconds.toFixed(2)} s`;
  download.href = `v1/jobs/${id}/images/${index}.png`;
  download.download = `sd-native-${r.seeds[index]}.png`;
  result.hidden = false;
}

function addToGallery(id: string, r: JobResult): void {
  r.images.forEach((_, i) => {
    const thumb = document.createElement('img');
    thumb.src = `data:image/png;base64,${r.images[i]}`;
    thumb.title = r.parameters[i];
    thumb.addEventListener('click', () => showImage(id, r, i));
    gallery.prepend(thumb);
  });
}

function follow(id: string): void {
  events?.close();
  events = new EventSource(`v1/jobs/${id}/events`);
  const handle = (e: MessageEvent<string>) => {
    const ev = JSON.parse(e.data) as JobEvent;
    switch (ev.type) {
      case 'queued':
        progress.removeAttribute('value');
        progressText.textContent = ev.position === 0 ? 'Queued: next' : `Queued: ${ev.position} job(s) ahead`;
        break;
      case 'started':
        progress.value = 0;
        progressText.textContent = 'Started';
        break;
      case 'step':
        progress.value = ev.step / ev.numSteps;
        progressText.textContent = `Step ${ev.step} / ${ev.numSteps}`;
        if (ev.preview) { image.src = `data:image/png;base64,${ev.preview}`; result.hidden = false; }
        break;
      case 'result':
        progress.value = 1;
        progressText.textContent = `Done in ${ev.result.seconds.toFixed(2)} s (seed ${ev.result.seeds.join(', ')})`;
        showImage(id, ev.result, 0);
        addToGallery(id, ev.result);
        finish();
        break;
      case 'error':
        showError(`${ev.error.code}: ${ev.error.message}`);
        progressText.textContent = 'Failed';
        finish();
        break;
      case 'cancelled':
        progressText.textContent = 'Cancelled';
        finish();
        break;
    }
  };
  for (const type of ['queued', 'started', 'step', 'result', 'error', 'cancelled']) {
    events.addEventListener(type, handle as EventListener);
  }
  events.onerror = () => {
    if (currentJob === id) { showError('lost the connection to the server'); finish(); }
  };
}

function finish(): void {
  events?.close();
  events = undefined;
  currentJob = undefined;
  setBusy(false);
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  showError(undefined);
  const params: Record<string, unknown> = {
    prompt: $<HTMLTextAreaElement>('prompt').value,
    negativePrompt: $<HTMLTextAreaElement>('negativePrompt').value || undefined,
    width: numberField('width'),
    height: numberField('height'),
    numInferenceSteps: numberField('steps'),
    guidanceScale: numberField('guidance'),
    seed: numberField('seed'),
    scheduler: schedulerSelect.value || undefined,
  };
  setBusy(true);
  progress.value = 0;
  progressText.textContent = 'Submitting…';
  getJson<{ id: string }>('v1/jobs', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: modelSelect.value, params, previews: true }),
  }).then(({ id }) => { currentJob = id; follow(id); }, (err: Error) => { showError(err.message); progressText.textContent = ''; setBusy(false); });
});

cancelButton.addEventListener('click', () => {
  if (currentJob) void fetch(`v1/jobs/${currentJob}`, { method: 'DELETE' });
});

modelSelect.addEventListener('change', applyModelDefaults);

async function init(): Promise<void> {
  const [m, samplers] = await Promise.all([
    getJson<{ data: ModelItem[] }>('v1/models'),
    getJson<Array<{ name: string }>>('sdapi/v1/samplers'),
  ]);
  models = m.data;
  for (const x of models) modelSelect.add(new Option(x.id, x.id));
  for (const s of samplers) schedulerSelect.add(new Option(s.name, s.name));
  applyModelDefaults();
  $<HTMLSpanElement>('status').textContent = `${models.length} model(s) loaded`;
  document.body.dataset.ready = 'true';
}

init().catch((err: Error) => showError(`could not load the server's models: ${err.message}`));
