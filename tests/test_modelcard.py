import json

import pytest

from coinspotter.modelcard import ModelCard, ModelCardError, find_cards, read_card


def card(**changes):
    fields = dict(name="student", display_name="S", architecture="A", class_ids=[1, 2, 3], input_size=32, file="student.h5")
    fields.update(changes)
    return ModelCard(**fields)


def test_round_trip(tmp_path):
    original = card(metrics={"validation": {"top1": 0.5}}, training={"recipe": "r"})
    original.save(tmp_path / "student.json")
    loaded = read_card(tmp_path / "student.json")
    assert loaded == original
    assert loaded.model_path == tmp_path / "student.h5"
    assert find_cards(tmp_path) == {"student": loaded}


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"class_ids": []}, "no class ids"),
        ({"class_ids": [1, 1]}, "repeats"),
        ({"preprocessing": "imagenet-caffe"}, "unknown preprocessing"),
        ({"file": None}, "either a file or ensemble members"),
        ({"members": ["a"]}, "either a file or ensemble members"),
    ],
)
def test_invalid_cards_are_refused(tmp_path, changes, message):
    path = tmp_path / "bad.json"
    data = json.loads(card(**changes).to_json())
    path.write_text(json.dumps(data))
    with pytest.raises(ModelCardError, match=message):
        read_card(path)


def test_unknown_fields_and_broken_json_are_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**json.loads(card().to_json()), "colour": "blue"}))
    with pytest.raises(ModelCardError, match="unknown fields"):
        read_card(path)
    path.write_text("{not json")
    with pytest.raises(ModelCardError, match="cannot read"):
        read_card(path)
