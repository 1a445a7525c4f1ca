// Moving weights and activations from a PyTorch reference script to a test: checksums of initial weights (exact
// initialisation parity without shipping the weights) and raw tensor dumps (parity of whole tensors).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tensor, tidy, type Tensor } from '../../src/tensor/index.js';

/** Python source defining weight_checksums(module): one WeightChecksum per state-dict entry, in order. */
export const weightChecksumsPython = String.raw`
def weight_checksums(m):
    return [[k, v.double().sum().item(), v.double().square().sum().item(), v.flatten()[:4].tolist()]
            for k, v in m.state_dict().items()]
`;

/** A state-dict entry's name, sum and sum of squares (in float64), and its first four values. */
export type WeightChecksum = [name: string, sum: number, sumOfSquares: number, head: number[]];

/**
 * Asserts that `state` has the reference's names in the reference's order, its first values exactly, and its sums
 * and sums of squares to 1e-9 relative: the same initial weights for the same seed.
 */
export function assertSameWeights(state: Map<string, Tensor>, reference: readonly WeightChecksum[]): void {
  assert.deepEqual([...state.keys()], reference.map(([name]) => name));
  for (const [name, sum, sumOfSquares, head] of reference) {
    const [s, s2, h] = tidy(() => {
      const d = state.get(name)!.double();
      return [d.sum().item(), d.square().sum().item(), d.flatten().slice(0, 0, 4).toArray()];
    });
    assert.deepEqual(h, head, `first values of ${name}`);
    assert.ok(Math.abs(s - sum) <= 1e-9 * Math.max(1, Math.abs(sum)), `sum of ${name}: ${s} vs ${sum}`);
    assert.ok(Math.abs(s2 - sumOfSquares) <= 1e-9 * Math.max(1, sumOfSquares), `sum of squares of ${name}`);
  }
}

/**
 * Python source defining TensorDump: add(kind, name, tensor) appends the tensor's raw bytes (float32 or int64, native
 * byte order) and a DumpEntry; write(path) writes the bytes; `entries` goes into the script's JSON index.
 */
export const tensorDumpPython = String.raw`
class TensorDump:
    def __init__(self):
        self.entries, self.chunks, self.offset = [], [], 0
    def add(self, kind, name, t):
        data = t.detach().contiguous().numpy().tobytes()
        self.entries.append({'kind': kind, 'name': name, 'shape': list(t.shape), 'dtype': str(t.dtype).replace('torch.', ''),
                             'offset': self.offset, 'nbytes': len(data)})
        self.chunks.append(data)
        self.offset += len(data)
    def write(self, path):
        with open(path, 'wb') as f:
            f.write(b''.join(self.chunks))
`;

export interface DumpEntry { kind: string; name: string; shape: number[]; dtype: string; offset: number; nbytes: number }

/** The tensors of a TensorDump file, one map (name to tensor) per requested kind, in the order of `kinds`. */
export function readTensorDump(path: string, entries: readonly DumpEntry[], kinds: readonly string[]): Map<string, Tensor>[] {
  const bytes = readFileSync(path);
  return kinds.map((kind) => {
    const out = new Map<string, Tensor>();
    for (const e of entries.filter((entry) => entry.kind === kind)) {
      const copy = new Uint8Array(bytes.subarray(e.offset, e.offset + e.nbytes)).buffer;
      out.set(e.name, tensor(e.dtype === 'int64' ? new BigInt64Array(copy) : new Float32Array(copy), { shape: e.shape }));
    }
    return out;
  });
}
