"""bench/scaling, PyTorch's side: the same measurements with torch.distributed (Gloo) and DistributedDataParallel.

Ranks are started by bench/scaling/run with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): Debian's
`python3 -m torch.distributed.run` fails on Python 3.11, so the launch is done by hand as torchrun would.
  allreduce --shapes FILE --steps S     ms per step of all-reducing gradients of those shapes in 25 MB buckets
  train --batch B --steps S             DDP SGD steps of a CIFAR ResNet-18 (torchvision layout, 3x3 stem, no max-pool)
"""
import argparse, json, os, time
import torch
import torch.distributed as dist
import torch.nn as nn
import torchvision

p = argparse.ArgumentParser()
p.add_argument('mode', choices=['allreduce', 'train'])
p.add_argument('--shapes')
p.add_argument('--steps', type=int, default=20)
p.add_argument('--batch', type=int, default=128)
p.add_argument('--warmup', type=int, default=2)
a = p.parse_args()
torch.set_num_threads(int(os.environ.get('CROSSMAX_NUM_THREADS', '1')))
distributed = 'RANK' in os.environ
if distributed:
    dist.init_process_group('gloo')
rank = dist.get_rank() if distributed else 0
world = dist.get_world_size() if distributed else 1

if a.mode == 'allreduce':
    grads = [torch.ones(s) for s in json.load(open(a.shapes))]
    cap = 25 * 1024 * 1024
    buckets, cur, size = [], [], 0
    for g in grads:
        if cur and size + g.numel() * 4 > cap:
            buckets.append(cur); cur, size = [], 0
        cur.append(g); size += g.numel() * 4
    if cur: buckets.append(cur)
    def step():
        flats = [torch.cat([g.reshape(-1) for g in b]) for b in buckets]
        works = [dist.all_reduce(f, async_op=True) for f in flats]
        for f, w, b in zip(flats, works, buckets):
            w.wait(); f.div_(world)
            off = 0
            for g in b:
                g.copy_(f[off:off + g.numel()].view_as(g)); off += g.numel()
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            dist.barrier(); t0 = time.perf_counter()
        step()
    ms = (time.perf_counter() - t0) * 1000 / a.steps
    if rank == 0:
        print(json.dumps({'side': 'pytorch', 'mode': 'allreduce', 'parameters': sum(g.numel() for g in grads), 'worldSize': world, 'msPerStep': ms}))
else:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    if distributed:
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(a.batch, 3, 32, 32); y = torch.randint(0, 10, (a.batch,))
    per = a.batch // world
    xs, ys = x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]
    model.train()
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            if distributed: dist.barrier()
            t0 = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(model(xs), ys).backward()
        opt.step()
    sec = time.perf_counter() - t0
    if rank == 0:
        print(json.dumps({'side': 'pytorch', 'mode': 'train', 'model': 'resnet18', 'worldSize': world, 'threads': torch.get_num_threads(),
                          'batch': a.batch, 'imagesPerSecond': a.steps * a.batch / sec}))
if distributed:
    dist.destroy_process_group()
