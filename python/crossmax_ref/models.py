"""The reference models crossmax's parity checks compare with, built from torchvision and plain PyTorch."""
import torch
import torch.nn.functional as F
import torchvision


def cifar_resnet(depth=18, in_channels=12, num_classes=10, width=1.0):
    """torchvision's ResNet with the CIFAR stem crossmax uses (3x3 stride-1 conv, no max-pool), every width scaled
    by `width` as crossmax's widthMultiplier does (max(1, round(64 * width)) ...); torchvision's parameter names."""
    model = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
    widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
    model.conv1 = torch.nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = torch.nn.Identity()
    if width != 1.0:
        block = type(model.layer1[0])
        model.bn1 = torch.nn.BatchNorm2d(widths[0])
        model.inplanes = widths[0]
        for i, w in enumerate(widths):
            name = f"layer{i + 1}"
            setattr(model, name, model._make_layer(block, w, len(getattr(model, name)), stride=1 if i == 0 else 2))
        model.fc = torch.nn.Linear(widths[3] * block.expansion, num_classes)
    return model


def roll_per_image(images, row_shift, col_shift):
    """torch.roll with one (rows, columns) shift per image, as one gather (what crossmax's prior does)."""
    n, c, h, w = images.shape
    rows = (torch.arange(h, device=images.device).view(1, h, 1) - row_shift.view(n, 1, 1)).remainder(h)
    cols = (torch.arange(w, device=images.device).view(1, 1, w) - col_shift.view(n, 1, 1)).remainder(w)
    index = (rows * w + cols).view(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)


def paper_prior(images, resolutions=(32, 16, 8, 4), deterministic=False):
    """The official notebook's multi-resolution prior, batched (one draw per image and view): contrast change,
    circular shift in -3..3, blend toward grey (the same factor, the notebook's quirk, from linspace(0.5, 1, 100)),
    bicubic down, + 0.2 U[0,1), bicubic up, + 0.2 U[0,1), clip. Deterministic: no draws (factors 1, no shift or noise)."""
    n, c, h, w = images.shape
    views = []
    for r in resolutions:
        x = images
        if not deterministic:
            f = (torch.randint(0, 100, (n,), device=x.device).double() * (0.5 / 99) + 0.5).float().view(n, 1, 1, 1)
            grey = (0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).mean((1, 2, 3), keepdim=True)
            x = (x * f + grey * (1 - f)).clamp(0, 1)
            x = roll_per_image(x, torch.randint(-3, 4, (n,), device=x.device), torch.randint(-3, 4, (n,), device=x.device))
            x = x * f + x.mean(1, keepdim=True) * (1 - f)
        x = F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False)
        if not deterministic:
            x = x + 0.2 * torch.rand_like(x)
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        if not deterministic:
            x = x + 0.2 * torch.rand_like(x)
        views.append(x.clamp(0, 1))
    return torch.cat(views, 1)


class PooledHead(torch.nn.Module):
    """crossmax's 'pooled' ClassifierHead: adaptive average pool to pool x pool, flatten, BatchNorm1d, Linear."""

    def __init__(self, channels, num_classes, pool=2):
        super().__init__()
        self.pool = pool
        self.bn = torch.nn.BatchNorm1d(channels * pool * pool)
        self.linear = torch.nn.Linear(channels * pool * pool, num_classes)

    def forward(self, x):
        return self.linear(self.bn(F.adaptive_avg_pool2d(x, self.pool).flatten(1)))


class SelfEnsemble(torch.nn.Module):
    """A multi-resolution self-ensemble with crossmax's parameter names: the prior, a CIFAR ResNet (`backbone.*`),
    pooled heads on named blocks (`heads.i.*`) plus the backbone's fc as the last member, CrossMax with k."""

    def __init__(self, depth, width, features, num_classes, views=4, pool=2, k=3):
        super().__init__()
        self.backbone = cifar_resnet(depth, 3 * views, num_classes, width)
        self.features = list(features)
        self.k = k
        self.deterministic_prior = False
        blocks = dict(self.backbone.named_modules())
        # A block's output channels: its last BatchNorm's (bn2 in a BasicBlock, bn3 in a Bottleneck).
        channels = [getattr(blocks[f], "bn3", blocks[f].bn2).num_features for f in self.features]
        self.heads = torch.nn.ModuleList([PooledHead(ch, num_classes, pool) for ch in channels])

    def member_logits(self, images):
        b = self.backbone
        x = paper_prior(images, deterministic=self.deterministic_prior)
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        taps = {}
        for s in range(1, 5):
            for i, block in enumerate(getattr(b, f"layer{s}")):
                x = block(x)
                taps[f"layer{s}.{i}"] = x
        logits = b.fc(torch.flatten(b.avgpool(x), 1))
        return torch.stack([h(taps[f]) for h, f in zip(self.heads, self.features)] + [logits], 1)

    def forward(self, images):
        """CrossMax (Algorithm 1): subtract each member's max, then each class's max, keep the k-th highest."""
        z = self.member_logits(images)
        z = z - z.max(2, keepdim=True).values
        z = z - z.max(1, keepdim=True).values
        return z.topk(self.k, dim=1).values[:, self.k - 1]


def member_loss(member_logits, labels, label_smoothing=0.0):
    """crossmax's self-ensemble loss: each member's cross-entropy averaged over the batch, then over members."""
    n, m, c = member_logits.shape
    return F.cross_entropy(member_logits.reshape(n * m, c), labels.repeat_interleave(m),
                           label_smoothing=label_smoothing, reduction="none").view(n, m).mean(0).mean()
