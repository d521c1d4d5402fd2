"""Small variants of the mobile spaces and generated 32x32 data: searches in seconds."""

from __future__ import annotations

from typing import Any

import torch

from nasflow import hub


def small_proxyless() -> hub.ProxylessNAS:
    return hub.ProxylessNAS(num_labels=10, width_mult=0.25, depth_range=(1, 2))


def small_mobilenetv3() -> hub.MobileNetV3Space:
    return hub.MobileNetV3Space(num_labels=10, width_multipliers=(0.25, 0.5),
                                depth_range=(1, 2),
                                base_widths=(8, 8, 16, 16, 24, 32, 40, 64, 96))


def image_data(n: int = 64, classes: int = 10, size: int = 32,
               seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                       tuple[torch.Tensor, torch.Tensor]]:
    """Random images whose class shifts their mean: learnable, generated, no download."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, 3, size, size, generator=g) * 0.5 + (y.float() / classes)[:, None,
                                                                                None, None]
    cut = n * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def params(model: torch.nn.Module, trial: Any) -> float:
    """A free evaluator: fewer parameters are better (multi-trial tests need no training)."""
    return -float(sum(p.numel() for p in model.parameters()))


def small_shufflenet() -> hub.ShuffleNetSpace:
    return hub.ShuffleNetSpace(num_labels=10, channel_search=True, stage_repeats=(1, 2, 1),
                               stage_out_channels=(8, 16, 32, 64, 128))


def small_autoformer() -> hub.AutoFormer:
    return hub.AutoFormer(img_size=32, patch_size=8, search_embed_dim=(16, 32),
                          search_num_heads=(1, 2), head_dim=8, search_depth=(1, 2),
                          num_classes=10)
