"""training/prune.py's global magnitude pruning on a tiny convolutional model: the asked sparsity exactly,
the smallest weights across layers, biases and BatchNorm untouched, nested models reached, masks that hold."""
import sys

import numpy as np
import pytest

from coinspotter.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "training"))

import prune  # noqa: E402


def tiny_convnet(seed: int = 0):
    """Picture -> (nested model: conv, BN, depthwise conv, BN) -> pooling -> dense, random weights."""
    import keras

    keras.utils.set_random_seed(seed)
    inner_input = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inner_input)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="depthwise_bn")(x)
    backbone = keras.Model(inner_input, x, name="backbone")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = keras.layers.Dense(4, name="logits")(x)
    model = keras.Model(inputs, outputs)
    for layer in (backbone.get_layer("conv_bn"), backbone.get_layer("depthwise_bn")):  # not the defaults 1 and 0
        layer.set_weights([np.random.default_rng(1).uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    for name in ("conv", "depthwise"):
        layer = backbone.get_layer(name)
        layer.set_weights([layer.get_weights()[0], np.full(layer.get_weights()[1].shape, 0.01, "float32")])
    model.get_layer("logits").bias.assign(np.full(4, 0.02, "float32"))
    return model


def not_kernels(model):
    kernels = {id(k) for k in prune.prunable_kernels(model)}
    return {w.path: np.array(w.numpy()) for w in model.weights if id(w) not in kernels}


def test_prunable_kernels_are_the_conv_depthwise_and_dense_kernels_of_nested_models_too():
    model = tiny_convnet()
    kernels = prune.prunable_kernels(model)
    assert sorted(k.path.split("/")[-2] for k in kernels) == ["conv", "depthwise", "logits"]
    assert all(k.path.endswith("kernel") for k in kernels)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_pruning_hits_the_asked_sparsity_and_leaves_biases_and_batchnorm_alone(rate):
    model = tiny_convnet()
    untouched = not_kernels(model)
    assert all(np.all(v != 0) for v in untouched.values())
    before = np.concatenate([k.numpy().ravel() for k in prune.prunable_kernels(model)])
    prune.prune_model(model, rate)
    after = np.concatenate([k.numpy().ravel() for k in prune.prunable_kernels(model)])
    assert int(np.sum(after == 0)) == round(rate * after.size)  # exactly, across all kernels together
    assert prune.sparsity(model)["kernel_sparsity"] == pytest.approx(rate, abs=1 / after.size)
    # global: every weight removed is no larger than every weight kept, whichever layer each is in
    removed, kept = np.abs(before[after == 0]), np.abs(before[after != 0])
    assert removed.max() <= kept.min()
    np.testing.assert_array_equal(after[after != 0], before[after != 0])  # the rest is not changed
    for path, value in not_kernels(model).items():
        np.testing.assert_array_equal(value, untouched[path], err_msg=path)


def test_masks_are_global_not_per_layer():
    # one layer of small weights, one of large: a 50% global cut takes the small layer first
    small, large = np.full((10,), 0.01) * np.arange(1, 11), np.arange(1, 11, dtype=float)
    masks = prune.global_magnitude_masks([small, large], 0.5)
    assert not masks[0].any() and masks[1].all()
    with pytest.raises(ValueError):
        prune.global_magnitude_masks([small], 1.0)


def test_a_masked_training_step_keeps_the_pruned_weights_at_zero():
    import keras

    model = tiny_convnet()
    kernels, masks = prune.prune_model(model, 0.6)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.MeanSquaredError())
    x = np.random.default_rng(2).normal(size=(8, 16, 16, 3)).astype("float32")
    model.train_on_batch(x, np.ones((8, 4), "float32"))
    moved = [k.numpy()[~m] for k, m in zip(kernels, masks)]
    assert any(np.any(v != 0) for v in moved)  # a plain step revives pruned weights...
    prune.apply_masks(kernels, masks)
    assert prune.sparsity(model)["kernel_sparsity"] == pytest.approx(0.6, abs=0.01)  # ...the mask puts them back


def test_finetune_rates_pick_the_highest_rate_within_a_point_and_the_next(monkeypatch):
    sweep = [{"rate": 0.0, "validation_leak_free_top1": 0.70}] + [
        {"rate": r, "validation_leak_free_top1": v} for r, v in ((0.1, 0.70), (0.2, 0.695), (0.3, 0.69), (0.4, 0.60))]
    rates, why = prune.finetune_rates(["auto"], sweep, 0.01, 0.5)
    assert rates == [0.3, 0.4] and "highest rate" in why
    collapsed = [sweep[0]] + [{"rate": r, "validation_leak_free_top1": 0.5} for r in (0.1, 0.2)]
    assert prune.finetune_rates(["auto"], collapsed, 0.01, 0.5)[0] == [0.5]
    assert prune.finetune_rates(["none"], sweep, 0.01, 0.5)[0] == []
    assert prune.finetune_rates(["0.4"], sweep, 0.01, 0.5)[0] == [0.4]


def student_like(size: int = 32):
    """The served student's shape in miniature: picture -> to_minus1_1 -> nested backbone (with a
    "block_12_add" cut) -> pool -> dropout -> logits -> probabilities, as training/train.py builds it."""
    import keras

    keras.utils.set_random_seed(3)
    inner = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="stem")(inner)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="block_12_add")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="top_depthwise")(x)
    x = keras.layers.BatchNormalization(name="top_bn")(x)
    x = keras.layers.Conv2D(8, 1, name="top_project")(x)
    backbone = keras.Model(inner, x, name="backbone")
    inputs = keras.Input((size, size, 3), name="picture")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_minus1_1")(inputs)))
    x = keras.layers.Dropout(0.1, name="dropout")(x)
    logits = keras.layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(logits))


def test_finetune_trains_the_top_with_the_masks_held(tmp_path):
    import argparse
    import json

    from evaluate import EvalSet

    from coinspotter.inference import KerasClassifier
    from coinspotter.modelcard import read_card
    from helpers import COLOURS, TINY_CLASS_IDS, coin_picture, write_model_dir

    folder = write_model_dir(tmp_path / "models", with_ensemble=False)
    student_like().save(folder / "student.h5")
    classifier = KerasClassifier(read_card(folder / "student.json"))
    views = tmp_path / "views"
    views.mkdir()
    colours = list(COLOURS) * 4
    faces = np.stack([np.asarray(coin_picture(c, (32, 32))) for c in colours]).astype(np.uint8)
    np.save(views / "views.npy", np.concatenate([faces, faces[:, ::-1]]))  # 2 views per face
    np.save(views / "labels.npy", np.array([TINY_CLASS_IDS[list(COLOURS).index(c)] for c in colours]))
    (views / "meta.json").write_text(json.dumps({"faces": len(colours), "views": 2, "image_size": 32}))
    validation = EvalSet("validation", [f"v{i}" for i in range(6)], [TINY_CLASS_IDS[i % 3] for i in range(6)],
                         [coin_picture(list(COLOURS)[i % 3], (20, 20)) for i in range(6)],
                         leak_free=np.array([True, True, True, False, True, False]))
    args = argparse.Namespace(cut="block_12_add", views=str(views), views_per_face=2, seed=0, batch_size=4,
                              learning_rate=0.05, label_smoothing=0.1, epochs=2)
    model = classifier.model
    kernels = prune.prunable_kernels(model)
    originals = [k.numpy() for k in kernels]
    bottom_kernel = model.get_layer("backbone").get_layer("stem").kernel
    tuned = prune.finetune(classifier, 0.5, originals, [validation], args)
    assert tuned["training_views"] == 24 and [h["epoch"] for h in tuned["history"]] == [0, 1, 2]
    assert prune.sparsity(model)["kernel_sparsity"] == pytest.approx(0.5, abs=0.01)  # masks held through training
    expected = prune.global_magnitude_masks(originals, 0.5)
    np.testing.assert_array_equal(bottom_kernel.numpy(), originals[0] * expected[0])  # below the cut: pruned, not trained
    top = model.get_layer("logits").kernel.numpy()
    assert not np.array_equal(top, originals[-1] * expected[-1]) or tuned["best_epoch"] == 0
    assert classifier.predict_images([coin_picture("red")]).shape == (1, 3)  # the served path sees the new weights


def test_layer_sparsity_shows_where_a_global_cut_fell():
    model = tiny_convnet()
    depthwise = model.get_layer("backbone").get_layer("depthwise").kernel
    depthwise.assign(depthwise.numpy() * 1e-3)  # one layer of tiny weights: a global cut empties it first
    prune.prune_model(model, 0.3)
    found = prune.uneven(model)
    assert found["most_pruned_layer"].endswith("depthwise") and found["most_pruned_layer_sparsity"] == 1.0
    assert any(name.endswith("depthwise") for name in found["layers_over_90_percent_pruned"])
    assert found["layer_sparsity"][found["most_pruned_layer"]] == 1.0 and len(found["layer_sparsity"]) == 3


def test_reports_and_readme_block_are_written(tmp_path):
    def row(rate, top1):
        return {"rate": rate, "kernel_weights": 320, "all_weights": 400, "kernel_sparsity": rate, "zlib_mb": 1.0 - rate,
                "validation_top1": top1 + 0.1, "validation_leak_free_top1": top1, "real_photos_top1": top1 / 2,
                "real_photos_value_accuracy": top1 / 2, "most_pruned_layer": "backbone/depthwise",
                "most_pruned_layer_sparsity": min(1.0, 2 * rate), "layers_over_90_percent_pruned": []}
    result = {"model": "student", "measured_by": "python training/prune.py", "measured_at": "now", "kernels": 3,
              "within": 0.01, "cut": "block_12_add", "epochs": 2, "validation_images": 6, "leak_free_images": 4,
              "real_photo_images": 3, "finetune_reason": "0.1: the highest rate",
              "sweep": [row(0.0, 0.7), row(0.1, 0.695), row(0.2, 0.4)],
              "finetuned": [{**row(0.1, 0.7), "best_epoch": 1, "training_views": 24, "finetune_seconds": 3.0,
                             "history": [{"epoch": 0, "validation_leak_free_top1": 0.695}, {"epoch": 1, "validation_leak_free_top1": 0.7}],
                             "load_average_1min": 1.0}]}
    prune.write_reports(result, tmp_path)
    text = (tmp_path / "prune.md").read_text()
    assert "| 0.1 + fine-tune (1 of 2 epochs) |" in text and "| -0.5 |" in text and "| -30.0 |" in text
    assert (tmp_path / "prune.png").stat().st_size > 5000
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- prune:begin -->\nold table\n<!-- prune:end -->\nrest\n")
    import report_blocks

    report_blocks.publish(str(readme), "prune", "Measured by x", prune.table(result))
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("rest\n") and "| 0.2 |" in text
