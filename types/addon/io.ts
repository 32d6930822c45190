/** native/addon/io.cc: safetensors files, build information, fp8 codecs. */
import type { AnyTensorData, TensorData } from './tensor.js';

/** One tensor entry of a safetensors header. */
export interface SafetensorsTensorInfo {
  name: string;
  /** safetensors dtype: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL */
  dtype: string;
  shape: number[];
  /** [begin, end) relative to the data section. */
  dataOffsets: [number, number];
  /** [begin, end) from the start of the file. */
  fileOffsets: [number, number];
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: SafetensorsTensorInfo[];
  headerSize: number;
}

export interface BuildInfo {
  libtorchVersion: string;
  /** at::scaled_dot_product_attention is available (libtorch >= 2.0). */
  sdpa: boolean;
  /** fp8 weight storage uses libtorch's float8 dtypes (>= 2.1); else raw uint8 codes and sd-native's decoder. */
  float8: boolean;
  /**
   * Reduced-precision CPU kernels of this libtorch found wrong at start-up and routed around
   * (native/core/runtime/kernel_quirks.h): 'conv2dNarrowOutput' (those convs run in float32),
   * 'groupNormChannelsLast' (the input is made contiguous first). Empty on a correct build.
   */
  cpuKernelQuirks: { bfloat16: Array<'conv2dNarrowOutput' | 'groupNormChannelsLast'>; float16: Array<'conv2dNarrowOutput' | 'groupNormChannelsLast'> };
  cuda: boolean;
  /** enableCudaGraphs is available: this build was compiled against a CUDA libtorch (runtime/device_graph.h). */
  cudaGraphs: boolean;
  threads: number;
  /**
   * The caching CPU allocator is libtorch's CPU allocator (native/core/runtime/cpu_caching_allocator.h):
   * tensor buffers of 256 KiB and more are reused within a pipeline call. False off Linux/macOS or with
   * SD_CPU_CACHING_ALLOCATOR=0 in the environment when the addon was loaded.
   */
  cpuCachingAllocator: boolean;
  /**
   * OpenBLAS's thread count now (process-wide; a pipeline call sets it to its `threads`), or -1 when
   * libtorch does not use OpenBLAS (native/core/runtime/threads.h).
   */
  blasThreads: number;
}

/** The caching CPU allocator's counters since the addon was loaded (bytes are whole pages). */
export interface CpuCacheStats {
  installed: boolean;
  /** Blocks handed out and not yet freed. */
  liveBytes: number;
  /** Freed blocks kept for reuse (0 whenever no pipeline call is in flight). */
  cachedBytes: number;
  /** The largest liveBytes + cachedBytes seen. */
  peakBytes: number;
  /** The largest liveBytes seen. */
  peakLiveBytes: number;
  /** Requests served from the cache. */
  hits: number;
  /** Requests of a size not in the cache. */
  misses: number;
  /** Misses served by resizing a cached block of another size (Linux mremap). */
  recycled: number;
  /** Bytes given back to the kernel. */
  unmappedBytes: number;
  /** Pipeline calls (CpuCacheScope) open now. */
  openScopes: number;
}


export interface IoAddon {
  readSafetensorsHeader(path: string): Promise<SafetensorsHeader>;
  readSafetensors(path: string): Promise<Record<string, TensorData<any>>>;
  writeSafetensors(path: string, tensors: Record<string, AnyTensorData>, metadata?: Record<string, string>): Promise<void>;
  buildInfo(): BuildInfo;
}

/** io.cc bindings used only by the tests (fp8 codecs checked exhaustively against the reference). */
export interface IoTestingAddon {
  /** The caching CPU allocator's counters (runtime/cpu_caching_allocator.h). */
  cpuCacheStats(): CpuCacheStats;
  /**
   * Inside one cache scope, allocates and frees one uint8 tensor per size (bytes), in order, keeping
   * the last `keep` (default 0) alive, the cached bytes capped at `budget` (setCpuCacheBudget; default
   * -1, none): the largest live + cached and live bytes seen after each
   * step, the live bytes before, the counters' changes, and the cached bytes after the last free
   * (`cachedAfter`, scope still open) and once the scope closed (`cachedAtEnd`).
   */
  cpuCacheExercise(sizes: number[], keep?: number, budget?: number): {
    maxLiveCached: number; maxLive: number; baseLive: number; hits: number; misses: number; recycled: number;
    cachedAfter: number; cachedAtEnd: number;
  };
  /**
   * Values rounded to the nearest OCP 8-bit float and decoded back. impl 'reference' (default): sd-native's
   * own encoder/decoder; 'storage': what fp8 weight storage keeps (libtorch's float8 dtypes on >= 2.1);
   * 'cast': libtorch's bare float8 cast, no saturation (>= 2.1 only, else E_UNSUPPORTED_MODEL).
   */
  fp8Quantize(values: TensorData<Float32Array>, format: 'e4m3fn' | 'e5m2', impl?: 'reference' | 'storage' | 'cast'): Promise<TensorData<Float32Array>>;
  /** The float32 values of 8-bit codes, by sd-native's table ('reference') or as fp8 storage decodes them ('storage'). */
  fp8Decode(codes: TensorData<Uint8Array>, format: 'e4m3fn' | 'e5m2', impl: 'reference' | 'storage'): Promise<TensorData<Float32Array>>;
}
