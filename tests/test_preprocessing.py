import numpy as np
from PIL import Image

from coinspotter import dataset
from coinspotter.imageio import decode_image
from coinspotter.preprocessing import batch_model_input, letterbox, to_model_input
from helpers import coin_picture, encode


def test_square_picture_is_resized_without_padding():
    out = to_model_input(coin_picture("red", (200, 200)), 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255


def test_wide_picture_keeps_its_aspect_with_background_margins():
    wide = Image.new("RGB", (200, 100), (10, 20, 30))
    wide.paste((200, 0, 0), (90, 40, 110, 60))
    boxed = np.asarray(letterbox(wide, 100))
    assert boxed.shape == (100, 100, 3)
    assert tuple(boxed[5, 50]) == (10, 20, 30)  # the margin takes the border colour
    assert tuple(boxed[50, 50])[0] > 150  # the red square stays square in the middle


def test_training_and_serving_produce_the_same_tensor(tmp_path):
    """The training loader and the server's path must hand the model identical numbers."""
    folder = tmp_path / "train" / "7"
    folder.mkdir(parents=True)
    data = encode(coin_picture("green", (180, 120)), "JPEG", quality=90)
    (folder / "a.jpg").write_bytes(data)
    samples = dataset.list_split(tmp_path, "train")
    training = dataset.load_pictures(samples, 48).astype(np.float32)
    serving = batch_model_input([decode_image(data)], 48)
    np.testing.assert_array_equal(training, serving)
