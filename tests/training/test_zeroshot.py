"""Zero-shot heads compiled from the PE text tower: fidelity to open_clip, prompt checks, the
done-when chain (build with an extra attribute -> export -> Analyzer), ``heads_init: zeroshot``.

Everything runs offline on the random-init ``PE-Core-T-16-384``; the expensive build and
export are module fixtures shared by the tests that need them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="the zero-shot tests need the [zeroshot] extra")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import facesdk.training.zeroshot.compile as zeroshot_compile  # noqa: E402
from facesdk.errors import ConfigError  # noqa: E402
from facesdk.faces.model_store import PACKAGED_DETECTOR  # noqa: E402
from facesdk.tasks import DEFAULT_TASKS  # noqa: E402
from facesdk.training.zeroshot.compile import FIDELITY_TOLERANCE, ClipBundle, load_clip  # noqa: E402
from facesdk.training.zeroshot.prompts import load_prompts  # noqa: E402

YUNET = PACKAGED_DETECTOR
CLIP = "PE-Core-T-16-384"
GLASSES = """\
# an extra attribute; no templates: it inherits the default ones
tasks:
  glasses:
    classes:
      no: ["a person without glasses"]
      yes: ["a person wearing glasses", "a person wearing sunglasses"]
"""


@pytest.fixture(scope="module")
def glasses_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "glasses.yaml"
    path.write_text(GLASSES)
    return path


@pytest.fixture(scope="module")
def build_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three tasks with one prompt per class, and glasses with an ensemble of 2 x 2 prompts.

    The default ensembles (9 prompts per class) would make the text tower the test's main cost.
    """
    import yaml

    tasks = {
        t.name: {"classes": {label: [phrases[0]] for label, phrases in t.classes}}
        for t in load_prompts().tasks
    }
    tasks["glasses"] = {
        "templates": ["a photo of {}.", "a close-up photo of {}."],
        "classes": {
            "no": ["a person without glasses"],
            "yes": ["a person wearing glasses", "a person in sunglasses"],
        },
    }
    path = tmp_path_factory.mktemp("prompts") / "build.yaml"
    path.write_text(yaml.safe_dump({"templates": ["a photo of {}."], "tasks": tasks}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def bundle() -> ClipBundle:
    """The random-init open_clip model (seeded), shared by the build and the fidelity test."""
    torch.manual_seed(0)
    return load_clip(CLIP)


@pytest.fixture(scope="module")
def zeroshot_ckpt(tmp_path_factory: pytest.TempPathFactory, build_yaml: Path, bundle: ClipBundle) -> Path:
    """``facesdk zeroshot build --prompts build.yaml`` (random init, offline) on ``bundle``."""
    from facesdk.cli import main

    def shared(
        name: str, pretrained: str | None = None, device: str = "cpu", vision_kwargs: object = None
    ) -> ClipBundle:
        assert (name, pretrained, device, vision_kwargs) == (CLIP, None, "cpu", None)
        return bundle

    out = tmp_path_factory.mktemp("zeroshot") / "ckpt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zeroshot_compile, "load_clip", shared)
        argv = ["zeroshot", "build", "--clip", CLIP, "--prompts", str(build_yaml), "--out", str(out)]
        assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def zeroshot_export(tmp_path_factory: pytest.TempPathFactory, zeroshot_ckpt: Path) -> Path:
    """``facesdk export build`` of the zero-shot checkpoint: ONNX fp32 only, batches up to 4
    (the ONNX-vs-torch check runs batches 1 and the maximum: 32 would dominate the run)."""
    pytest.importorskip("onnx")
    from facesdk.cli import main

    out = tmp_path_factory.mktemp("zeroshot_export") / "export"
    argv = ["export", "build", "--ckpt", str(zeroshot_ckpt), "--out", str(out)]
    assert main([*argv, "--precision", "fp32", "--onnx-only", "--max-batch", "4"]) == 0
    return out


# ------------------------------------------------------------------------------- fidelity
def test_compiled_heads_match_open_clips_zero_shot_logits(
    bundle: ClipBundle, zeroshot_ckpt: Path, build_yaml: Path
) -> None:
    """The built checkpoint vs open_clip's own classifier (``build_zero_shot_classifier``), text tower run."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    from facesdk.training import load_checkpoint

    model = load_checkpoint(zeroshot_ckpt)
    prompts = load_prompts(build_yaml)
    images = torch.randn(2, 3, *bundle.preprocess.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(images)
        image = bundle.model.encode_image(images, normalize=True)
        scale = bundle.model.logit_scale.exp()
        for task in prompts.tasks:
            # one open_clip "class" per label, its templates the label's whole prompt ensemble
            columns = [
                build_zero_shot_classifier(
                    bundle.model,
                    bundle.tokenizer,
                    [label],
                    [lambda _, text=text: text for text in task.prompts(label)],
                )
                for label, _ in task.classes
            ]
            expected = scale * image @ torch.cat(columns, dim=1)
            assert ours[task.name].shape == expected.shape == (2, len(task.classes))
            torch.testing.assert_close(ours[task.name], expected, atol=FIDELITY_TOLERANCE, rtol=0)


def test_a_reduced_random_tower_is_compiled_recorded_and_accepted_by_heads_init(
    tmp_path: Path, build_yaml: Path
) -> None:
    """``vision_kwargs`` (what the methods benchmark uses): a smaller tower, checked like the full one."""
    from facesdk.training import load_checkpoint
    from facesdk.training.config import ModelConfig
    from facesdk.training.zeroshot.compile import build_zeroshot_checkpoint

    torch.manual_seed(0)
    small = {"img_size": 32, "depth": 1}
    manifest = build_zeroshot_checkpoint(CLIP, tmp_path / "small", build_yaml, vision_kwargs=small)
    assert {k: manifest.backbone.kwargs[k] for k in small} == small
    assert manifest.preprocess.input_size == (32, 32)
    assert manifest.training["zeroshot"]["fidelity_max_abs_diff"] <= FIDELITY_TOLERANCE
    assert len(load_checkpoint(tmp_path / "small").backbone.blocks) == 1
    source = {"heads_init": "zeroshot", "zeroshot_checkpoint": str(tmp_path / "small")}
    ModelConfig(backbone=manifest.backbone.name, kwargs=small, **source)  # the same network: accepted
    with pytest.raises(ConfigError, match="another network"):
        ModelConfig(backbone=manifest.backbone.name, kwargs={**small, "depth": 2}, **source)
    with pytest.raises(ConfigError, match="pretrained weights no"):
        load_clip(CLIP, "meta", vision_kwargs=small)
    with pytest.raises(ConfigError, match="may not set"):
        load_clip(CLIP, vision_kwargs={"num_classes": 3})


# ------------------------------------------------------------------------------- prompt files
@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (
            "tasks:\n  glasses:\n    classes:\n      yes: [a person wearing glasses]\n"
            "      yes: [a person in sunglasses]\n",
            ["duplicate key 'yes'", "line 5", "must appear once"],
        ),
        (
            "tasks:\n  mask:\n    classes:\n      masked: [a person wearing a mask]\n      bare: []\n",
            ["task 'mask'", "phrases of class 'bare'", "is empty"],
        ),
        (
            "tasks:\n  mask:\n    phrases: [x]\n    classes:\n      masked: [a person wearing a mask]\n",
            ["task 'mask'", "unknown option(s) ['phrases']", "known: ['classes', 'templates']"],
        ),
        (
            "tasks:\n  gender:\n    classes:\n      female: [a woman]\n      male: [a man]\n",
            ["'gender' task has the classes ['male', 'female']", "use another task name"],
        ),
        ("template: ['{}']\ntasks: {}\n", ["unknown option(s) ['template']", "known:"]),
        (
            "tasks:\n  mask:\n    templates: [a photo]\n    classes:\n      masked: [a mask]\n",
            ["needs '{}' for the phrase", "'a photo'"],
        ),
    ],
    ids=["duplicate-class", "empty-phrases", "unknown-task-option", "default-labels", "unknown-top", "no-{}"],
)
def test_bad_prompt_files_say_what_to_fix(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = tmp_path / "prompts.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_prompts(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_a_user_file_adds_tasks_and_inherits_the_default_templates(glasses_yaml: Path) -> None:
    defaults = load_prompts()
    merged = load_prompts(glasses_yaml)
    assert [t.name for t in merged.tasks] == [*(t.name for t in DEFAULT_TASKS), "glasses"]
    glasses = merged.tasks[-1]
    assert glasses.task.labels == ("no", "yes")  # YAML 1.2: `no` and `yes` stay strings
    assert glasses.templates == defaults.tasks[0].templates
    assert len(glasses.prompts("yes")) == 2 * len(glasses.templates)
    assert merged.tasks[0].task.labels == DEFAULT_TASKS[0].labels


# ------------------------------------------------------------------------------- done when
def test_checkpoint_records_method_prompts_and_clip(zeroshot_ckpt: Path) -> None:
    data = json.loads((zeroshot_ckpt / "checkpoint.json").read_text())
    assert data["method"]["name"] == "zeroshot"
    config = data["method"]["config"]
    assert config["clip"] == CLIP and config["pretrained"] is None
    assert list(config["prompts"]["tasks"]) == ["age", "gender", "emotion", "glasses"]
    assert config["prompts"]["tasks"]["glasses"]["classes"]["yes"] == [
        "a person wearing glasses",
        "a person in sunglasses",
    ]
    assert config["prompts"]["tasks"]["age"]["templates"] == ["a photo of {}."]
    assert [t["name"] for t in data["tasks"]] == ["age", "gender", "emotion", "glasses"]
    assert data["backbone"]["name"] == "vit_pe_core_tiny_patch16_384"
    assert data["training"]["zeroshot"]["fidelity_max_abs_diff"] <= FIDELITY_TOLERANCE
    assert data["params"]["trainable"] == 0


def test_export_runs_in_the_analyzer_on_the_astronaut(zeroshot_export: Path) -> None:
    import cv2

    from facesdk import Analyzer

    data = pytest.importorskip("skimage.data")
    if not YUNET.is_file():
        pytest.skip(f"YuNet test model not found at {YUNET.resolve()}")
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    with Analyzer(zeroshot_export, backend="onnxruntime", detector=YUNET.resolve()) as analyzer:
        result = analyzer.analyze(image)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert list(face.attributes) == ["age", "gender", "emotion", "glasses"]
    for prediction in (face.age, face.gender, face.emotion):
        assert prediction is not None
    assert len(face.age.probs) == 9 and len(face.gender.probs) == 2 and len(face.emotion.probs) == 7
    glasses = face.attributes["glasses"]
    assert set(glasses.probs) == {"no", "yes"}
    for prediction in face.attributes.values():
        assert sum(prediction.probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_eval_labels_a_zero_shot_model_as_the_baseline(zeroshot_ckpt: Path, zeroshot_export: Path) -> None:
    from facesdk.training.evaluate import ModelArg, baseline_label

    assert baseline_label(ModelArg.parse(f"zs={zeroshot_ckpt}")) == "zs (zero-shot baseline)"
    assert baseline_label(ModelArg.parse(f"{zeroshot_export}@fp32")) == "export@fp32 (zero-shot baseline)"


# ------------------------------------------------------------------------------- heads_init
@pytest.fixture(scope="module")
def vision_tower_file(tmp_path_factory: pytest.TempPathFactory, zeroshot_ckpt: Path) -> Path:
    """The zero-shot checkpoint's vision tower as timm weights (``model.weights: file:PATH``)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(zeroshot_ckpt / "model.safetensors"))
    trunk = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    path = tmp_path_factory.mktemp("tower") / "vision.safetensors"
    save_file(trunk, str(path))
    return path


def _heads_config(zeroshot_ckpt: Path, tower: Path, **model: object) -> dict:
    return {
        "seed": 0,
        "model": {
            "backbone": "vit_pe_core_tiny_patch16_384",
            "weights": f"file:{tower}",
            "heads_init": "zeroshot",
            "zeroshot_checkpoint": str(zeroshot_ckpt),
            **model,
        },
        "method": {"name": "linear_probe"},
        "data": {
            "synthetic": {"count": 12, "size": 32, "val_fraction": 0.25, "seed": 3},
            "samples_per_epoch": 8,
        },
        "optim": {"epochs": 1, "batch_size": 8, "lr": 1e-12, "weight_decay": 0.0},
        "runtime": {"device": "cpu", "threads": 2},
    }


def test_heads_init_zeroshot_starts_training_with_the_compiled_heads(
    tmp_path: Path, zeroshot_ckpt: Path, vision_tower_file: Path
) -> None:
    from safetensors.torch import load_file

    from facesdk.training.config import config_from_mapping
    from facesdk.training.trainer import Trainer
    from facesdk.training.zeroshot import zeroshot_heads_state

    config = config_from_mapping(_heads_config(zeroshot_ckpt, vision_tower_file, zeroshot_feature_norm=7.5))
    Trainer(config, tmp_path / "run").run()
    # lr 1e-12: one AdamW step moves no weight by more than ~1e-12, so the trained heads
    # are still the compiled ones.
    trained = load_file(str(tmp_path / "run" / "checkpoint" / "model.safetensors"))
    expected = zeroshot_heads_state(zeroshot_ckpt, config.model.task_specs(), 7.5)
    for name, (weight, bias) in expected.items():
        torch.testing.assert_close(trained[f"heads.{name}.0.weight"], weight, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(trained[f"heads.{name}.0.bias"], bias, atol=1e-6, rtol=1e-6)
    manifest = json.loads((tmp_path / "run" / "checkpoint" / "checkpoint.json").read_text())
    recorded = manifest["training"]["config"]["model"]
    assert recorded["heads_init"] == "zeroshot"
    assert recorded["zeroshot_checkpoint"] == str(zeroshot_ckpt)
    assert recorded["zeroshot_feature_norm"] == 7.5


def test_auto_feature_norm_gives_the_zero_shot_predictions(
    zeroshot_ckpt: Path, vision_tower_file: Path
) -> None:
    """Same vision tower + zero-shot heads = the compiled model's logits up to a factor per image."""
    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.training import build_model, load_checkpoint
    from facesdk.training.zeroshot.heads_init import start_from_zeroshot

    tasks = DEFAULT_TASKS
    backbone = BackboneSpec("vit_pe_core_tiny_patch16_384", f"file:{vision_tower_file}", {})
    model, _, _ = build_model(
        backbone, tasks, {t.name: HeadSpec() for t in tasks}, MethodSpec("linear_probe", {})
    )
    images = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(2))
    norm = start_from_zeroshot(model, zeroshot_ckpt, tasks, "auto", images)
    compiled = load_checkpoint(zeroshot_ckpt)
    with torch.no_grad():
        ours, theirs = model.eval()(images), compiled(images)
    ratios = []
    for task in tasks:
        assert torch.equal(ours[task.name].argmax(1), theirs[task.name].argmax(1))
        torch.testing.assert_close(
            F.normalize(ours[task.name]), F.normalize(theirs[task.name]), atol=1e-4, rtol=0
        )
        ratios.append(ours[task.name].norm(dim=1) / theirs[task.name].norm(dim=1))
    # auto: the factor |P f + b| / n averages to 1 over the crops the norm was taken on
    assert norm > 0
    assert float(ratios[0].mean()) == pytest.approx(1.0, abs=1e-4)
    for ratio in ratios[1:]:
        torch.testing.assert_close(ratio, ratios[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        ({"backbone": "vit_pe_core_small_patch16_384"}, "compiled for the vision tower 'vit_pe_core_tiny"),
        ({"kwargs": {"depth": 2}}, "build another network than the zero-shot vision tower"),
        ({"head": {"kind": "mlp", "hidden": 8}}, "set model.head.kind: linear"),
    ],
    ids=["other-backbone", "other-kwargs", "mlp-head"],
)
def test_heads_init_refuses_another_network(
    zeroshot_ckpt: Path, vision_tower_file: Path, model: dict, needle: str
) -> None:
    from facesdk.training.config import config_from_mapping

    with pytest.raises(ConfigError, match=needle):
        config_from_mapping(_heads_config(zeroshot_ckpt, vision_tower_file, **model))


def test_heads_init_refuses_a_trained_checkpoint(tmp_path: Path, zeroshot_ckpt: Path) -> None:
    from facesdk.training.config import config_from_mapping

    other = tmp_path / "ckpt"
    other.mkdir()
    (other / "model.safetensors").symlink_to(zeroshot_ckpt / "model.safetensors")
    data = json.loads((zeroshot_ckpt / "checkpoint.json").read_text())
    data["method"] = {"name": "linear_probe", "config": {}}
    (other / "checkpoint.json").write_text(json.dumps(data))
    with pytest.raises(
        ConfigError, match="not a zero-shot checkpoint; build one with 'facesdk zeroshot build'"
    ):
        config_from_mapping(_heads_config(other, tmp_path / "unused.safetensors"))
