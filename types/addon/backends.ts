/** native/addon/backends.cc: the torch.backends flags. */

export interface BackendsAddon {
  getCudnnBenchmark(): boolean;
  setCudnnBenchmark(on: boolean): void;
  getCudaMatmulAllowTf32(): boolean;
  setCudaMatmulAllowTf32(on: boolean): void;
  getCudnnAllowTf32(): boolean;
  setCudnnAllowTf32(on: boolean): void;
}
