/**
 * `sd-native/server`: the image server of `sd-native serve` as a library — the fastify app
 * ({@link createServer}) or its routes as a plugin for your own app ({@link sdNativeRoutes}), the
 * in-process backend with dynamic batching ({@link LocalBackend}) and the executor over loaded
 * pipelines ({@link PipelineExecutor}).
 * @packageDocumentation
 */
export { createServer, sdNativeRoutes } from './app.js';
export type { ServerOptions, SdNativeRoutes } from './app.js';
export { LocalBackend, BackendError } from './local_backend.js';
export type { LocalBackendOptions } from './local_backend.js';
export { PipelineExecutor, batchKey, checkJobRequest, jobSeeds, modelNameOf, librarySupportsSeedLists } from './executor.js';
export type { LoadedModel, ModelDescriptor } from './executor.js';
export { HttpError, statusOfCode } from './errors.js';
export type * from './backend.js';
