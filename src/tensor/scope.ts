// Deterministic release of native memory. The JS garbage collector cannot see libtorch's memory (a 4-byte
// handle may own 100 MB), so tensors are freed explicitly: dispose(), `using`, or a scope that frees every
// tensor created inside it except those it returns (TensorFlow.js's tidy). Finalizers remain a fallback.

/** Something holding native memory that is freed explicitly, not by the garbage collector: tensors and modules. */
export interface Disposable {
  /** Frees the native memory now; calling it again does nothing. */
  dispose(): void;
  /** True once dispose() has run; using the object after that is an error. */
  readonly disposed: boolean;
}

const scopes: Set<Disposable>[] = [];

/** Records a new tensor in the innermost open scope (called by the Tensor constructor). */
export function trackInScope(t: Disposable): void {
  const top = scopes[scopes.length - 1];
  if (top) top.add(t);
}

/** Exempts tensors from every open scope, so they outlive them (parameters, results kept across steps). */
export function keep<T>(value: T): T {
  for (const t of collectDisposables(value)) for (const s of scopes) s.delete(t);
  return value;
}

function collectDisposables(value: unknown, out = new Set<Disposable>(), depth = 0): Set<Disposable> {
  if (value === null || typeof value !== 'object' || depth > 8) return out;
  if (isDisposable(value)) {
    out.add(value);
    return out;
  }
  if (Array.isArray(value)) {
    for (const v of value) collectDisposables(v, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collectDisposables(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectDisposables(v, out, depth + 1);
  }
  return out;
}

function isDisposable(v: object): v is Disposable {
  return typeof (v as Disposable).dispose === 'function' && 'disposed' in v && (v as { isTensor?: boolean }).isTensor === true;
}

/**
 * Runs `fn` and frees every tensor created during it, except the tensors in its result (a tensor, or arrays,
 * Maps and plain objects holding tensors), which move to the enclosing scope. `fn` must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    popScope(scope);
    for (const t of scope) t.dispose();
    throw err;
  }
  popScope(scope);
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new TypeError('tidy() takes a synchronous function: tensors created after an await cannot be tracked');
  }
  const survivors = collectDisposables(result);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (survivors.has(t)) {
      parent?.add(t);
    } else {
      t.dispose();
    }
  }
  return result;
}

function popScope(scope: Set<Disposable>): void {
  const top = scopes.pop();
  if (top !== scope) throw new Error('tensor scopes closed out of order');
}

/** Disposes every tensor found in `value` (a tensor, or arrays/Maps/objects of tensors). */
export function disposeAll(value: unknown): void {
  for (const t of collectDisposables(value)) t.dispose();
}

/** Number of open scopes (for tests). */
export function scopeDepth(): number {
  return scopes.length;
}
