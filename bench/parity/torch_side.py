"""PyTorch half of bench/parity: a worker that answers the crossmax benchmark's requests on stdin (JSON lines).

The model comes from the weights' metadata: kind "resnet" (a CIFAR ResNet) or "self-ensemble" (the recipe's
multi-resolution self-ensemble: prior, ResNet, pooled heads, CrossMax; trained on the mean of member losses).

Requests: {"cmd": "load", "weights": path, "batch": path, "threads": n, "device": "cpu" | "cuda" | "cuda:N"}
          {"cmd": "check", "out": path}      -> loss, gradients of every parameter and of the input, saved to `out`
          {"cmd": "time", "mode": "train"|"input_grad"|"inference"|"generate", "steps": k}  -> seconds per step
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from crossmax_ref import safetensors_lite  # noqa: E402
from crossmax_ref.models import SelfEnsemble, cifar_resnet, member_loss  # noqa: E402

state = {}


def synchronize():
    """Waits for queued GPU work, so that a timing covers the work itself, not only its launch."""
    if state["device"].type == "cuda":
        torch.cuda.synchronize(state["device"])


def load(req):
    torch.set_num_threads(req["threads"])
    device = torch.device(req.get("device", "cpu"))
    weights, meta = safetensors_lite.load(req["weights"])
    batch, _ = safetensors_lite.load(req["batch"])
    depth, width, classes = int(meta.get("depth", 18)), float(meta.get("width", 1)), int(meta["num_classes"])
    if meta.get("kind", "resnet") == "self-ensemble":
        model = SelfEnsemble(depth, width, meta["features"].split(","), classes, k=int(meta["k"]))
        smoothing = float(meta.get("label_smoothing", 0))
        train_loss = lambda m, x, y: member_loss(m.member_logits(x), y, smoothing)  # noqa: E731
    else:
        model = cifar_resnet(depth, int(meta["in_channels"]), classes, width)
        train_loss = lambda m, x, y: F.cross_entropy(m(x), y)  # noqa: E731
    model.load_state_dict(weights, strict=True)
    model.to(device)
    state.update(model=model, x=batch["images"].to(device), y=batch["labels"].to(device), train_loss=train_loss, device=device,
                 opt=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4,
                                     nesterov=meta.get("nesterov") == "true"))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"ok": True, "threads": torch.get_num_threads(), "version": torch.__version__, "gpu": gpu}


def check(req):
    """Train-mode loss and gradients; a self-ensemble's prior is deterministic here (no draws), as on crossmax's side."""
    model, x, y = state["model"], state["x"].clone().requires_grad_(True), state["y"]
    model.train()
    model.zero_grad(set_to_none=True)
    if isinstance(model, SelfEnsemble):
        model.deterministic_prior = True
    try:
        loss = state["train_loss"](model, x, y)
        loss.backward()
    finally:
        if isinstance(model, SelfEnsemble):
            model.deterministic_prior = False
    out = {"loss": loss.detach().reshape(1), "input_grad": x.grad}
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad
    safetensors_lite.save(req["out"], out)
    return {"ok": True, "loss": loss.item()}


def step(mode):
    model, x, y, opt = state["model"], state["x"], state["y"], state["opt"]
    if mode == "train":
        model.train()
        opt.zero_grad(set_to_none=True)
        state["train_loss"](model, x, y).backward()
        opt.step()
    elif mode == "input_grad":
        # One step of an L-inf gradient attack: the core of PGD/APGD.
        model.eval()
        xa = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        (g,) = torch.autograd.grad(loss, [xa])
        with torch.no_grad():
            (xa + (2 / 255) * g.sign()).clamp_(0, 1)
    elif mode == "generate":
        generation_step(model)
    elif mode == "inference":
        model.eval()
        with torch.inference_mode():
            model(x)
    else:
        raise ValueError(mode)


# crossmax generate's loop, as bench/parity/parity.ts's GENERATION: 8 images on a 48-pixel canvas, one tensor per
# side length 1..48 (nearest for 1, bicubic otherwise) summed and squashed by tanh; per step 16 views of each
# (a random roll of -8..8 px per axis, the central 32x32 crop, + 0.2*U[0,1) noise, clipped), the CrossMax logit
# of class 3 maximised (mean over copies), the gradient taken on the detached image then pushed through the
# parametrisation once, plain SGD lr 0.4.
GEN = {"images": 8, "copies": 16, "canvas": 48, "jitter": 8, "crop": 32, "lr": 0.4, "class": 3}


def generation_step(model):
    if "gen" not in state:
        params = [torch.zeros(GEN["images"], 3, r, r, device=state["device"], requires_grad=True)
                  for r in range(1, GEN["canvas"] + 1)]
        state["gen"] = (params, torch.optim.SGD(params, lr=GEN["lr"]))
    params, opt = state["gen"]
    model.eval()
    size, j, c = GEN["canvas"], GEN["jitter"], GEN["crop"]
    raw = None
    for p in params:
        r = p.shape[-1]
        if r == size:
            up = p
        elif r == 1:
            up = F.interpolate(p, size=(size, size), mode="nearest")
        else:
            up = F.interpolate(p, size=(size, size), mode="bicubic", align_corners=False)
        raw = up if raw is None else raw + up
    image = (torch.tanh(raw) + 1) / 2
    leaf = image.detach().requires_grad_(True)
    shifts = torch.randint(-j, j + 1, (GEN["copies"], 2)).tolist()
    offset = (size - c) // 2
    views = torch.cat([leaf.roll((sy, sx), (2, 3))[:, :, offset:offset + c, offset:offset + c] for sy, sx in shifts], 0)
    views = (views + torch.rand_like(views) * 0.2).clamp(0, 1)
    score = model(views)[:, GEN["class"]]
    score.mean().item()
    loss = score.sum() * (-1.0 / GEN["copies"])
    loss.item()
    (g,) = torch.autograd.grad(loss, [leaf])
    grads = torch.autograd.grad(image, params, grad_outputs=g)
    opt.zero_grad(set_to_none=True)
    for p, gp in zip(params, grads):
        p.grad = gp
    opt.step()


def timed(req):
    for _ in range(req.get("warmup", 1)):
        step(req["mode"])
    synchronize()
    start = time.perf_counter()
    for _ in range(req["steps"]):
        step(req["mode"])
    synchronize()
    return {"ok": True, "seconds_per_step": (time.perf_counter() - start) / req["steps"]}


HANDLERS = {"load": load, "check": check, "time": timed}

for line in sys.stdin:
    req = json.loads(line)
    try:
        reply = HANDLERS[req["cmd"]](req)
    except Exception as e:  # reported to the benchmark, which stops with the message
        reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(reply), flush=True)
