"""VeRA for convolutions: shared frozen random projections, trained scaling vectors, exact merge.

peft's VeRA adapts ``nn.Linear`` only. A convolution's kernel ``W`` (out x in/groups x kh x kw) is
a matrix of shape (out, fan_in) with ``fan_in = in/groups * kh * kw``; VeRA's update of that matrix is

    ΔW = diag(b) · B · diag(d) · A        (then reshaped to the kernel's shape)

where ``A`` (r x fan_in) and ``B`` (out x r) are slices of two random matrices shared by every
adapted convolution and never trained, and only ``d`` (r, starts at ``d_initial``) and ``b``
(out, starts at zero, so ΔW = 0 at the start) train: r + out parameters per layer, where LoRA
trains r · (fan_in + out). The kernel size sits in ``fan_in``, which only the frozen ``A`` carries.

The forward runs one convolution with ``W + ΔW``: ΔW costs out · r · fan_in multiply-adds per
step, independent of the batch and the image size, and the same code covers grouped
(depthwise) kernels, since ΔW has the kernel's own shape. Merging writes ``W + ΔW``, computed the
same way, into a plain ``nn.Conv2d``, so merged and unmerged outputs agree to the last bit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from facesdk.errors import ConfigError

__all__ = [
    "VeraProjections",
    "ConvVeraLayer",
    "apply_conv_vera",
    "conv_vera_layers",
    "merge_conv_adapters",
]


class VeraProjections(nn.Module):
    """The shared frozen projections: ``vera_A`` (r x max fan_in) and ``vera_B`` (max out x r).

    One instance is a child of every :class:`ConvVeraLayer` of a model (the same object), so
    the matrices exist once in memory; a checkpoint stores them once as well (safetensors drops
    the duplicate names of shared tensors, and the loader rebuilds the same sharing).
    Both are drawn from ``seed`` with a Kaiming-uniform bound, like peft's VeRA.
    """

    def __init__(self, rank: int, max_fan_in: int, max_out: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        a_bound = 1.0 / math.sqrt(max_fan_in)
        b_bound = 1.0 / math.sqrt(rank)
        a = (torch.rand(rank, max_fan_in, generator=gen) * 2 - 1) * a_bound
        b = (torch.rand(max_out, rank, generator=gen) * 2 - 1) * b_bound
        self.register_buffer("vera_A", a)
        self.register_buffer("vera_B", b)

    @property
    def rank(self) -> int:
        return int(self.vera_A.shape[0])


class ConvVeraLayer(nn.Module):
    """A frozen ``nn.Conv2d`` plus a VeRA update of its kernel.

    Attributes:
        base_layer: The original convolution (frozen).
        vera_projections: The model-wide shared :class:`VeraProjections`.
        vera_lambda_d: Trained scaling of the rank dimension (r).
        vera_lambda_b: Trained scaling of the output channels (out).
    """

    def __init__(self, base_layer: nn.Conv2d, projections: VeraProjections, d_initial: float) -> None:
        super().__init__()
        if type(base_layer) is not nn.Conv2d:
            raise ConfigError(f"conv VeRA adapts plain nn.Conv2d layers, got {type(base_layer).__name__}")
        fan_in = base_layer.weight[0].numel()
        if fan_in > projections.vera_A.shape[1] or base_layer.out_channels > projections.vera_B.shape[0]:
            raise ConfigError(
                f"the shared VeRA projections ({tuple(projections.vera_A.shape)}, "
                f"{tuple(projections.vera_B.shape)}) are too small for a {tuple(base_layer.weight.shape)} kernel"
            )
        self.base_layer = base_layer
        self.vera_projections = projections
        param = base_layer.weight
        self.vera_lambda_d = nn.Parameter(
            torch.full((projections.rank,), float(d_initial), dtype=param.dtype)
        )
        self.vera_lambda_b = nn.Parameter(torch.zeros(base_layer.out_channels, dtype=param.dtype))
        base_layer.requires_grad_(False)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = diag(b) · B · diag(d) · A, in the kernel's shape."""
        weight = self.base_layer.weight
        out, fan_in = weight.shape[0], weight[0].numel()
        a = self.vera_projections.vera_A[:, :fan_in].to(weight.dtype)
        b = self.vera_projections.vera_B[:out, :].to(weight.dtype)
        delta = (self.vera_lambda_b[:, None] * b) @ (self.vera_lambda_d[:, None] * a)
        return delta.reshape(weight.shape)

    def merged_weight(self) -> torch.Tensor:
        """``W + ΔW``: the kernel the forward uses and the merge writes."""
        return self.base_layer.weight + self.delta_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer._conv_forward(x, self.merged_weight(), self.base_layer.bias)

    def merge(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the update folded into its kernel (this layer is unchanged)."""
        base = self.base_layer
        conv = nn.Conv2d(
            base.in_channels, base.out_channels, base.kernel_size, stride=base.stride, padding=base.padding,
            dilation=base.dilation, groups=base.groups, bias=base.bias is not None,
            padding_mode=base.padding_mode, device=base.weight.device, dtype=base.weight.dtype,
        )  # fmt: skip
        with torch.no_grad():
            conv.weight.copy_(self.merged_weight())
            if base.bias is not None:
                conv.bias.copy_(base.bias)
        conv.requires_grad_(False)
        return conv

    def extra_repr(self) -> str:
        return f"rank={self.vera_projections.rank}, out={self.base_layer.out_channels}"


def apply_conv_vera(
    backbone: nn.Module, names: list[str], rank: int, d_initial: float, seed: int
) -> list[ConvVeraLayer]:
    """Replace the convolutions at ``names`` by :class:`ConvVeraLayer` sharing one projection pair.

    The projections are sized for the largest fan-in and output count among ``names``.
    """
    convs = {name: backbone.get_submodule(name) for name in names}
    if not convs:
        return []
    max_fan_in = max(conv.weight[0].numel() for conv in convs.values())
    max_out = max(conv.out_channels for conv in convs.values())
    device = next(iter(convs.values())).weight.device
    projections = VeraProjections(int(rank), max_fan_in, max_out, int(seed)).to(device)
    layers = []
    for name, conv in convs.items():
        layer = ConvVeraLayer(conv, projections, d_initial)
        parent, _, child = name.rpartition(".")
        setattr(backbone.get_submodule(parent) if parent else backbone, child, layer)
        layers.append(layer)
    return layers


def conv_vera_layers(module: nn.Module) -> list[str]:
    """Paths of every :class:`ConvVeraLayer` below ``module``."""
    return [name for name, child in module.named_modules() if isinstance(child, ConvVeraLayer)]


def merge_conv_adapters(module: nn.Module) -> int:
    """Replace every :class:`ConvVeraLayer` below ``module`` by its merged ``nn.Conv2d``, in place.

    Returns:
        How many layers were merged.
    """
    names = conv_vera_layers(module)
    for name in names:
        layer = module.get_submodule(name)
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, child, layer.merge())
    return len(names)
