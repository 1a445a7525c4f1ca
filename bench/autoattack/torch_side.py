"""PyTorch half of bench/autoattack: AutoAttack 'rand' (APGD-CE then APGD-DLR with EOT) on a crossmax model rebuilt in
PyTorch, written by us from the published algorithm: F. Croce, M. Hein, "Reliable evaluation of adversarial robustness
with an ensemble of diverse parameter-free attacks", ICML 2020 (Algorithm 1, Section 3), following the reference
implementation's APGDAttack.attack_single_run / perturb and AutoAttack.run_standard_evaluation (fra31/auto-attack,
autopgd_base.py, autoattack.py) in everything that changes the result:
  - the runner: one clean pass marks the points robust; each attack runs, in batches, only on the points still robust,
    and one forward pass of its output decides which of them it fooled;
  - APGD: its own clean pass, attacks only the points it classifies correctly (1 restart); the start on the
    eps-sphere (uniform direction, L-inf); step size 2·eps; momentum 0.75 (none on the first step); checkpoints after
    max(int(0.22 N), 1) iterations, the gap shrinking by max(int(0.03 N), 1) down to max(int(0.06 N), 1); at a
    checkpoint, halve the step and restart from the best point when the loss rose in at most 0.75 of the steps since the
    last one, or when it was not halved last time and the best loss did not improve; EOT: the gradient is the mean over
    `eot` forward/backward passes, the logits and loss those of the last;
  - DLR as eq. (2) of the paper, with the 1e-12 in the denominator.

Run as `python3 torch_side.py REQUEST.json`; REQUEST names the weights (crossmax's state dict with metadata, as
bench/autoattack/autoattack.ts writes it), the images and labels, the budget, seed, thread count and output file. It
writes one JSON object: per attack the points it ran on, the points it fooled, its seconds; the robust flags; and the
logits of the deterministic prior (no draws) for the rebuild check.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from crossmax_ref import safetensors_lite  # noqa: E402
from crossmax_ref.models import SelfEnsemble  # noqa: E402


def dlr_loss(logits, y):
    """Difference of Logits Ratio, -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)."""
    z, order = logits.sort(dim=1)
    label_is_top = (order[:, -1] == y).float()
    u = torch.arange(logits.shape[0])
    return -(logits[u, y] - z[:, -2] * label_is_top - z[:, -1] * (1.0 - label_is_top)) / (z[:, -1] - z[:, -3] + 1e-12)


gradient_passes = [0]  # images through a forward + backward pass, over the whole run (a count machine load cannot skew)


def loss_and_gradient(model, x, y, criterion, eot, images_per_pass=1):
    """The input gradient of the summed per-example loss averaged over `eot` passes, with the last pass's loss and logits.

    images_per_pass 1 is the reference's loop, one forward/backward pass per draw. Larger (the request's
    eot_images_per_pass, bench --torch-eot-batched): crossmax's batched EOT, not the reference's algorithm: the draws
    as stacked replicas of the batch, floor(images_per_pass / n) per pass (the rebuilt prior draws per image).
    """
    gradient_passes[0] += eot * x.shape[0]
    n = x.shape[0]
    per_pass = max(1, min(eot, images_per_pass // max(n, 1)))
    x = x.detach().requires_grad_(True)
    grad = torch.zeros_like(x)
    done = 0
    while done < eot:
        k = min(per_pass, eot - done)
        with torch.enable_grad():
            logits = model(x.repeat(k, 1, 1, 1) if k > 1 else x)
            loss = criterion(logits, y.repeat(k) if k > 1 else y)
        grad += torch.autograd.grad(loss.sum(), [x])[0].detach()
        done += k
    return grad / eot, loss[-n:].detach(), logits[-n:].detach()


def apgd_single_run(model, x, y, eps, steps, eot, criterion, rho=0.75, images_per_pass=1):
    n = x.shape[0]
    first_gap, smallest_gap, decrease = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    t = 2 * torch.rand(x.shape) - 1
    x_adv = (x + eps * t / (t.abs().view(n, -1).max(1)[0].view(-1, 1, 1, 1) + 1e-12)).clamp(0.0, 1.0)
    x_best, x_best_adv = x_adv.clone(), x_adv.clone()
    loss_steps = torch.zeros(steps, n)
    grad, loss, logits = loss_and_gradient(model, x_adv, y, criterion, eot, images_per_pass)
    grad_best = grad.clone()
    acc = logits.argmax(1) == y
    loss_best = loss.clone()
    step_size = 2.0 * eps * torch.ones(n, 1, 1, 1)
    x_adv_old = x_adv.clone()
    gap, since_check = first_gap, 0
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones(n, dtype=torch.bool)
    for i in range(steps):
        with torch.no_grad():
            move = x_adv - x_adv_old
            x_adv_old = x_adv.clone()
            a = 0.75 if i > 0 else 1.0
            z = torch.min(torch.max(x_adv + step_size * grad.sign(), x - eps), x + eps).clamp(0.0, 1.0)
            x_adv = torch.min(torch.max(x_adv + (z - x_adv) * a + move * (1 - a), x - eps), x + eps).clamp(0.0, 1.0)
        grad, loss, logits = loss_and_gradient(model, x_adv, y, criterion, eot, images_per_pass)
        with torch.no_grad():
            correct = logits.argmax(1) == y
            acc = acc & correct
            x_best_adv[~correct] = x_adv[~correct]
            loss_steps[i] = loss
            improved = loss > loss_best
            x_best[improved] = x_adv[improved]
            grad_best[improved] = grad[improved]
            loss_best[improved] = loss[improved]
            since_check += 1
            if since_check == gap:
                # As the reference: the count at the first checkpoint reaches the buffer's last (still zero) row.
                increases = torch.zeros(n)
                for back in range(gap):
                    increases += (loss_steps[i - back] > loss_steps[i - back - 1]).float()
                reduce = (increases <= gap * rho) | (~reduced_last_check & (loss_best_last_check >= loss_best))
                reduced_last_check = reduce.clone()
                loss_best_last_check = loss_best.clone()
                if reduce.any():
                    step_size[reduce] /= 2.0
                    x_adv[reduce] = x_best[reduce]
                    grad[reduce] = grad_best[reduce]
                gap, since_check = max(gap - decrease, smallest_gap), 0
    return acc, x_best_adv


def apgd_perturb(model, x, y, eps, steps, eot, criterion, seed, images_per_pass=1):
    """APGDAttack.perturb with one restart: seeds, classifies, attacks the points it classifies correctly."""
    torch.manual_seed(seed)
    adv = x.clone()
    with torch.no_grad():
        acc = model(x).argmax(1) == y
    idx = acc.nonzero().flatten()
    if idx.numel() > 0:
        acc_run, adv_run = apgd_single_run(model, x[idx], y[idx], eps, steps, eot, criterion, images_per_pass=images_per_pass)
        fooled = ~acc_run
        adv[idx[fooled]] = adv_run[fooled]
    return adv


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    torch.set_num_threads(req["threads"])
    weights, meta = safetensors_lite.load(req["weights"])
    data, _ = safetensors_lite.load(req["images"])
    model = SelfEnsemble(18 if meta.get("depth") is None else int(meta["depth"]), float(meta["width"]),
                         meta["features"].split(","), int(meta["num_classes"]), k=int(meta["k"]))
    model.load_state_dict(weights, strict=True)
    # Parameters keep requires_grad, as a model handed to the reference does (crossmax's do too).
    model.eval()
    x, y = data["images"], data["labels"]
    eps, steps, eot, seed, batch = req["eps"], req["steps"], req["eot"], req["seed"], req["batch_size"]
    images_per_pass = req.get("eot_images_per_pass", 1)

    model.deterministic_prior = True
    with torch.no_grad():
        deterministic_logits = model(x)
    model.deterministic_prior = False

    torch.manual_seed(seed)
    with torch.no_grad():
        robust = torch.cat([model(x[i:i + batch]).argmax(1) == y[i:i + batch] for i in range(0, len(x), batch)])
    attacks = []
    gradient_passes[0] = 0
    for name, criterion in (("apgd-ce", lambda z, t: F.cross_entropy(z, t, reduction="none")), ("apgd-dlr", dlr_loss)):
        started = time.perf_counter()
        pool = robust.nonzero().flatten()
        fooled = 0
        for b in range(0, pool.numel(), batch):
            idx = pool[b:b + batch]
            adv = apgd_perturb(model, x[idx], y[idx], eps, steps, eot, criterion, seed, images_per_pass)
            with torch.no_grad():
                wrong = model(adv).argmax(1) != y[idx]
            robust[idx[wrong]] = False
            fooled += int(wrong.sum())
        attacks.append({"name": name, "attacked": int(pool.numel()), "fooled": fooled, "seconds": time.perf_counter() - started})
    safetensors_lite.save(req["out_logits"], {"logits": deterministic_logits})
    out = {"attacks": attacks, "robust": robust.tolist(), "gradient_passes": gradient_passes[0], "threads": torch.get_num_threads(), "version": torch.__version__}
    with open(req["out"], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
