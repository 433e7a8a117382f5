"""The training config: YAML → frozen dataclasses, checked before any work starts.

Every section rejects unknown keys and every value is checked with a message that says what
to change. ``--set key=value`` overrides are applied to the YAML tree first (values are
parsed as YAML), so ``--set optim.lr=3e-4`` and ``--set method.rank=32`` work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
from facesdk.errors import ConfigError
from facesdk.tasks import DEFAULT_TASKS, TaskSpec

from .methods import get_method
from .sampler import SAMPLER_KINDS
from .synthetic import SynthOptions

__all__ = [
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "RuntimeConfig",
    "TrainConfig",
    "load_config",
    "apply_overrides",
    "config_from_mapping",
]

_TASKS = {t.name: t for t in DEFAULT_TASKS}


def _section(cls: type, data: Any, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}: {data!r}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'{where}.{k}' for k in unknown]}; {where} takes {known}")
    return dict(data)


def _coerce(obj: Any, where: str) -> None:
    """Turn YAML strings such as ``3e-4`` into the int/float/bool a field declares, or refuse."""
    for f in fields(obj):
        kind = str(f.type).replace(" | None", "")
        value = getattr(obj, f.name)
        if value is None or kind not in ("int", "float", "bool"):
            continue
        if kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{f.name} must be true or false, got {value!r}")
            continue
        try:
            number = float(value) if kind == "float" else int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.{f.name} must be a number ({kind}), got {value!r}") from None
        if kind == "int" and float(value) != number:
            raise ConfigError(f"{where}.{f.name} must be a whole number, got {value!r}")
        object.__setattr__(obj, f.name, number)


@dataclass(frozen=True)
class ModelConfig:
    """Backbone, tasks and heads.

    Attributes:
        backbone: timm model name (checked with ``timm.is_model``).
        weights: ``random``, ``hub`` or ``file:PATH``.
        kwargs: Extra ``timm.create_model`` arguments (``img_size``, ``depth`` ...).
        tasks: Task names, a subset of ``age``, ``gender``, ``emotion``.
        head: Head of every task: ``{kind: linear|mlp, hidden, dropout}``.
        heads_init: ``random`` (PyTorch's default) or ``zeroshot``: heads start from the text
            embeddings compiled into ``zeroshot_checkpoint`` (see ``docs/zeroshot.md``).
        zeroshot_checkpoint: A checkpoint directory written by ``facesdk zeroshot build``.
        zeroshot_feature_norm: Divides the zero-shot heads (sets the starting softmax
            temperature): a number > 0, or ``auto`` for the mean norm of the CLIP image
            embedding on a few training crops.
    """

    backbone: str = "vit_pe_core_tiny_patch16_384"
    weights: str = "hub"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = tuple(_TASKS)
    head: Mapping[str, Any] = field(default_factory=dict)
    heads_init: str = "random"
    zeroshot_checkpoint: str | None = None
    zeroshot_feature_norm: float | str = "auto"

    def __post_init__(self) -> None:
        import timm

        if not timm.is_model(self.backbone):
            close = timm.list_models(f"*{self.backbone.split('_')[0]}*")[:6]
            raise ConfigError(
                f"model.backbone {self.backbone!r} is not a timm model; similar: {close or 'none'}"
            )
        object.__setattr__(self, "tasks", tuple(self.tasks))
        unknown = [t for t in self.tasks if t not in _TASKS]
        if unknown or not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(
                f"model.tasks must list distinct tasks of {list(_TASKS)}, got {list(self.tasks)}"
            )
        self.backbone_spec()
        self.head_spec()
        self._check_heads_init()

    def _check_heads_init(self) -> None:
        from .zeroshot.heads_init import HEADS_INITS, check_zeroshot_source

        if self.heads_init not in HEADS_INITS:
            raise ConfigError(f"model.heads_init must be one of {HEADS_INITS}, got {self.heads_init!r}")
        norm = self.zeroshot_feature_norm
        if norm != "auto":
            try:
                number = float(norm) if not isinstance(norm, bool) else float("nan")
            except (TypeError, ValueError):
                number = float("nan")
            if not number > 0:
                raise ConfigError(f"model.zeroshot_feature_norm must be auto or a number > 0, got {norm!r}")
            object.__setattr__(self, "zeroshot_feature_norm", number)
        if self.heads_init != "zeroshot":
            if self.zeroshot_checkpoint is not None or norm != "auto":
                raise ConfigError(
                    "model.zeroshot_checkpoint / zeroshot_feature_norm are set but model.heads_init is "
                    f"{self.heads_init!r}; set model.heads_init: zeroshot or remove them"
                )
            return
        if not self.zeroshot_checkpoint:
            raise ConfigError(
                "model.heads_init: zeroshot needs model.zeroshot_checkpoint: DIR, a checkpoint written by "
                "'facesdk zeroshot build --out DIR'"
            )
        object.__setattr__(self, "zeroshot_checkpoint", str(self.zeroshot_checkpoint))
        check_zeroshot_source(
            self.zeroshot_checkpoint, self.backbone_spec(), self.task_specs(), self.head_spec()
        )

    def backbone_spec(self) -> BackboneSpec:
        return BackboneSpec(self.backbone, self.weights, dict(self.kwargs))

    def head_spec(self) -> HeadSpec:
        return HeadSpec.from_json(dict(self.head)) if self.head else HeadSpec()

    def task_specs(self) -> tuple[TaskSpec, ...]:
        return tuple(_TASKS[t] for t in self.tasks)


@dataclass(frozen=True)
class DataConfig:
    """Manifests (or a synthetic set), sampler and augmentation.

    Attributes:
        train: A manifest path, or a list of ``{manifest, weight}`` (see ``datasets.mixing``).
        val: The validation manifest.
        synthetic: ``{count, missing, seed, size}``: generate a set under ``OUT/data`` when
            ``train`` and ``val`` are not given.
        sampler: ``uniform`` (each row once an epoch) or ``balanced`` (task-balanced draws).
        task_shares: Balanced sampler: share of draws per task (default equal).
        samples_per_epoch: Balanced sampler: draws per epoch (default: the train rows).
        hflip: Random horizontal flips of training images.
        num_workers: DataLoader worker processes.
    """

    train: Any = None
    val: str | None = None
    synthetic: Mapping[str, Any] | None = None
    sampler: str = "balanced"
    task_shares: Mapping[str, float] = field(default_factory=dict)
    samples_per_epoch: int | None = None
    hflip: bool = True
    num_workers: int = 0

    def __post_init__(self) -> None:
        _coerce(self, "data")
        if self.sampler not in SAMPLER_KINDS:
            raise ConfigError(f"data.sampler must be one of {SAMPLER_KINDS}, got {self.sampler!r}")
        if self.synthetic is not None:
            self.synth_options()
        elif self.train is None or self.val is None:
            raise ConfigError("set data.train and data.val to manifests, or data.synthetic: {count: 2000}")
        if int(self.num_workers) < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")

    def synth_options(self) -> SynthOptions:
        return SynthOptions(**_section(SynthOptions, self.synthetic, "data.synthetic"))

    def manifests(self) -> list[str]:
        """Every manifest path the config names (train mix and validation)."""
        from .datasets.mixing import sources_from_config

        if self.synthetic is not None and self.train is None:
            return []
        return [str(s.manifest) for s in sources_from_config(self.train)] + [str(self.val)]


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, warmup + cosine schedule, accumulation, loss options."""

    epochs: int = 10
    batch_size: int = 64
    accumulate: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    class_weights: Mapping[str, Any] = field(default_factory=dict)
    task_weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _coerce(self, "optim")
        for name in ("epochs", "batch_size", "accumulate"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"optim.{name} must be > 0, got {getattr(self, name)}")
        if float(self.lr) <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if int(self.warmup_steps) < 0 or not 0 <= float(self.min_lr_ratio) <= 1:
            raise ConfigError("optim.warmup_steps must be >= 0 and optim.min_lr_ratio within [0, 1]")
        for task, value in self.class_weights.items():
            if task not in _TASKS:
                raise ConfigError(f"optim.class_weights names unknown task {task!r}")
            if value != "balanced" and not isinstance(value, (list, tuple)):
                raise ConfigError(f"optim.class_weights.{task} must be 'balanced' or a list, got {value!r}")


@dataclass(frozen=True)
class RuntimeConfig:
    """Device, precision, determinism and resume settings.

    Attributes:
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``fp32`` or ``bf16`` (autocast, CUDA only; fp32 on CPU with a warning).
        grad_checkpointing: Recompute block activations in backward (less memory, more time).
        deterministic: ``torch.use_deterministic_algorithms`` (warn-only on CUDA).
        save_every: Save the resume state every this many optimizer steps (and at each epoch end).
        threads: ``torch.set_num_threads`` (default: leave as is).
        distributed: Under torchrun: ``ddp`` (DistributedDataParallel, a full model per
            process). ``fsdp`` is reserved and refused for now (see ``docs/distributed.md``).
        dist_backend: ``auto`` (NCCL on CUDA, gloo on CPU), ``nccl`` or ``gloo``.
    """

    device: str = "auto"
    precision: str = "fp32"
    grad_checkpointing: bool = False
    deterministic: bool = True
    save_every: int = 200
    threads: int | None = None
    distributed: str = "ddp"
    dist_backend: str = "auto"

    def __post_init__(self) -> None:
        _coerce(self, "runtime")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"runtime.device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"runtime.precision must be fp32 or bf16, got {self.precision!r}")
        if int(self.save_every) <= 0:
            raise ConfigError(f"runtime.save_every must be > 0 steps, got {self.save_every}")
        if self.distributed == "fsdp":
            raise ConfigError(
                "runtime.distributed: fsdp is not implemented yet (sharded checkpoints and resume "
                "state are missing); use ddp, with runtime.grad_checkpointing: true and a LoRA/DoRA "
                "method for large backbones (docs/distributed.md)"
            )
        if self.distributed != "ddp":
            raise ConfigError(f"runtime.distributed must be ddp, got {self.distributed!r}")
        if self.dist_backend not in ("auto", "nccl", "gloo"):
            raise ConfigError(f"runtime.dist_backend must be auto, nccl or gloo, got {self.dist_backend!r}")
        if self.dist_backend == "nccl" and self.device == "cpu":
            raise ConfigError(
                "runtime.dist_backend nccl needs CUDA but runtime.device is cpu; use gloo or auto"
            )


@dataclass(frozen=True)
class TrainConfig:
    """The whole training config."""

    model: ModelConfig
    method: MethodSpec
    data: DataConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """The resolved config as plain data (what ``OUT/config.yaml`` holds)."""
        out = {k: _plain(asdict(getattr(self, k))) for k in ("model", "data", "optim", "runtime")}
        out["method"] = {"name": self.method.name, **_plain(dict(self.method.config))}
        out["seed"] = self.seed
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _method(data: Any) -> MethodSpec:
    if not isinstance(data, Mapping) or "name" not in data:
        raise ConfigError("method needs a name, e.g. method: {name: dora, rank: 16}")
    options = {k: v for k, v in data.items() if k != "name"}
    impl = get_method(str(data["name"]))
    return MethodSpec(str(data["name"]), impl.normalize(options))


def config_from_mapping(
    data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None
) -> TrainConfig:
    """Build and check a :class:`TrainConfig`; relative data paths resolve against ``base_dir`` (cwd)."""
    top = _section(TrainConfig, data, "config")
    for required in ("model", "method", "data"):
        if required not in top:
            raise ConfigError(f"the config needs a '{required}' section")
    model_data = _section(ModelConfig, top["model"], "model")
    if isinstance(model_data.get("zeroshot_checkpoint"), str):
        model_data["zeroshot_checkpoint"] = str(
            Path(base_dir or Path.cwd()) / model_data["zeroshot_checkpoint"]
        )
    model = ModelConfig(**model_data)
    method = _method(top["method"])
    data_cfg = DataConfig(
        **_resolve_paths(_section(DataConfig, top["data"], "data"), Path(base_dir or Path.cwd()))
    )
    for path in data_cfg.manifests():
        if not Path(path).is_file():
            raise ConfigError(f"data manifest {path} does not exist; fix data.train / data.val")
    return TrainConfig(
        model=model,
        method=method,
        data=data_cfg,
        optim=OptimConfig(**_section(OptimConfig, top.get("optim"), "optim")),
        runtime=RuntimeConfig(**_section(RuntimeConfig, top.get("runtime"), "runtime")),
        seed=_seed(top.get("seed", 0)),
    )


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"seed must be an integer, got {value!r}")
    return value


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    def fix(p: Any) -> Any:
        return str(base / p) if isinstance(p, str) and not os.path.isabs(p) else p

    if isinstance(data.get("train"), (list, tuple)):
        data["train"] = [
            {**item, "manifest": fix(item["manifest"])}
            if isinstance(item, Mapping) and "manifest" in item
            else fix(item)
            for item in data["train"]
        ]
    elif data.get("train") is not None:
        data["train"] = fix(data["train"])
    if data.get("val") is not None:
        data["val"] = fix(data["val"])
    return data


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a copy of ``data``."""
    import copy

    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value (e.g. optim.lr=3e-4), got {item!r}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(text)
    return out


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config, apply overrides and check it; relative data paths resolve against the cwd."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return config_from_mapping(apply_overrides(data, overrides))
