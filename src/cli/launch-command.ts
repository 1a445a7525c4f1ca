// `crossmax launch --nproc N -- <command>`: a local multi-process run. It only sets the variables torchrun sets
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and starts the processes; on clusters, torchrun, srun
// or a PyTorchJob set the same variables and crossmax reads them (src/distributed/environment.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { UsageError } from './args.js';

/** `crossmax launch --help`. */
export const LAUNCH_USAGE = `crossmax launch --nproc N [--master-port P] -- <command> [args...]

Starts N processes of <command> on this machine with the torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR=127.0.0.1, MASTER_PORT: --master-port or a free port). A <command> that is a crossmax command
(train, eval, ...) runs this crossmax; anything else runs as given. SIGINT/SIGTERM go to every rank. The launch
exits 0 when every rank did, else non-zero naming the first rank that failed (the others are stopped).
  --nproc N          processes (ranks), at least 1
  --master-port P    the port of rank 0's rendezvous store (default: a free one)
  --threads-per-proc T  CROSSMAX_NUM_THREADS for each rank (default: cores / N, at least 1)

On a cluster use the launcher instead: torchrun --nproc-per-node N --no-python node bin/crossmax.js train ...,
or srun (Slurm's SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID and MASTER_ADDR are read).`;

const CROSSMAX_COMMANDS = new Set(['demo', 'train', 'eval', 'attack', 'generate', 'gallery', 'transfer', 'predict', 'info']);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

function positiveInteger(flag: string, text: string | undefined): number {
  if (text === undefined || !/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`${flag} needs a positive integer, got ${JSON.stringify(text)}`);
  return Number(text);
}

/** Runs `crossmax launch`; resolves to the exit code. */
export async function launchCommand(args: string[]): Promise<number> {
  const split = args.indexOf('--');
  if (split < 0 || split === args.length - 1) throw new UsageError('give the command to launch after --, e.g. crossmax launch --nproc 2 -- train --preset cifar-small');
  const own = args.slice(0, split);
  const command = args.slice(split + 1);
  let nproc: number | undefined;
  let port: number | undefined;
  let threads: number | undefined;
  for (let i = 0; i < own.length; i++) {
    const flag = own[i]!;
    if (flag === '--nproc') nproc = positiveInteger('--nproc', own[++i]);
    else if (flag === '--master-port') port = positiveInteger('--master-port', own[++i]);
    else if (flag === '--threads-per-proc') threads = positiveInteger('--threads-per-proc', own[++i]);
    else throw new UsageError(`unknown launch option ${flag}`);
  }
  if (nproc === undefined) throw new UsageError('--nproc N is required');
  const masterPort = port ?? await freePort();
  const perProc = threads ?? Math.max(1, Math.floor((await import('node:os')).availableParallelism() / nproc));
  const [program, ...programArgs] = CROSSMAX_COMMANDS.has(command[0]!)
    ? [process.execPath, fileURLToPath(new URL('../../../bin/crossmax.js', import.meta.url)), ...command]
    : command;

  const children: ChildProcess[] = [];
  let failure: { rank: number; why: string } | null = null;
  const stopAll = (signal: NodeJS.Signals) => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal); };
  const forward = (signal: NodeJS.Signals) => stopAll(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  try {
    const exits = [...Array(nproc).keys()].map((rank) => new Promise<void>((resolve) => {
      const child = spawn(program!, programArgs, {
        stdio: 'inherit',
        env: {
          ...process.env, RANK: String(rank), WORLD_SIZE: String(nproc), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(nproc),
          MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(masterPort), CROSSMAX_NUM_THREADS: process.env.CROSSMAX_NUM_THREADS ?? String(perProc),
        },
      });
      children.push(child);
      child.on('error', (err) => {
        failure ??= { rank, why: `could not start ${program}: ${err.message}` };
        resolve();
      });
      child.on('exit', (code, signal) => {
        if ((code !== 0 || signal) && failure === null) {
          failure = { rank, why: signal ? `killed by ${signal}` : `exit code ${code}` };
          // The others would notice within their timeout; a launch stops them now (as torchrun does).
          setTimeout(() => stopAll('SIGTERM'), 10_000).unref();
        }
        resolve();
      });
    }));
    await Promise.all(exits);
  } finally {
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
  }
  const failed = failure as { rank: number; why: string } | null;
  if (failed) {
    process.stderr.write(`crossmax launch: rank ${failed.rank} of ${nproc} failed (${failed.why})\n`);
    return 1;
  }
  return 0;
}
