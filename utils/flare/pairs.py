"""One training or test pair, from its split, index and the run's seed: scene source, gamma, scene, flare.

Every pair draws from its own random stream, ``default_rng([seed, split, index])``, so a pair
is the same whichever worker makes it and in whatever order; training and test streams differ
in their split number, so no procedural scene is shared between them. A ``FlareJob`` holds what
every pair of a data set shares: where its scenes come from and their size (``SceneSettings``),
the PSF bank, the masks and the share of flare-free training pairs.

The options that make pairs look like phone photographs at night draw from streams of their own,
``part_rng`` (the pair's seed and a number per part: more lamps, phone flare, night camera), so
that turning one on changes only what it adds: the same scene, lights and lens flare otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.flare.bank import PSFBank
from utils.flare.composite import GAMMA_RANGE, FlarePair, PairOptions, synthesize
from utils.flare.light_sources import Lights
from utils.flare.night import draw_night_look
from utils.flare.phone import add_lamps, draw_phone_flare
from utils.flare.scenes import Source, load_photo, make_scene, pick_source, read_user_image

SPLITS = {"train": 0, "test": 1}
PARTS = {"lamps": 1, "phone": 2, "night": 3}  # the streams of the options (``part_rng``)


@dataclass(frozen=True)
class SceneSettings:
    """What every clean scene of a data set shares: the seed, the size, and where the scenes come from."""

    seed: int
    height: int
    width: int
    user: dict[str, list[Path]] | None = None  # a user's images per split (``--scenes``); None: the built-in sources
    photos: dict[str, np.ndarray] | None = None  # the built-in photographs, loaded once (else read for each pair)
    more_photos: bool = False  # also the photographs of ``MORE_PHOTOS`` (``--more_photos``)
    phone_lamps: bool = False  # 1-4 more lamps of street colours (``phone.add_lamps``, with ``--phone_flare``)


@dataclass(frozen=True)
class PairScene:
    """One pair's clean scene in linear light, its lights, gamma and source, and the pair's random stream as the
    flare goes on to draw from it."""

    linear: np.ndarray  # (H, W, 3) float32, without the lights' emission
    lights: Lights
    gamma: float
    source: Source
    rng: np.random.Generator


@dataclass(frozen=True)
class FlareJob:
    """What every pair of a data set is made from: its scenes, the PSF bank, whether each pair gets its masks, the
    share of training pairs made without flare (``is_flare_free``), and whether each pair gets a phone's streaks
    and glow (``--phone_flare``) and the night camera (``--night``)."""

    scenes: SceneSettings
    bank: PSFBank
    masks: bool = False
    clean_share: float = 0.0
    phone_flare: bool = False
    night: bool = False


def pair_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], index])


def part_rng(seed: int, split: str, index: int, part: str) -> np.random.Generator:
    """The random stream of one option (``PARTS``) of one pair, independent of the pair's own stream."""
    return np.random.default_rng([seed, SPLITS[split], index, PARTS[part]])


def pair_scene(scenes: SceneSettings, split: str, index: int) -> PairScene:
    """The clean scene of pair ``index`` of ``split``, drawn from the start of the pair's own random stream."""
    rng = pair_rng(scenes.seed, split, index)
    source = pick_source(split, rng, scenes.user, scenes.more_photos)
    image = None
    if source.kind == "photo":
        photos = scenes.photos
        image = photos[source.name] if photos and source.name in photos else load_photo(source.name)
    elif source.kind == "user":
        image = read_user_image(source.name)
        if image is None:
            raise OSError(f"{source.name} could no longer be decoded")
    gamma = float(rng.uniform(*GAMMA_RANGE))
    linear, lights = make_scene(source, image, scenes.height, scenes.width, gamma, rng)
    if scenes.phone_lamps:
        add_lamps(lights, part_rng(scenes.seed, split, index, "lamps"))
    return PairScene(linear, lights, gamma, source, rng)


def flare_free_count(count: int, share: float) -> int:
    """How many of the first ``count`` training pairs are flare-free: ``count * share`` rounded down, where a product
    that falls a rounding error short of a whole number (100 * 0.29) counts as that number."""
    return int(count * share + 1e-9)


def is_flare_free(index: int, share: float) -> bool:
    """Whether training pair ``index`` is made without flare, for a ``share`` of flare-free pairs spread evenly over
    the indices (pair i where ``flare_free_count`` steps up from i to i + 1): exactly ``flare_free_count`` of any
    first pairs, without a random draw, so the flared pairs stay the same whatever the share."""
    return flare_free_count(index + 1, share) > flare_free_count(index, share)


def make_pair(job: FlareJob, split: str, index: int) -> tuple[FlarePair, Source]:
    """The pair ``index`` of ``split`` and where its scene came from; the ``job.clean_share`` of the training pairs
    (never test pairs) are flare-free (``is_flare_free``)."""
    scene = pair_scene(job.scenes, split, index)
    with_flare = split != "train" or not is_flare_free(index, job.clean_share)
    seed = job.scenes.seed
    phone = draw_phone_flare(part_rng(seed, split, index, "phone")) if job.phone_flare else None
    night = draw_night_look(part_rng(seed, split, index, "night")) if job.night else None
    options = PairOptions(masks=job.masks, with_flare=with_flare, phone=phone, night=night)
    return synthesize(scene.linear, scene.lights, job.bank, scene.gamma, scene.rng, options), scene.source
