/**
 * Process-wide backend flags, modelled on `torch.backends` (torch/backends/cudnn/__init__.py,
 * torch/backends/cuda/__init__.py). They are libtorch's global switches
 * (`at::globalContext()`): readable and settable at any time, affecting every pipeline of the
 * process from its next kernel launch. They only change CUDA kernels; on a CPU-only build they
 * are stored and read back but have no effect.
 * @example
 * import { backends } from 'sd-native';
 * backends.cudnn.benchmark = true;          // fixed-size SD runs: let cuDNN pick the fastest conv
 * backends.cuda.matmul.allowTf32 = true;    // Ampere+: TF32 matmuls, ~10-bit mantissa
 */
import { addon } from './native.js';
import { InvalidArgumentError, nativeSync } from './errors.js';

function checkBool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean; received ${typeof v}`);
  return v;
}

/** `torch.backends.cudnn`. */
export interface CudnnBackend {
  /**
   * cuDNN auto-tuner (`torch.backends.cudnn.benchmark`, default false). When true, the first
   * convolution of each new input shape benchmarks cuDNN's algorithms and keeps the fastest.
   * Trade: faster steady-state convolutions for a slower first call per shape (and possibly
   * more workspace memory, and run-to-run nondeterminism of which algorithm wins). Worth it when
   * the image size stays fixed across calls; wasteful when sizes change every call.
   */
  benchmark: boolean;
  /**
   * TF32 for cuDNN convolutions (`torch.backends.cudnn.allow_tf32`, libtorch default true).
   * Trade: on Ampere and newer GPUs, float32 convolutions run on tensor cores with a 10-bit
   * mantissa (~1e-3 relative error per op) for up to several times the speed; false keeps full
   * float32 precision. No effect on float16/bfloat16 pipelines or on the CPU.
   */
  allowTf32: boolean;
}

/** `torch.backends.cuda`. */
export interface CudaBackend {
  matmul: {
    /**
     * TF32 for cuBLAS matmuls (`torch.backends.cuda.matmul.allow_tf32`, libtorch default false).
     * Trade: float32 Linear/attention matmuls on tensor cores with a 10-bit mantissa (Ampere+):
     * much faster, ~1e-3 relative error per product. No effect on half-precision pipelines or CPU.
     */
    allowTf32: boolean;
  };
}

const cudnn: CudnnBackend = Object.defineProperties({} as CudnnBackend, {
  benchmark: {
    enumerable: true,
    get: () => nativeSync(() => addon().getCudnnBenchmark()),
    set: (v: unknown) => { const b = checkBool('backends.cudnn.benchmark', v); nativeSync(() => addon().setCudnnBenchmark(b)); },
  },
  allowTf32: {
    enumerable: true,
    get: () => nativeSync(() => addon().getCudnnAllowTf32()),
    set: (v: unknown) => { const b = checkBool('backends.cudnn.allowTf32', v); nativeSync(() => addon().setCudnnAllowTf32(b)); },
  },
});

const matmul = Object.defineProperties({} as CudaBackend['matmul'], {
  allowTf32: {
    enumerable: true,
    get: () => nativeSync(() => addon().getCudaMatmulAllowTf32()),
    set: (v: unknown) => { const b = checkBool('backends.cuda.matmul.allowTf32', v); nativeSync(() => addon().setCudaMatmulAllowTf32(b)); },
  },
});

/**
 * Global backend flags (`torch.backends`): `backends.cudnn.benchmark`,
 * `backends.cudnn.allowTf32`, `backends.cuda.matmul.allowTf32`. Setting a non-boolean throws
 * InvalidArgumentError (`E_INVALID_ARGUMENT`).
 */
export const backends: { readonly cudnn: CudnnBackend; readonly cuda: CudaBackend } = Object.freeze({
  cudnn,
  cuda: Object.freeze({ matmul }),
});
