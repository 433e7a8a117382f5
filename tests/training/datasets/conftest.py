"""Tiny fixtures in each dataset's published layout (images written with cv2)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

_CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
)
CELEBA_ATTRIBUTES = tuple(_CELEBA_NAMES.split())


def write_image(path: Path, size: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return path


@pytest.fixture()
def fairface_root(tmp_path: Path) -> Path:
    root = tmp_path / "fairface"
    (root / "fairface_label_train.csv").parent.mkdir(parents=True)
    train = [
        "file,age,gender,race,service_test",
        "train/1.jpg,50-59,Male,East Asian,True",
        "train/2.jpg,more than 70,Female,Indian,False",
        "train/3.jpg,0-2,Female,Black,False",
        "train/4.jpg,unknown,Male,White,True",  # line 5: bad age
        "train/5.jpg,20-29,,White,True",  # line 6: missing gender
        "train/6.jpg,20-29,Other,White,True",  # line 7: bad gender
        "train/7.jpg,3-9,Male,White,False",
    ]
    val = [
        "file,age,gender,race,service_test",
        "val/1.jpg,30-39,Male,Black,True",
        "val/2.jpg,70+,Female,White,False",
    ]
    (root / "fairface_label_train.csv").write_text("\n".join(train) + "\n")
    (root / "fairface_label_val.csv").write_text("\n".join(val) + "\n")
    for i, rel in enumerate(
        ["train/1.jpg", "train/2.jpg", "train/3.jpg", "train/7.jpg", "val/1.jpg", "val/2.jpg"]
    ):
        write_image(root / rel, seed=i)
    return root


@pytest.fixture()
def lagenda_root(tmp_path: Path) -> Path:
    root = tmp_path / "lagenda"
    rows = [
        "img_name,age,gender,face_x0,face_y0,face_x1,face_y1,person_x0,person_y0,person_x1,person_y1",
        "a.jpg,34,M,10,10,40,40,0,0,60,60",
        "a.jpg,-1,F,30,20,50,45,20,10,60,64",  # unknown age
        "a.jpg,-1,-1,30,20,50,45,20,10,60,64",  # neither age nor gender: skipped
        "a.jpg,-1,-1,-1,-1,-1,-1,20,10,60,64",  # a person without a face box: skipped
        "b.jpg,7,F,5,5,30,35,0,0,64,64",
        "b.jpg,71,F,20,20,10,30,0,0,64,64",  # line 7: box without area
        "c.jpg,2,X,5,5,30,35,0,0,64,64",  # line 8: unknown gender -> dropped label
    ]
    root.mkdir(parents=True)
    (root / "lagenda_annotation.csv").write_text("\n".join(rows) + "\n")
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        write_image(root / "images" / name, size=64, seed=i)
    return root


@pytest.fixture()
def rafdb_root(tmp_path: Path) -> Path:
    root = tmp_path / "rafdb"
    labels = [
        "train_00001.jpg 5",
        "train_00002.jpg 1",
        "train_00003.jpg 9",
        "test_0001.jpg 7",
        "test_0002.jpg 4",
    ]
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(labels) + "\n")
    manual = root / "Annotation" / "manual"
    manual.mkdir(parents=True)
    marks = "186.5\t217.3\n282.3\t216.8\n235.7\t265.6\n197.2\t311.0\n276.1\t310.4\n"
    genders = {"train_00001": "1", "train_00002": "0", "test_0001": "2"}
    for stem, gender in genders.items():
        (manual / f"{stem}_manu_attri.txt").write_text(marks + f"{gender}\n0\n2\n")
    for i, stem in enumerate(["train_00001", "train_00002", "test_0001", "test_0002"]):
        write_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg", size=40, seed=i)
    return root


@pytest.fixture()
def celeba_root(tmp_path: Path) -> Path:
    root = tmp_path / "celeba_hq"
    male = CELEBA_ATTRIBUTES.index("Male")

    def row(name: str, value: str) -> str:
        values = ["-1"] * len(CELEBA_ATTRIBUTES)
        values[male] = value
        return f"{name}  " + " ".join(values)

    lines = ["3", " ".join(CELEBA_ATTRIBUTES), row("0.jpg", "1"), row("1.jpg", "-1"), "2.jpg 1 -1"]
    root.mkdir(parents=True)
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    for i in range(3):
        write_image(root / "CelebA-HQ-img" / f"{i}.jpg", seed=i)
    return root


@pytest.fixture()
def vggface2_root(tmp_path: Path) -> Path:
    root = tmp_path / "vggface2"
    (root / "bb_landmark").mkdir(parents=True)
    (root / "identity_meta.csv").write_text(
        'Class_ID, Name, Sample_Num, Flag, Gender\nn000002, "Someone, Jr.", 300, 1, m\nn000003, Other, 200, 0, f\n'
    )
    (root / "bb_landmark" / "loose_bb_train.csv").write_text(
        'NAME_ID,X,Y,W,H\n"n000002/0001_01",4,5,30,32\n"n000003/0002_01",1,2,20,22\n'
    )
    (root / "age_annotations.csv").write_text(
        "path,age\nn000002/0001_01.jpg,41\ntrain/n000003/0002_01.jpg,19.5\nn000002/0003_01.jpg,old\n"
    )
    write_image(root / "train" / "n000002" / "0001_01.jpg", seed=1)
    write_image(root / "train" / "n000003" / "0002_01.jpg", seed=2)
    return root


@pytest.fixture()
def utkface_root(tmp_path: Path) -> Path:
    root = tmp_path / "utkface" / "UTKFace"
    names = [
        "25_0_0_20170116174525125.jpg.chip.jpg",
        "39_1_20170116174525125.jpg.chip.jpg",  # the published files without a race field
        "70_1_3_20170109150557335.jpg.chip.jpg",
        "2_3_1_20170109150557335.jpg.chip.jpg",  # gender 3: label dropped
        "130_0_0_20170109150557335.jpg.chip.jpg",  # age out of range
        "notes.jpg",
    ]
    for i, name in enumerate(names):
        write_image(root / name, seed=i)
    return root


@pytest.fixture()
def astronaut_fairface(tmp_path: Path, astronaut_bgr: np.ndarray) -> Path:
    """FairFace layout whose images are the astronaut (a face) and a flat grey image (none)."""
    root = tmp_path / "ff"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    small = cv2.resize(astronaut_bgr, (256, 256), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / "train" / "1.jpg"), small)
    cv2.imwrite(str(root / "train" / "2.jpg"), np.full((128, 128, 3), 127, np.uint8))
    cv2.imwrite(str(root / "val" / "1.jpg"), small[:, ::-1])
    (root / "fairface_label_train.csv").write_text(
        "file,age,gender,race,service_test\ntrain/1.jpg,30-39,Female,White,True\ntrain/2.jpg,3-9,Male,White,True\n"
    )
    (root / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\nval/1.jpg,30-39,Female,White,True\n"
    )
    return root


@pytest.fixture()
def astronaut_lagenda(tmp_path: Path, astronaut_bgr: np.ndarray) -> Path:
    """Lagenda layout on the astronaut: one box on her face, one on the background."""
    root = tmp_path / "lag"
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "astro.jpg"), astronaut_bgr)
    (root / "lagenda_annotation.csv").write_text(
        "img_name,age,gender,face_x0,face_y0,face_x1,face_y1\nastro.jpg,45,F,175,60,270,180\nastro.jpg,30,M,400,400,450,450\n"
    )
    return root


@pytest.fixture(scope="session")
def image_writer():  # noqa: ANN201 - returns the helper
    return write_image
