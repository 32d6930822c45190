/**
 * The contract between `sd-native serve`'s HTTP layer and the place jobs run. Two backends
 * implement {@link JobBackend}: the in-process one (one process holds the models, dynamic
 * batching) and the Redis one (BullMQ: API processes enqueue, worker processes run). Both run
 * jobs through a {@link JobExecutor}, so a job gives the same image whichever backend serves it.
 *
 * Everything here is JSON-serialisable (a BullMQ job carries a {@link JobRequest}; step events
 * travel between processes), so images are base64 PNG strings, not buffers.
 */

/** What a job asks for: diffusers' pipeline task names. */
export type JobTask = 'text2image' | 'image2image' | 'inpainting';

/**
 * The generation parameters of a job, in the library's option names (camelCase, as
 * `StableDiffusionPipeline.generate` takes them). The HTTP layer maps OpenAI / A1111 field names
 * onto these and validates them with the library's zod schemas before a job is made.
 */
export interface JobParams {
  prompt: string;
  negativePrompt?: string;
  width?: number;
  height?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  /** One seed per image (diffusers' list of generators); length = numImagesPerPrompt when given. */
  seed?: number | number[];
  numImagesPerPrompt?: number;
  /** A diffusers scheduler class name or an A1111 sampler name. */
  scheduler?: string;
  strength?: number;
  clipSkip?: number;
  /** image2image / inpainting: the init image, base64 PNG/JPEG/WebP. */
  image?: string;
  /** inpainting: the mask, base64 PNG (white = repaint). */
  maskImage?: string;
}

/** One job as submitted: which loaded model, which task, what parameters. */
export interface JobRequest {
  /** The name of a loaded model (as `GET /sdapi/v1/sd-models` lists it). */
  model: string;
  task: JobTask;
  params: JobParams;
  /** Send a preview image with step events (when the model has a preview decoder). */
  previews?: boolean;
}

/** A finished job's images. */
export interface JobResult {
  /** base64 PNG, each with the A1111 `parameters` text chunk. */
  images: string[];
  /** The seed of each image. */
  seeds: number[];
  /** The A1111 `parameters` text of each image. */
  parameters: string[];
  /** Seconds spent generating (not waiting). */
  seconds: number;
}

/** The error a failed job carries; `code` is an `SdError` code (`E_OUT_OF_MEMORY`, …). */
export interface JobError {
  code: string;
  message: string;
}

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** What subscribers of a job hear, in order; the last event is `result`, `error` or `cancelled`. */
export type JobEvent =
  | { type: 'queued'; position: number }
  | { type: 'started' }
  | { type: 'step'; step: number; numSteps: number; preview?: string }
  | { type: 'result'; result: JobResult }
  | { type: 'error'; error: JobError }
  | { type: 'cancelled' };

/** A job's state as `GET /v1/jobs/:id` reports it. Times are epoch milliseconds. */
export interface JobInfo {
  id: string;
  status: JobStatus;
  request: JobRequest;
  /** 0-based place in the queue while queued. */
  position?: number;
  step?: number;
  numSteps?: number;
  result?: JobResult;
  error?: JobError;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
}

/** Where jobs are queued and run. */
export interface JobBackend {
  /** Queues a job; resolves its id. Rejects with `E_UNAVAILABLE` while draining or closed. */
  submit(request: JobRequest): Promise<string>;
  /** The job's state, or undefined when unknown (never submitted, or expired). */
  get(id: string): Promise<JobInfo | undefined>;
  /**
   * Calls `onEvent` with the job's current state first (as the event that describes it), then
   * with every later event; returns the unsubscribe function.
   */
  subscribe(id: string, onEvent: (event: JobEvent) => void): () => void;
  /** Cancels a queued or running job (a running one stops within one step); false when already done or unknown. */
  cancel(id: string): Promise<boolean>;
  /** Jobs waiting and running now (for `/metrics` and `/health`). */
  stats(): Promise<{ queued: number; running: number }>;
  /** Stops taking jobs; with `drain`, waits for queued and running jobs to finish first. */
  close(options: { drain: boolean }): Promise<void>;
}

/** One job handed to an executor. */
export interface ExecutorJob {
  id: string;
  request: JobRequest;
  signal: AbortSignal;
  onEvent: (event: JobEvent) => void;
}

/**
 * Runs jobs on loaded models. `run` takes one job, or several compatible ones (same model,
 * task, size, steps, scheduler, guidance) that it may run as one batched UNet call; each job
 * keeps its own seeds, so a batched image equals the same job run alone. It settles each job's
 * outcome independently (one job's abort or bad image does not fail the others).
 */
export interface JobExecutor {
  run(jobs: ExecutorJob[]): Promise<Array<{ result: JobResult } | { error: JobError } | { cancelled: true }>>;
  /** The models it holds, by name. */
  models(): string[];
  /** Frees the models. */
  dispose(): void;
}
