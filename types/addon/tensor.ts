/**
 * Values that cross the addon boundary in every binding: dense tensors and branded handles.
 * (A .ts file holding only types, so that the published declarations include it.)
 */

/** A dense tensor crossing the boundary: row-major data and its shape. */
export interface TensorData<A extends ArrayLike<number | bigint> = Float32Array> {
  data: A;
  shape: number[];
  /** Set on tensors coming from native code: 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool'. */
  dtype?: string;
}

export type AnyTensorData = TensorData<Float32Array> | TensorData<Float64Array> | TensorData<BigInt64Array>
  | TensorData<Int32Array> | TensorData<Uint8Array>;


declare const handleKind: unique symbol;

/**
 * An opaque native object (an N-API External owning a `std::shared_ptr`), branded with the kind
 * of object it holds so that a VAE handle cannot be passed where a pipeline is expected. The
 * addon checks the kind again at run time (E_INVALID_ARGUMENT: "… is a native handle of another kind").
 */
export type Handle<Kind extends string> = { readonly [handleKind]: Kind };

/** Any native handle (for code that only stores or disposes handles). */
export type NativeHandle = Handle<string>;

/** A compute / weight dtype of a model or pipeline. */
export type PipelineDtype = 'float32' | 'float16' | 'bfloat16';
