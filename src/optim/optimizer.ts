// The optimiser base (torch.optim.Optimizer, 1.13): parameter groups whose options override the defaults,
// lazily created per-parameter state, zeroGrad, and state dicts that let a trainer resume bit for bit.
import { Tensor, type Device } from '../tensor/tensor.js';
import { keep, tidy, disposeAll } from '../tensor/scope.js';
import { noGrad, type ZeroGradOptions } from '../tensor/autograd.js';

/** Options every optimiser has. */
export interface BaseOptions {
  /** Learning rate; schedules rewrite it per group between steps. */
  lr: number;
}

/** A resolved parameter group: its tensors and every option (group values, else the optimiser's defaults). */
export type ParamGroup<O> = O & { params: Tensor[] };

/** A parameter group as given to a constructor: options left out take the optimiser's defaults. */
export type ParamGroupInput<O> = Partial<O> & { params: Tensor[] };

/** What an optimiser optimises: one list of parameters, or parameter groups with their own options. */
export type ParamsInput<O> = Tensor[] | ParamGroupInput<O>[];

/** Per-parameter state: tensors (saved as named tensors) and numbers such as step counts (saved as JSON). */
export type ParamState = Record<string, Tensor | number | undefined>;

/** A value JSON can hold, as an optimiser's state saves its options and counters. */
export type JsonValue = number | string | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * An optimiser's complete state, shaped for a safetensors checkpoint: tensors by name, the rest as JSON.
 *
 * Parameters are numbered 0, 1, ... through all groups in order (PyTorch's numbering). Tensor names are
 * `state.<paramIndex>.<name>` with PyTorch's state names (`momentum_buffer`, `exp_avg`, `exp_avg_sq`,
 * `max_exp_avg_sq`). Numbers per parameter (Adam's `step`) are in `json.state["<paramIndex>"]`; a parameter
 * that has never had a gradient has no entry. `json.paramGroups[g]` holds group g's options (camelCase, as
 * the constructor takes them, `betas` as an array) and `params`, the indices of its parameters.
 */
export interface OptimizerStateDict {
  /** State tensors by name (`state.<paramIndex>.<name>`). */
  tensors: Map<string, Tensor>;
  /** Everything else: options per group and numbers per parameter. */
  json: OptimizerStateJson;
}

/** The JSON half of an {@link OptimizerStateDict}. */
export interface OptimizerStateJson {
  /** The optimiser class ('SGD', 'Adam', 'AdamW'); loading into another class is refused. */
  optimizer: string;
  /** Each group's options and the indices of its parameters (`params`). */
  paramGroups: ({ params: number[] } & { [option: string]: JsonValue })[];
  /** Numbers per parameter index, such as Adam's `step`. */
  state: { [paramIndex: string]: { [name: string]: number } };
}

export type { ZeroGradOptions };

const STATE_TENSOR_NAME = /^state\.(\d+)\.([A-Za-z0-9_]+)$/;

/**
 * Base of the optimisers, after torch.optim.Optimizer: parameter groups with their own options (changeable between
 * steps, as schedules do), per-parameter state created on the first step, zeroGrad, and a state dict that saves and
 * restores everything for a resumable checkpoint. `step()` updates the parameters in place without recording
 * gradients.
 */
export abstract class Optimizer<O extends BaseOptions = BaseOptions, S extends ParamState = ParamState> {
  /** Options for groups that do not set their own. */
  readonly defaults: Readonly<O>;
  /** The groups; their options (lr above all) may be changed between steps. */
  readonly paramGroups: ParamGroup<O>[] = [];
  /** State per parameter, created on its first step. */
  protected readonly state = new Map<Tensor, S>();

  /**
   * @param name the class name recorded in state dicts
   * @param defaults every option, resolved (the subclass fills in its defaults)
   */
  protected constructor(readonly name: string, params: ParamsInput<O>, defaults: O) {
    this.defaults = Object.freeze(structuredClone(defaults));
    this.validateOptions(this.defaults);
    if (!Array.isArray(params) || params.length === 0) throw new TypeError(`${name}: got an empty parameter list`);
    const groups: ParamGroupInput<O>[] = params[0] instanceof Tensor
      ? [{ params: params as Tensor[] } as ParamGroupInput<O>]
      : (params as ParamGroupInput<O>[]);
    for (const group of groups) this.addParamGroup(group);
  }

  /** Validates a resolved set of options; throws a RangeError naming the bad one. */
  protected abstract validateOptions(options: O): void;

  /**
   * Updates one parameter in place, given its gradient. Runs under noGrad inside a tidy scope (temporaries
   * are freed afterwards; tensors stored in the state must be keep()-ed).
   */
  protected abstract updateParameter(param: Tensor, grad: Tensor, group: ParamGroup<O>): void;

  /** Checks one parameter's loaded state has what updateParameter needs; throws otherwise. */
  protected validateState(_state: S, _options: O, _paramIndex: number): void {}

  /** Adds a group (for parameters unfrozen during training); options it leaves out take the defaults. */
  addParamGroup(group: ParamGroupInput<O>): void {
    if (!Array.isArray(group.params) || group.params.length === 0) {
      throw new TypeError(`${this.name}: a parameter group needs a non-empty params array`);
    }
    const seen = new Set<Tensor>(this.paramGroups.flatMap((g) => g.params));
    for (const p of group.params) {
      if (!(p instanceof Tensor)) throw new TypeError(`${this.name}: parameters must be Tensors`);
      if (!p.isLeaf) throw new TypeError(`${this.name}: cannot optimise a non-leaf tensor`);
      // PyTorch only warns on duplicates inside a group; a duplicate would be updated twice per step.
      if (seen.has(p)) throw new Error(`${this.name}: a parameter appears more than once in the parameter groups`);
      seen.add(p);
    }
    const { params, ...options } = group;
    // Cloned so that groups never share an options array (betas) with each other or with the caller.
    const resolved = structuredClone({ ...this.defaults, ...definedOnly(options) }) as unknown as O;
    this.validateOptions(resolved);
    this.paramGroups.push({ ...resolved, params: [...params] });
  }

  /** One update of every parameter that has a gradient (torch's optimizer.step()). */
  step(): void {
    noGrad(() => {
      for (const group of this.paramGroups) {
        for (const param of group.params) {
          // One scope per parameter, so temporaries are freed as soon as the parameter is done (as
          // PyTorch's reference counting does) rather than piling up over the whole model.
          tidy(() => {
            const grad = param.grad;
            if (grad !== null) this.updateParameter(param, grad, group);
          });
        }
      }
    });
  }

  /** Clears the gradients of every parameter (see ZeroGradOptions.setToNone; default true). */
  zeroGrad(options: ZeroGradOptions = {}): void {
    const setToNone = options.setToNone ?? true;
    noGrad(() => {
      for (const group of this.paramGroups) {
        for (const p of group.params) {
          if (setToNone) {
            p.grad = null;
          } else {
            const g = p.grad;
            if (g) {
              g.zero_();
              g.dispose();
            }
          }
        }
      }
    });
  }

  /** This parameter's state, created empty on first use. */
  protected stateOf(param: Tensor): S {
    let s = this.state.get(param);
    if (s === undefined) {
      s = {} as S;
      this.state.set(param, s);
    }
    return s;
  }

  /**
   * The state to save (see OptimizerStateDict). Its tensors are new handles on the live state (sharing
   * memory, as PyTorch's state_dict does): write them out before the next step, then dispose them
   * (`disposeAll(sd.tensors)`), which leaves the optimiser's own state intact.
   */
  stateDict(): OptimizerStateDict {
    const tensors = new Map<string, Tensor>();
    const state: OptimizerStateJson['state'] = {};
    const paramGroups: OptimizerStateJson['paramGroups'] = [];
    let index = 0;
    for (const group of this.paramGroups) {
      const { params, ...options } = group;
      const indices: number[] = [];
      for (const p of params) {
        const s = this.state.get(p);
        if (s !== undefined) {
          const numbers: { [name: string]: number } = {};
          for (const [key, value] of Object.entries(s)) {
            if (value instanceof Tensor) tensors.set(`state.${index}.${key}`, value.detach());
            else if (typeof value === 'number') numbers[key] = value;
          }
          state[String(index)] = numbers;
        }
        indices.push(index++);
      }
      paramGroups.push({ ...(structuredClone(options) as { [option: string]: JsonValue }), params: indices });
    }
    return { tensors, json: { optimizer: this.name, paramGroups, state } };
  }

  /**
   * Restores a state from stateDict() (possibly read back from a checkpoint) into an optimiser built over
   * the same parameters in the same groups. Group options (lr included) are replaced by the saved ones;
   * state tensors are copied (to each parameter's dtype and device), so the caller keeps ownership of
   * `sd.tensors`. Nothing changes if the state does not fit.
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const { json } = sd;
    if (json.optimizer !== this.name) {
      throw new Error(`${this.name}: cannot load a state dict saved by ${json.optimizer}`);
    }
    if (json.paramGroups.length !== this.paramGroups.length) {
      throw new Error(`${this.name}: the state dict has ${json.paramGroups.length} parameter groups, the optimiser ${this.paramGroups.length}`);
    }
    const params: Tensor[] = [];
    const groupOfParam: number[] = [];
    const newOptions: O[] = [];
    this.paramGroups.forEach((group, g) => {
      const saved = json.paramGroups[g]!;
      if (saved.params.length !== group.params.length) {
        throw new Error(`${this.name}: parameter group ${g} has ${group.params.length} parameters, the state dict ${saved.params.length}`);
      }
      for (const p of group.params) {
        params.push(p);
        groupOfParam.push(g);
      }
      const { params: _indices, ...options } = saved;
      const resolved = structuredClone({ ...this.defaults, ...options }) as unknown as O;
      this.validateOptions(resolved);
      newOptions.push(resolved);
    });

    const loaded = new Map<Tensor, S>();
    const stateAt = (index: number, what: string): S => {
      const p = params[index];
      if (p === undefined) throw new Error(`${this.name}: ${what} refers to parameter ${index}, but there are ${params.length}`);
      let s = loaded.get(p);
      if (s === undefined) {
        s = {} as S;
        loaded.set(p, s);
      }
      return s;
    };
    try {
      for (const [key, numbers] of Object.entries(json.state)) {
        const s = stateAt(Number(key), `state entry ${key}`);
        for (const [name, value] of Object.entries(numbers)) {
          if (typeof value !== 'number') throw new TypeError(`${this.name}: state.${key}.${name} must be a number`);
          (s as ParamState)[name] = value;
        }
      }
      for (const [tensorName, value] of sd.tensors) {
        const m = STATE_TENSOR_NAME.exec(tensorName);
        if (!m) throw new Error(`${this.name}: unexpected tensor '${tensorName}' in the state dict (expected state.<index>.<name>)`);
        const index = Number(m[1]);
        const s = stateAt(index, `tensor '${tensorName}'`);
        const p = params[index]!;
        if (value.shape.join(',') !== p.shape.join(',')) {
          throw new Error(`${this.name}: '${tensorName}' has shape [${value.shape}], its parameter [${p.shape}]`);
        }
        (s as ParamState)[m[2]!] = keep(value.to({ dtype: p.dtype, device: p.device as Device }, { copy: true }));
      }
      for (const [p, s] of loaded) {
        const index = params.indexOf(p);
        this.validateState(s, newOptions[groupOfParam[index]!]!, index);
      }
    } catch (err) {
      for (const s of loaded.values()) disposeAll(Object.values(s));
      throw err;
    }

    this.disposeState();
    for (const [p, s] of loaded) this.state.set(p, s);
    this.paramGroups.forEach((group, g) => Object.assign(group, newOptions[g]));
  }

  /** Frees the state tensors (the optimiser starts afresh if stepped again). */
  dispose(): void {
    this.disposeState();
  }

  private disposeState(): void {
    for (const s of this.state.values()) disposeAll(Object.values(s));
    this.state.clear();
  }
}

/** The entries whose value is not undefined, so `{ lr: undefined }` does not override a default. */
export function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Throws a RangeError unless `value` is a finite number >= 0. */
export function checkNonNegative(optimizer: string, option: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${optimizer}: invalid ${option} ${value} (must be a finite number >= 0)`);
  }
}
