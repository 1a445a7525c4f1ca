// Where this process sits in a distributed launch, read from the variables the launchers set: torchrun and
// Kubernetes' PyTorchJob (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), else Slurm's srun
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the master address from MASTER_ADDR or SLURM_LAUNCH_NODE_IPADDR).

/** One process's place in a distributed launch. */
export interface World {
  /** This process's rank, 0 ≤ rank < worldSize. */
  rank: number;
  /** How many processes take part. */
  worldSize: number;
  /** The rank among the processes of this machine (picks the GPU: cuda:localRank). */
  localRank: number;
  /** The address of rank 0's rendezvous store. */
  masterAddr: string;
  /** The port of rank 0's rendezvous store. */
  masterPort: number;
  /** Which launcher's variables were read. */
  source: 'torchrun' | 'slurm';
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback?: number): number {
  const text = env[name];
  if (text === undefined || text === '') {
    if (fallback !== undefined) return fallback;
    throw new Error(`distributed launch: ${name} is not set (a launch sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)`);
  }
  if (!/^\d+$/.test(text.trim())) throw new Error(`distributed launch: ${name}=${JSON.stringify(text)} is not a non-negative integer`);
  return Number(text);
}

/**
 * The launch this process belongs to, or null when it was not launched distributed (no RANK/WORLD_SIZE and no
 * SLURM_PROCID/SLURM_NTASKS). A Slurm job step of one task is not distributed either (null). Inconsistent
 * variables (rank ≥ world size, a non-number) throw naming the variable.
 */
export function worldFromEnvironment(env: NodeJS.ProcessEnv = process.env): World | null {
  let world: World;
  if (env.RANK !== undefined || env.WORLD_SIZE !== undefined) {
    world = {
      rank: integer(env, 'RANK'),
      worldSize: integer(env, 'WORLD_SIZE'),
      localRank: integer(env, 'LOCAL_RANK', integer(env, 'RANK')),
      masterAddr: env.MASTER_ADDR || '127.0.0.1',
      masterPort: integer(env, 'MASTER_PORT', 29500),
      source: 'torchrun',
    };
  } else if (env.SLURM_PROCID !== undefined && env.SLURM_NTASKS !== undefined) {
    world = {
      rank: integer(env, 'SLURM_PROCID'),
      worldSize: integer(env, 'SLURM_NTASKS'),
      localRank: integer(env, 'SLURM_LOCALID', 0),
      masterAddr: env.MASTER_ADDR || env.SLURM_LAUNCH_NODE_IPADDR || '127.0.0.1',
      masterPort: integer(env, 'MASTER_PORT', 29500),
      source: 'slurm',
    };
    if (world.worldSize === 1) return null;
  } else {
    return null;
  }
  if (world.worldSize < 1) throw new Error(`distributed launch: world size ${world.worldSize} must be at least 1`);
  if (world.rank >= world.worldSize) {
    throw new Error(`distributed launch: rank ${world.rank} is not below the world size ${world.worldSize} (${world.source} variables)`);
  }
  if (world.masterPort < 1 || world.masterPort > 65535) throw new Error(`distributed launch: MASTER_PORT=${world.masterPort} is not a port`);
  return world;
}
