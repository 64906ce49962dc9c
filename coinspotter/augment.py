"""Augmentation for coin pictures, as Keras layers, so the same pipeline runs on CPU and GPU and in a
model or a tf.data map.

What a phone photo does to a coin: any rotation (a coin has no "up"), scale and position in the crop,
tilt (perspective), lamp light from one side, warm or cold white balance, blur, sensor noise, JPEG
artefacts, and a table, a palm or a cloth behind it. Never a mirror image: mirrored lettering is not a
real coin, so there is deliberately no flip here.

All custom layers are registered and serialisable; pictures are float RGB in 0..255.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

PACKAGE = "coinspotter"


class _SeededLayer(keras.layers.Layer):
    """A random layer whose draws come from a Keras SeedGenerator: reproducible under a seed."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def uniform(self, shape, low, high):
        return keras.random.uniform(shape, low, high, seed=self.seed_generator)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomColorTemperature(_SeededLayer):
    """Warm (lamp) or cold (shade) white balance: red and blue gains moving in opposite directions by up
    to ``strength``, and a green-magenta tint (fluorescent and LED light, a phone's auto white balance
    fooled by a coloured table) moving green by up to ``tint``."""

    def __init__(self, strength: float = 0.15, tint: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.strength = strength
        self.tint = tint

    def call(self, images, training=True):
        if not training:
            return images
        shift = self.uniform((tf.shape(images)[0], 1, 1, 1), -self.strength, self.strength)
        green = self.uniform((tf.shape(images)[0], 1, 1, 1), -self.tint, self.tint) if self.tint else 0.0
        gains = tf.concat([1 + shift, tf.ones_like(shift) + green, 1 - shift], axis=-1)
        return tf.clip_by_value(images * gains, 0, 255)

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "tint": self.tint}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomUnevenLight(_SeededLayer):
    """Light falling off across the picture: a linear ramp in a random direction (a lamp to one side,
    a hand's shadow), darkening one side by up to ``strength``."""

    def __init__(self, strength: float = 0.45, **kwargs):
        super().__init__(**kwargs)
        self.strength = strength

    def call(self, images, training=True):
        if not training:
            return images
        batch = tf.shape(images)[0]
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        ys = tf.linspace(-1.0, 1.0, height)[None, :, None, None]
        xs = tf.linspace(-1.0, 1.0, width)[None, None, :, None]
        angle = self.uniform((batch, 1, 1, 1), 0.0, 6.2831853)
        depth = self.uniform((batch, 1, 1, 1), 0.0, self.strength)
        ramp = (tf.cos(angle) * xs + tf.sin(angle) * ys) * 0.5 + 0.5  # 0..1 across the picture
        return tf.clip_by_value(images * (1.0 - depth * ramp), 0, 255)

    def get_config(self):
        return {**super().get_config(), "strength": self.strength}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomBackground(_SeededLayer):
    """Replace what lies outside the coin with a random surface: a flat colour, a gradient, a noisy
    texture or stripes (wood, cloth). Assumes a localised crop: the coin is the centred disc of radius
    ``coin_radius`` (fraction of the side) that the localiser's box leaves. Applied with probability
    ``rate``; the edge of the disc is feathered so no hard ring is learnt."""

    def __init__(self, rate: float = 0.6, coin_radius: float = 0.46, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.coin_radius = coin_radius

    def call(self, images, training=True):
        if not training:
            return images
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        ys = tf.linspace(-0.5, 0.5, height)[None, :, None, None]
        xs = tf.linspace(-0.5, 0.5, width)[None, None, :, None]
        distance = tf.sqrt(xs * xs + ys * ys)
        feather = 0.02
        coin_mask = tf.clip_by_value((self.coin_radius - distance) / feather + 0.5, 0.0, 1.0)

        base = self.uniform((batch, 1, 1, 3), 20.0, 235.0)
        direction = self.uniform((batch, 1, 1, 1), 0.0, 6.2831853)
        gradient = (tf.cos(direction) * xs + tf.sin(direction) * ys) * self.uniform((batch, 1, 1, 1), 0.0, 120.0)
        stripes = tf.sin((xs * tf.cos(direction) - ys * tf.sin(direction)) * self.uniform((batch, 1, 1, 1), 10.0, 80.0))
        stripes = stripes * self.uniform((batch, 1, 1, 1), 0.0, 25.0)
        noise = keras.random.normal((batch, height, width, 1), seed=self.seed_generator) \
            * self.uniform((batch, 1, 1, 1), 0.0, 20.0)
        surface = tf.clip_by_value(base + gradient + stripes + noise, 0, 255)

        apply = tf.cast(self.uniform((batch, 1, 1, 1), 0.0, 1.0) < self.rate, images.dtype)
        mask = 1.0 - apply * (1.0 - coin_mask)
        return images * mask + surface * (1.0 - mask)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "coin_radius": self.coin_radius}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomJpegQuality(_SeededLayer):
    """Re-encode as JPEG at a random quality: the blocking and ringing of phone and messenger photos."""

    def __init__(self, low: int = 30, high: int = 95, rate: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high, self.rate = low, high, rate

    def call(self, images, training=True):
        if not training:
            return images
        qualities = tf.cast(self.uniform((tf.shape(images)[0],), float(self.low), float(self.high)), tf.int32)
        apply = self.uniform((tf.shape(images)[0],), 0.0, 1.0) < self.rate

        def one(args):
            image, quality, do = args
            encoded = tf.image.adjust_jpeg_quality(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), quality)
            return tf.where(do, tf.cast(encoded, image.dtype), image)

        return tf.map_fn(one, (images, qualities, apply), fn_output_signature=images.dtype)

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high, "rate": self.rate}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomSensorNoise(_SeededLayer):
    """Gaussian sensor noise of a random strength (0..``max_stddev`` in 0..255 units) per picture."""

    def __init__(self, max_stddev: float = 8.0, **kwargs):
        super().__init__(**kwargs)
        self.max_stddev = max_stddev

    def call(self, images, training=True):
        if not training:
            return images
        stddev = self.uniform((tf.shape(images)[0], 1, 1, 1), 0.0, self.max_stddev)
        noise = keras.random.normal(tf.shape(images), seed=self.seed_generator) * stddev
        return tf.clip_by_value(images + noise, 0, 255)

    def get_config(self):
        return {**super().get_config(), "max_stddev": self.max_stddev}


def border_colour(images):
    """Mean colour of each picture's outermost two-pixel frame: (batch, 1, 1, 3). What a turned, shifted
    or tilted picture's uncovered corners are filled with, so they read as more of the same background."""
    frame = tf.concat([
        tf.reshape(images[:, :2], (tf.shape(images)[0], -1, 3)),
        tf.reshape(images[:, -2:], (tf.shape(images)[0], -1, 3)),
        tf.reshape(images[:, :, :2], (tf.shape(images)[0], -1, 3)),
        tf.reshape(images[:, :, -2:], (tf.shape(images)[0], -1, 3)),
    ], axis=1)
    return tf.reduce_mean(frame, axis=1)[:, None, None, :]


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomCameraGeometry(_SeededLayer):
    """Where a phone puts the coin: turned by up to ``max_turn_degrees`` either way, scaled by a factor in
    ``scale`` (above 1: the coin fills more of the crop), shifted by up to ``shift`` of the side, and tilted
    (a projective keystone of up to ``tilt``), all as one projective transform so the picture is resampled
    once. Uncovered corners take the picture's border colour: never a mirror of the coin, whose reflected
    slivers would teach the model rims that no photo has."""

    def __init__(self, max_turn_degrees: float = 180.0, scale=(0.8, 1.3), shift: float = 0.06,
                 tilt: float = 0.12, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= max_turn_degrees <= 180:
            raise ValueError(f"max_turn_degrees must be within 0..180, got {max_turn_degrees}")
        self.max_turn_degrees = max_turn_degrees
        self.scale = tuple(scale)
        self.shift = shift
        self.tilt = tilt

    def call(self, images, training=True):
        if not training:
            return images
        images = tf.convert_to_tensor(images, tf.float32)
        batch = tf.shape(images)[0]
        height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
        turn = self.uniform((batch,), -self.max_turn_degrees, self.max_turn_degrees) * (math.pi / 180.0)
        scale = tf.exp(self.uniform((batch,), math.log(self.scale[0]), math.log(self.scale[1])))
        shift_x = self.uniform((batch,), -self.shift, self.shift) * width
        shift_y = self.uniform((batch,), -self.shift, self.shift) * height
        # keystone: the projective row, in units of the half side
        tilt_x = self.uniform((batch,), -self.tilt, self.tilt) / (width / 2)
        tilt_y = self.uniform((batch,), -self.tilt, self.tilt) / (height / 2)
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        # The op maps each output pixel (x, y) to the input pixel it reads. With u = x - cx, v = y - cy:
        # input = cx + shift + R(turn) (u, v) / scale, divided by k = 1 + tilt_x u + tilt_y v.
        cos, sin = tf.cos(turn) / scale, tf.sin(turn) / scale
        offset_x, offset_y = centre_x + shift_x, centre_y + shift_y
        # (x, y) -> homogeneous input, u and v expanded into x and y; the op wants the last entry 1, hence / k
        k = 1.0 - tilt_x * centre_x - tilt_y * centre_y
        row_x = [cos + offset_x * tilt_x, -sin + offset_x * tilt_y, -cos * centre_x + sin * centre_y + offset_x * k]
        row_y = [sin + offset_y * tilt_x, cos + offset_y * tilt_y, -sin * centre_x - cos * centre_y + offset_y * k]
        transforms = tf.stack(row_x + row_y + [tilt_x, tilt_y], axis=1) / k[:, None]
        border = border_colour(images)
        moved = tf.raw_ops.ImageProjectiveTransformV3(
            images=images - border, transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
        return tf.clip_by_value(moved + border, 0, 255)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_turn_degrees": self.max_turn_degrees, "scale": list(self.scale),
                "shift": self.shift, "tilt": self.tilt}


def photo_augmenter(seed: int = 0, background_rate: float = 0.6, colour_cast: float = 0.3, tint: float = 0.1,
                    max_turn_degrees: float = 180.0) -> keras.Sequential:
    """The augmentation applied afresh to every picture each time training sees it (``training/finetune.py``):
    a phone photo's geometry (``RandomCameraGeometry``: turn, scale, shift, tilt, border-colour corners),
    light (uneven, white balance and tint, brightness, contrast, saturation), blur, sensor noise and JPEG.
    ``background_rate``: how often the surface around the coin is replaced (``RandomBackground``) — catalogue
    faces, shot on plain studio backgrounds, want it; real photos, which have real tables, take 0."""
    layers = [RandomBackground(rate=background_rate, seed=seed + 1)] if background_rate > 0 else []
    layers += [
        RandomCameraGeometry(max_turn_degrees, seed=seed + 2),
        RandomUnevenLight(seed=seed + 3),
        RandomColorTemperature(colour_cast, tint, seed=seed + 4),
        keras.layers.RandomBrightness(0.3, value_range=(0, 255), seed=seed + 5),
        keras.layers.RandomContrast(0.35, value_range=(0, 255), seed=seed + 6),
        keras.layers.RandomSaturation((0.25, 0.75), value_range=(0, 255), seed=seed + 7),
        keras.layers.RandomGaussianBlur(factor=0.6, sigma=(0.1, 2.0), value_range=(0, 255), seed=seed + 8),
        RandomSensorNoise(10.0, seed=seed + 9),
        RandomJpegQuality(25, 95, rate=0.6, seed=seed + 10),
    ]
    return keras.Sequential(layers, name="photo_augmenter")


def coin_augmenter(seed: int = 0, phone_conditions: bool = True, colour_cast: float = 0.15,
                   tint: float = 0.0, max_turn_degrees: float = 180.0) -> keras.Sequential:
    """The training augmentation. ``phone_conditions`` adds what the catalogue pictures lack
    (backgrounds, tilt, uneven light, colour cast, JPEG) on top of the geometric and photometric basics;
    ``colour_cast`` and ``tint``: the white-balance range (``RandomColorTemperature``); ``max_turn_degrees``:
    how far a view may be turned either way (180: any angle; less keeps the catalogue's upright pictures
    near upright, for a model that is shown a photo turned several ways at test time instead)."""
    if not 0 <= max_turn_degrees <= 180:
        raise ValueError(f"max_turn_degrees must be within 0..180, got {max_turn_degrees}")
    layers = []
    if phone_conditions:
        layers.append(RandomBackground(seed=seed + 1))
    # turn, zoom (in by up to a quarter, out by up to 15%), shift and, for phone conditions, tilt, with
    # border-colour corners (these views once had mirrored corners, slivers of reflected coin)
    layers.append(RandomCameraGeometry(max_turn_degrees, scale=(0.87, 1.25), shift=0.06,
                                       tilt=0.12 if phone_conditions else 0.0, seed=seed + 2))
    if phone_conditions:
        layers += [
            RandomUnevenLight(seed=seed + 6),
            RandomColorTemperature(colour_cast, tint, seed=seed + 7),
        ]
    layers += [
        keras.layers.RandomBrightness(0.25, value_range=(0, 255), seed=seed + 8),
        keras.layers.RandomContrast(0.3, value_range=(0, 255), seed=seed + 9),
        keras.layers.RandomSaturation((0.3, 0.7), value_range=(0, 255), seed=seed + 10),
        keras.layers.RandomGaussianBlur(factor=0.6, sigma=(0.1, 1.6), value_range=(0, 255), seed=seed + 11),
        RandomSensorNoise(seed=seed + 12),
    ]
    if phone_conditions:
        layers.append(RandomJpegQuality(seed=seed + 13))
    return keras.Sequential(layers, name="coin_augmenter")
