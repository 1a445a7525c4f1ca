// Data types: names as in PyTorch, codes as libtorch's c10::ScalarType enum.

/**
 * Element types, named as PyTorch names them (torch.float32 is 'float32'). Tensors default to 'float32'; labels and
 * indices are 'int64'.
 */
export type DType = 'uint8' | 'int8' | 'int16' | 'int32' | 'int64' | 'float16' | 'float32' | 'float64' | 'bool' | 'bfloat16';

const codes: Record<DType, number> = {
  uint8: 0, int8: 1, int16: 2, int32: 3, int64: 4, float16: 5, float32: 6, float64: 7, bool: 11, bfloat16: 15,
};
const names = new Map<number, DType>(Object.entries(codes).map(([name, code]) => [code, name as DType]));

/** libtorch's c10::ScalarType code of a dtype (what the native addon takes); throws on an unknown name. */
export function dtypeCode(dtype: DType): number {
  const code = codes[dtype];
  if (code === undefined) throw new TypeError(`unknown dtype '${dtype}' (one of ${Object.keys(codes).join(', ')})`);
  return code;
}

/** The dtype of a c10::ScalarType code; throws for a libtorch type crossmax does not expose (complex, quantised). */
export function dtypeFromCode(code: number): DType {
  const name = names.get(code);
  if (name === undefined) throw new TypeError(`libtorch dtype code ${code} has no crossmax name`);
  return name;
}

/** Bytes per element of each dtype (bool takes one byte, float16 and bfloat16 two). */
export const elementSize: Record<DType, number> = {
  uint8: 1, int8: 1, int16: 2, int32: 4, int64: 8, float16: 2, float32: 4, float64: 8, bool: 1, bfloat16: 2,
};

/**
 * The TypedArray that holds the elements of a dtype: int64 as BigInt64Array, bool as Uint8Array (0/1), float16 and
 * bfloat16 as their raw 16-bit patterns in a Uint16Array.
 */
export type TypedArrayFor<D extends DType> = D extends 'float32' ? Float32Array
  : D extends 'float64' ? Float64Array
  : D extends 'int32' ? Int32Array
  : D extends 'int64' ? BigInt64Array
  : D extends 'int16' ? Int16Array
  : D extends 'int8' ? Int8Array
  : D extends 'uint8' | 'bool' ? Uint8Array
  : Uint16Array; // float16/bfloat16: raw bits

/** Any TypedArray a tensor's elements come in or out as (see {@link TypedArrayFor}). */
export type AnyTypedArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Int16Array | Int8Array | Uint8Array | Uint16Array;

/**
 * A TypedArray of `dtype` over `buffer` (no copy) from `byteOffset`, `length` elements (default: to the buffer's
 * end).
 */
export function typedArrayOf(dtype: DType, buffer: ArrayBuffer, byteOffset = 0, length?: number): AnyTypedArray {
  switch (dtype) {
    case 'float32': return new Float32Array(buffer, byteOffset, length);
    case 'float64': return new Float64Array(buffer, byteOffset, length);
    case 'int32': return new Int32Array(buffer, byteOffset, length);
    case 'int64': return new BigInt64Array(buffer, byteOffset, length);
    case 'int16': return new Int16Array(buffer, byteOffset, length);
    case 'int8': return new Int8Array(buffer, byteOffset, length);
    case 'uint8': case 'bool': return new Uint8Array(buffer, byteOffset, length);
    case 'float16': case 'bfloat16': return new Uint16Array(buffer, byteOffset, length);
  }
}

/** The dtype a TypedArray's elements have (Uint8Array is uint8; use the explicit option for bool). */
export function dtypeOfTypedArray(data: AnyTypedArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint8Array) return 'uint8';
  throw new TypeError('Uint16Array needs an explicit dtype (float16 or bfloat16)');
}

/** True for float16, bfloat16, float32 and float64: the dtypes that can require gradients. */
export function isFloatingPoint(dtype: DType): boolean {
  return dtype === 'float16' || dtype === 'float32' || dtype === 'float64' || dtype === 'bfloat16';
}
