"""The reference models crossmax's parity checks compare with, built from torchvision."""
import torch
import torchvision


def cifar_resnet(depth=18, in_channels=12, num_classes=10):
    """torchvision's ResNet with the CIFAR stem crossmax uses: 3x3 stride-1 conv, no max-pool."""
    model = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
    model.conv1 = torch.nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = torch.nn.Identity()
    return model
