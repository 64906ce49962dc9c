"""Model cards: the JSON file beside every bundled model that says how to feed it and how good it is.

Serving reads only the card to know how to use a model: its file, input size, preprocessing and the
class id of every output index. Training writes the card with the figures it measured.

``file`` (the Keras ``.h5``) is always the source of truth. A card may add ``serving``: a compact copy of
that model (a TensorFlow Lite file exported from it by ``benchmarks/compact.py --update-card``) that is
served instead, with why and what it measured, and the sha256 of the ``.h5`` it was exported from: when
the ``.h5`` is replaced, the stale copy is ignored and the ``.h5`` is served (see
``inference.build_classifier``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .preprocessing import PREPROCESSING_NAME


class ModelCardError(ValueError):
    pass


@dataclass
class ModelCard:
    name: str  # what the API and CLI call it: "student", "ensemble", "xception", ...
    display_name: str
    architecture: str
    class_ids: list[int]  # class id of each output index
    input_size: int = 224
    preprocessing: str = PREPROCESSING_NAME
    file: str | None = None  # the .h5 beside the card; None for an ensemble
    members: list[str] = field(default_factory=list)  # card names of an ensemble's members
    uncertain_below: float | None = None  # overrides the service default when set
    tta_rotations: int = 1  # test-time augmentation: average over this many turns of each crop (coinspotter.tta)
    tta_temperature: float = 1.0  # divides the log of that average: refitted calibration (training/calibrate.py --tta)
    training: dict = field(default_factory=dict)  # recipe, data, command
    metrics: dict = field(default_factory=dict)  # measured figures, with the command that measured them
    # optional compact file served instead of ``file``: {"file": "student.float16.tflite", "format": "tflite",
    # "source_sha256": <sha256 of the .h5 it was exported from>, "cam": "student.cam.npz" (the dense kernel, for
    # "Show why" without TensorFlow), "why": ..., "measured_by": ..., ...}; written by training/export_tflite.py
    serving: dict = field(default_factory=dict)
    path: Path | None = field(default=None, repr=False, compare=False)  # where the card was read from

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)

    @property
    def model_path(self) -> Path:
        if self.file is None or self.path is None:
            raise ModelCardError(f"model card {self.name!r} names no model file")
        return self.path.parent / self.file

    @property
    def serving_path(self) -> Path | None:
        """The compact file the card asks to serve instead of the ``.h5``, if any."""
        if not self.serving.get("file"):
            return None
        if self.path is None:
            raise ModelCardError(f"model card {self.name!r} was not read from a folder")
        return self.path.parent / self.serving["file"]

    def validate(self) -> None:
        if not self.class_ids:
            raise ModelCardError(f"model card {self.name!r} has no class ids")
        if len(set(self.class_ids)) != len(self.class_ids):
            raise ModelCardError(f"model card {self.name!r} repeats a class id")
        if self.preprocessing != PREPROCESSING_NAME:
            raise ModelCardError(f"model card {self.name!r} wants unknown preprocessing {self.preprocessing!r}")
        turns = self.tta_rotations
        if isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= 16:
            raise ModelCardError(f"model card {self.name!r}: tta_rotations must be a whole number from 1 to 16")
        if isinstance(self.tta_temperature, bool) or not isinstance(self.tta_temperature, (int, float)) \
                or not 0.05 <= self.tta_temperature <= 20:
            raise ModelCardError(f"model card {self.name!r}: tta_temperature must be a number from 0.05 to 20")
        if bool(self.file) == bool(self.members):
            raise ModelCardError(f"model card {self.name!r} must name either a file or ensemble members")
        if self.serving:
            served = self.serving.get("file")
            if not self.file or not isinstance(served, str) or self.serving.get("format") != "tflite" \
                    or not served.endswith(".tflite") or Path(served).name != served:
                raise ModelCardError(f"model card {self.name!r}: serving must name a .tflite file beside the card "
                                     f"(format 'tflite') exported from its .h5")
            cam = self.serving.get("cam")
            if cam is not None and (not isinstance(cam, str) or not cam.endswith(".npz") or Path(cam).name != cam):
                raise ModelCardError(f"model card {self.name!r}: serving's cam must name a .npz file beside the card")

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("path")
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    def save(self, path: Path | str) -> None:
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        self.path = path


def read_card(path: Path | str) -> ModelCard:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelCardError(f"cannot read model card {path}: {error}") from None
    known = set(ModelCard.__dataclass_fields__) - {"path"}
    unknown = set(data) - known
    if unknown:
        raise ModelCardError(f"model card {path} has unknown fields {sorted(unknown)}")
    card = ModelCard(**data, path=path)
    card.validate()
    return card


def find_cards(models_dir: Path | str) -> dict[str, ModelCard]:
    """All cards in a folder, by name."""
    cards = {}
    for path in sorted(Path(models_dir).glob("*.json")):
        card = read_card(path)
        cards[card.name] = card
    return cards
