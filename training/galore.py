"""GaLore: AdamW whose moments live in a low-rank projection of each weight matrix's gradient.

Every ``update_proj_gap`` steps the projection is renewed from the top ``rank`` singular
vectors of the current gradient; Adam runs on the projected gradient and the update is
projected back and scaled by ``scale``. Parameters of a group without ``galore`` options,
and every parameter that is not a matrix, get plain AdamW. Conv kernels (4-D) are reshaped
to (out_channels, in_channels·k·k) matrices, which GaLore needs; that reshaping loses the
kernel's spatial structure in the projection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["GaLoreAdamW"]


class GaLoreAdamW(torch.optim.Optimizer):
    """AdamW with optional GaLore gradient projection per parameter group.

    A group opts in with ``galore={"rank": r, "update_proj_gap": T, "scale": s}``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "galore": None}
        super().__init__(params, defaults)

    @staticmethod
    def _project(
        grad: torch.Tensor, state: dict[str, Any], options: dict[str, Any], step: int
    ) -> torch.Tensor:
        matrix = grad.reshape(grad.shape[0], -1).float()
        rank = min(int(options["rank"]), *matrix.shape)
        if "projection" not in state or step % int(options["update_proj_gap"]) == 1:
            u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
            state["right"] = matrix.shape[0] >= matrix.shape[1]
            state["projection"] = vh[:rank].T.contiguous() if state["right"] else u[:, :rank].contiguous()
        p = state["projection"]
        return matrix @ p if state["right"] else p.T @ matrix

    @staticmethod
    def _project_back(update: torch.Tensor, state: dict[str, Any], shape: torch.Size) -> torch.Tensor:
        p = state["projection"]
        full = update @ p.T if state["right"] else p @ update
        return full.reshape(shape)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            options = group.get("galore")
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                state["step"] = step = int(state.get("step", 0)) + 1
                grad = param.grad
                low_rank = options is not None and param.ndim >= 2
                if low_rank:
                    grad = self._project(grad, state, options, step)
                if "exp_avg" not in state or state["exp_avg"].shape != grad.shape:
                    state["exp_avg"] = torch.zeros_like(grad)
                    state["exp_avg_sq"] = torch.zeros_like(grad)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias1, bias2 = 1 - beta1**step, 1 - beta2**step
                update = (exp_avg / bias1) / ((exp_avg_sq / bias2).sqrt() + group["eps"])
                if low_rank:
                    update = self._project_back(update, state, param.shape) * float(options["scale"])
                if group["weight_decay"]:
                    param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(update.to(param.dtype), alpha=-group["lr"])
        return loss

    def low_rank_state_numel(self) -> int:
        """Elements held in optimizer moments (to compare memory with plain AdamW)."""
        return sum(
            s["exp_avg"].numel() + s["exp_avg_sq"].numel() for s in self.state.values() if "exp_avg" in s
        ) + sum(s["projection"].numel() for s in self.state.values() if "projection" in s)
