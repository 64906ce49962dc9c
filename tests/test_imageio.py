import io

import numpy as np
import pytest
from PIL import Image

from coinspotter.config import Limits
from coinspotter.imageio import ImageError, decode_image
from helpers import coin_picture, encode


def test_jpeg_png_webp_decode_to_rgb():
    picture = coin_picture("green")
    for fmt in ("JPEG", "PNG", "WEBP"):
        image = decode_image(encode(picture, fmt))
        assert image.mode == "RGB" and image.size == picture.size


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA", "I;16"])
def test_other_modes_become_rgb(mode):
    picture = coin_picture("blue")
    if mode == "I;16":
        converted = Image.fromarray((np.asarray(picture.convert("L"), dtype=np.uint16) * 257))
        data = encode(converted, "PNG")
    else:
        converted = picture.convert(mode)
        data = encode(converted, "JPEG" if mode in ("L", "CMYK") else "PNG")
    image = decode_image(data)
    assert image.mode == "RGB"
    centre = image.getpixel((100, 100))
    if mode in ("L", "I;16", "LA"):
        assert centre[0] == centre[1] == centre[2]  # grey stays grey
    else:
        assert centre[2] > 150 and centre[0] < 90  # blue stays blue (CMYK round trip included)


def test_transparent_pixels_are_flattened_onto_white():
    picture = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image = decode_image(encode(picture, "PNG"))
    assert image.getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    picture = Image.new("RGB", (60, 30), (255, 0, 0))
    picture.paste((0, 0, 255), (0, 0, 30, 30))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    image = decode_image(encode(picture, "JPEG", exif=exif.tobytes(), quality=95))
    assert image.size == (30, 60)
    top = image.getpixel((15, 5))
    assert top[2] > 200 and top[0] < 60  # the blue half is now on top


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"hello, this is text pretending to be a photo", "not an image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not an image"),
    ],
)
def test_bad_bytes_give_readable_errors(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test_truncated_jpeg_is_reported_as_damaged():
    data = encode(coin_picture("red", (400, 400)), "JPEG", quality=95)
    with pytest.raises(ImageError, match="damaged or cut short"):
        decode_image(data[: len(data) // 2])


def test_limits_on_bytes_and_pixels_are_enforced_before_decoding():
    data = encode(coin_picture("red", (300, 300)), "PNG")
    with pytest.raises(ImageError, match="limit"):
        decode_image(data, Limits(max_bytes_per_file=100))
    with pytest.raises(ImageError, match="megapixels"):
        decode_image(data, Limits(max_pixels=300 * 299))


def test_decompression_bomb_header_is_refused_without_decoding():
    # a PNG whose header claims 30000 x 30000 pixels: refuse from the header alone
    bomb = Image.new("1", (30000, 30000))
    buffer = io.BytesIO()
    bomb.save(buffer, format="PNG", optimize=True)
    with pytest.raises(ImageError):
        decode_image(buffer.getvalue())


def test_animated_gif_uses_its_first_frame():
    frames = [coin_picture(c) for c in ("red", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = decode_image(buffer.getvalue())
    red, green, _ = image.getpixel((100, 100))
    assert red > green
