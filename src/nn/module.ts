// The Module tree (torch.nn.Module). Parameters, buffers and sub-modules are registered under names, so the
// dotted path of every tensor ("layer1.0.conv1.weight") is its key in the state dict, exactly as in PyTorch:
// a torchvision checkpoint loads by name into the matching crossmax model.
import { aten, isFloatingPoint, keep, noGrad, Tensor, type Device, type DType, type ZeroGradOptions } from '../tensor/index.js';

// Replaces a tensor's data while keeping the tensor itself (PyTorch's `param.data = ...`), so references held
// elsewhere (an optimizer's parameter list) stay valid when a module moves to another device or dtype.
const setData = aten('set_data');

/** How {@link Module.registerParameter} registers a tensor. */
export interface ParameterOptions {
  /** Default true for floating-point tensors (as torch.nn.Parameter), false otherwise. */
  requiresGrad?: boolean;
}

/** How {@link Module.registerBuffer} registers a tensor. */
export interface BufferOptions {
  /** Part of the state dict. Default true. Non-persistent buffers still move with `to()`. */
  persistent?: boolean;
}

/** How {@link Module.loadStateDict} matches keys. */
export interface LoadStateDictOptions {
  /** Missing and unexpected keys are errors. Default true. Shape and dtype mismatches are always errors. */
  strict?: boolean;
}

/** The keys {@link Module.loadStateDict} could not match (both empty after a strict load, which throws instead). */
export interface LoadStateDictResult {
  /** Keys of this module's state that the loaded dict did not hold (those tensors keep their values). */
  missingKeys: string[];
  /** Keys in the loaded dict that this module does not have (ignored). */
  unexpectedKeys: string[];
}

export type { ZeroGradOptions };

/** Tensors by dotted name ("layer1.0.conv1.weight"), in registration order: PyTorch's state_dict. */
export type StateDict = Map<string, Tensor>;

/**
 * Base of every layer and model. Subclasses register their tensors and children in the constructor, in the
 * order PyTorch's equivalent assigns them (that order is the state dict's order), and define `forward`.
 */
export abstract class Module implements Disposable {
  /** Training mode (batch statistics, dropout); set through train()/eval(). */
  training = true;
  private readonly ownParameters = new Map<string, Tensor>();
  private readonly ownBuffers = new Map<string, Tensor>();
  private readonly nonPersistentBuffers = new Set<string>();
  private readonly ownModules = new Map<string, Module>();

  // `never[]` lets each module declare its own inputs; see Layer for the one-tensor form Sequential chains.
  /**
   * The module's computation. Each subclass declares its own inputs and output; {@link Layer}s take and return one
   * tensor.
   */
  abstract forward(...inputs: never[]): unknown;

  /** Registers a trainable tensor (kept out of every open tidy scope) and returns it. */
  registerParameter(name: string, tensor: Tensor, options: ParameterOptions = {}): Tensor {
    this.checkNewName(name);
    const requiresGrad = options.requiresGrad ?? isFloatingPoint(tensor.dtype);
    if (tensor.requiresGrad !== requiresGrad) tensor.setRequiresGrad(requiresGrad);
    this.ownParameters.set(name, keep(tensor));
    return tensor;
  }

  /** Registers a state tensor that is not trained (running statistics, counters) and returns it. */
  registerBuffer(name: string, tensor: Tensor, options: BufferOptions = {}): Tensor {
    this.checkNewName(name);
    this.ownBuffers.set(name, keep(tensor));
    if (options.persistent === false) this.nonPersistentBuffers.add(name);
    return tensor;
  }

  /** Registers a child module under `name` (its tensors get the prefix "name.") and returns it. */
  registerModule<M extends Module>(name: string, module: M): M {
    this.checkNewName(name);
    this.ownModules.set(name, module);
    return module;
  }

  private checkNewName(name: string): void {
    if (name === '' || name.includes('.')) throw new Error(`${this.typeName}: invalid name '${name}' (non-empty, no '.')`);
    if (this.ownParameters.has(name) || this.ownBuffers.has(name) || this.ownModules.has(name)) {
      throw new Error(`${this.typeName}: '${name}' is already registered`);
    }
  }

  /** The class name, for error messages. */
  protected get typeName(): string {
    return this.constructor.name;
  }

  // ---- traversal (pre-order, own tensors before children's, as PyTorch) ----------------------------------

  /** This module (named '') and every descendant, each once. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const visit = (module: Module, path: string) => {
      if (seen.has(module)) return;
      seen.add(module);
      out.push([path, module]);
      for (const [name, child] of module.ownModules) visit(child, join(path, name));
    };
    visit(this, prefix);
    return out;
  }
  /** This module and every descendant, each once (depth-first, registration order). */
  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }
  /** Direct children with their names. */
  namedChildren(): [string, Module][] {
    return [...this.ownModules];
  }
  /** Direct children. */
  children(): Module[] {
    return [...this.ownModules.values()];
  }

  /** Every parameter with its dotted name, each tensor once (a shared parameter under its first name). */
  namedParameters(): [string, Tensor][] {
    return this.collectUnique((m) => m.ownParameters);
  }
  /** Every parameter of this module and its descendants, each tensor once (what an optimiser takes). */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }
  /** Every buffer, persistent or not, with its dotted name. */
  namedBuffers(): [string, Tensor][] {
    return this.collectUnique((m) => m.ownBuffers);
  }
  /** Every buffer of this module and its descendants. */
  buffers(): Tensor[] {
    return this.namedBuffers().map(([, t]) => t);
  }

  private collectUnique(own: (m: Module) => Map<string, Tensor>): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [path, module] of this.namedModules()) {
      for (const [name, t] of own(module)) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([join(path, name), t]);
      }
    }
    return out;
  }

  /** The sub-module at a dotted path ('' is this module). */
  getSubmodule(path: string): Module {
    let module: Module = this;
    if (path === '') return module;
    for (const part of path.split('.')) {
      const next = module.ownModules.get(part);
      if (!next) throw new Error(`${this.typeName} has no sub-module '${path}' ('${part}' not found)`);
      module = next;
    }
    return module;
  }
  /** The parameter at a dotted path ("layer1.0.conv1.weight"); throws naming the path when there is none. */
  getParameter(path: string): Tensor {
    const [owner, name] = this.splitPath(path);
    const t = owner.ownParameters.get(name);
    if (!t) throw new Error(`${this.typeName} has no parameter '${path}'`);
    return t;
  }
  /** The buffer at a dotted path ("bn1.running_mean"); throws naming the path when there is none. */
  getBuffer(path: string): Tensor {
    const [owner, name] = this.splitPath(path);
    const t = owner.ownBuffers.get(name);
    if (!t) throw new Error(`${this.typeName} has no buffer '${path}'`);
    return t;
  }
  private splitPath(path: string): [Module, string] {
    const dot = path.lastIndexOf('.');
    return dot < 0 ? [this, path] : [this.getSubmodule(path.slice(0, dot)), path.slice(dot + 1)];
  }

  // ---- modes and gradients ---------------------------------------------------------------------------------

  /** Sets training mode on this module and every descendant. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }
  /** Sets evaluation mode (running statistics, no dropout) on this module and every descendant; returns this. */
  eval(): this {
    return this.train(false);
  }

  /** Clears the gradients of every parameter (see {@link ZeroGradOptions} for whether they are freed or zeroed). */
  zeroGrad(options: ZeroGradOptions = {}): void {
    noGrad(() => {
      for (const p of this.parameters()) {
        if (options.setToNone ?? true) {
          p.grad = null;
        } else {
          const g = p.grad;
          g?.zero_();
          g?.dispose();
        }
      }
    });
  }

  // ---- device, dtype, memory -------------------------------------------------------------------------------

  /**
   * Moves every parameter and buffer (and gradient) to a device and/or converts floating-point ones to a
   * floating-point dtype, in place: the module and its tensors keep their identity, the old memory is freed.
   * Integer buffers (num_batches_tracked) keep their dtype, as in PyTorch.
   */
  to(target: Device | DType | { device?: Device; dtype?: DType }): this {
    const spec = typeof target === 'string'
      ? (isDevice(target) ? { device: target as Device } : { dtype: target as DType })
      : target;
    if (spec.dtype !== undefined && !isFloatingPoint(spec.dtype)) {
      throw new TypeError(`Module.to only converts to floating-point dtypes, got ${spec.dtype}`);
    }
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.buffers()]) {
        moveInPlace(t, spec);
        const g = t.grad;
        if (g) {
          moveInPlace(g, spec);
          g.dispose();
        }
      }
    });
    return this;
  }

  /** Frees every parameter and buffer now; the module cannot be used afterwards. */
  dispose(): void {
    for (const t of [...this.parameters(), ...this.buffers()]) t.dispose();
  }
  /** Same as dispose(), for `using model = ...`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---- state dict ------------------------------------------------------------------------------------------

  /**
   * Parameters and persistent buffers by dotted name, in PyTorch's order. The tensors are detached views that
   * share memory with the module (dispose them when done; the module's own tensors are unaffected).
   */
  stateDict(): StateDict {
    const out: StateDict = new Map();
    this.visitState('', (name, t) => out.set(name, t.detach()));
    return out;
  }

  // Recurses without de-duplication, as PyTorch's state_dict: a shared child appears under each of its names.
  private visitState(prefix: string, visit: (name: string, t: Tensor, owner: Module, local: string) => void): void {
    for (const [name, t] of this.ownParameters) visit(join(prefix, name), t, this, name);
    for (const [name, t] of this.ownBuffers) {
      if (!this.nonPersistentBuffers.has(name)) visit(join(prefix, name), t, this, name);
    }
    for (const [name, child] of this.ownModules) child.visitState(join(prefix, name), visit);
  }

  /**
   * Copies values into the module's tensors (in place, without recording gradients). Every key is checked
   * before anything is copied, so a failed load leaves the module unchanged. Values may live on another
   * device; they must have the module's dtype and shape.
   */
  loadStateDict(state: StateDict | Record<string, Tensor>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    const source = state instanceof Map ? state : new Map(Object.entries(state));
    const strict = options.strict ?? true;
    const missingKeys: string[] = [];
    const mismatches: string[] = [];
    const copies: [Tensor, Tensor][] = [];
    const fills: (() => void)[] = [];
    const known = new Set<string>();
    this.visitState('', (name, target, owner, local) => {
      known.add(name);
      const value = source.get(name);
      if (value === undefined) {
        if (!owner.acceptMissingState(local, target, fills)) missingKeys.push(name);
        return;
      }
      if (!sameShape(value.shape, target.shape)) {
        mismatches.push(`size mismatch for ${name}: expected shape [${target.shape.join(', ')}], got [${value.shape.join(', ')}]`);
      } else if (value.dtype !== target.dtype) {
        mismatches.push(`dtype mismatch for ${name}: expected ${target.dtype}, got ${value.dtype}`);
      } else {
        copies.push([target, value]);
      }
    });
    const unexpectedKeys = [...source.keys()].filter((k) => !known.has(k));
    const errors: string[] = [];
    if (strict && missingKeys.length > 0) errors.push(`Missing key(s): ${quoteList(missingKeys)}.`);
    if (strict && unexpectedKeys.length > 0) errors.push(`Unexpected key(s): ${quoteList(unexpectedKeys)}.`);
    errors.push(...mismatches);
    if (errors.length > 0) {
      throw new Error(`Error(s) in loading state dict for ${this.typeName}:\n  ${errors.join('\n  ')}`);
    }
    noGrad(() => {
      for (const [target, value] of copies) target.copy_(value);
      for (const fill of fills) fill();
    });
    return { missingKeys, unexpectedKeys };
  }

  /**
   * Whether a key absent from a loaded state dict is acceptable for this module's own tensor `localName`;
   * a module may queue a fill for it (run only if the whole load succeeds). Default: never.
   */
  protected acceptMissingState(_localName: string, _target: Tensor, _fills: (() => void)[]): boolean {
    return false;
  }
}

/** A module from one tensor to one tensor: what Sequential chains. */
export interface Layer extends Module {
  /** One tensor in, one tensor out. */
  forward(x: Tensor): Tensor;
}

function join(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

function isDevice(s: string): boolean {
  return s === 'cpu' || s === 'cuda' || s.startsWith('cuda:');
}

function moveInPlace(t: Tensor, spec: { device?: Device; dtype?: DType }): void {
  const dtype = spec.dtype !== undefined && isFloatingPoint(t.dtype) ? spec.dtype : t.dtype;
  const moved = t.to({ device: spec.device, dtype });
  try {
    if (moved.device !== t.device || moved.dtype !== t.dtype) setData(t, moved);
  } finally {
    moved.dispose();
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

function quoteList(names: string[]): string {
  return names.map((n) => `"${n}"`).join(', ');
}

/**
 * Runs `fn` with `model` in eval mode (BatchNorm on its running statistics, no dropout), then gives every
 * sub-module back its own mode. A measurement (evaluation, an attack's evaluation, a gallery) must not run in
 * training mode: BatchNorm would use the batch's statistics and overwrite its running ones with those of
 * adversarial batches; one image in a batch makes the unbiased variance 0/0, NaN for good. Anything that is not a
 * Module (a plain classifier function) runs as it is.
 */
export function withEvalMode<T>(model: unknown, fn: () => T): T {
  if (!(model instanceof Module)) return fn();
  const modes = model.modules().map((m) => [m, m.training] as const);
  model.eval();
  try {
    return fn();
  } finally {
    for (const [m, training] of modes) m.training = training;
  }
}
