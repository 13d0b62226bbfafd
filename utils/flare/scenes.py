"""Clean night scenes in linear light, each with its lights: photographs made night-like, and procedural scenes.

Three sources, never shared between training and test pairs:

- ``PHOTOS``: the colour natural photographs that scikit-image ships, each with the licence its
  documentation states; some are kept for training, the others for test. ``MORE_PHOTOS``
  (``--more_photos``) adds the colour photographs that scikit-learn and matplotlib ship inside their
  wheels, again split between training and test.
- Procedural night scenes drawn from a seed (``utils.flare.procedural``: streets with lamp posts
  and cars, facades with lit windows and shop signs, trees against a dusky sky with a moon and
  distant lights). A pair's seed includes its split, so training and test scenes never come
  from the same seed.
- A user's own clean photographs (``--scenes DIR``), split by a seeded shuffle into a training
  and a test share.

A photograph is cropped to the output's aspect ratio at a random scale, flipped at random,
linearised with the pair's gamma, darkened to a night exposure with a slight blue tint and a
vignette; its own brightest small regions become lights (``light_sources.bright_regions``), and lamps,
windows and signs are painted on top (``light_sources.paint_lights``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.flare.light_sources import Lights, bright_regions, paint_lights
from utils.flare.procedural import PROCEDURAL_KINDS, procedural_scene

# name: (split, licence as scikit-image's documentation states it)
PHOTOS = {
    "astronaut": ("train", "NASA, public domain"),
    "chelsea": ("train", "Stefan van der Walt, CC0"),
    "rocket": ("train", "SpaceX, public domain"),
    "coffee": ("test", "Rachel Michetti (Pikolo Espresso Bar), CC0"),
    "hubble_deep_field": ("test", "NASA, public domain"),
}
# name: (split, source and licence as the shipping package's files or documentation state it); --more_photos
MORE_PHOTOS = {
    "china": ("train", "scikit-learn sample image china.jpg; danielbuechele on Flickr, CC BY 2.0"),
    "grace_hopper": ("train", "matplotlib sample data grace_hopper.jpg; U.S. Navy photograph, public domain"),
    "flower": ("test", "scikit-learn sample image flower.jpg; vultilion on Flickr, CC BY 2.0"),
}
MORE_PHOTO_FILES = {  # name: (package, file inside it), read without importing the package (scikit-learn takes seconds)
    "china": ("sklearn", "datasets/images/china.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}
PHOTO_SHARE = 0.4  # of the pairs drawn from the built-in sources, the share made from photographs


@dataclass(frozen=True)
class Source:
    """Where a pair's clean scene comes from: a built-in photo (name), a user's image (path) or a procedural kind."""

    kind: str  # "photo", "user" or "procedural"
    name: str


def photo_names(split: str, more: bool = False) -> list[str]:
    """The built-in photographs of ``split``: those of ``PHOTOS``, and with ``more`` those of ``MORE_PHOTOS`` after them."""
    table = {**PHOTOS, **MORE_PHOTOS} if more else PHOTOS
    return [name for name, (s, _) in table.items() if s == split]


def load_photo(name: str) -> np.ndarray:
    """A built-in photograph as 8-bit RGB, read from the package that ships it (nothing is downloaded)."""
    if name in MORE_PHOTO_FILES:
        package, path = MORE_PHOTO_FILES[name]
        spec = importlib.util.find_spec(package)
        image = None if spec is None or spec.origin is None else read_user_image(Path(spec.origin).parent / path)
        if image is None:
            raise OSError(f"the photograph {path} of the package {package} could not be read; reinstall {package}")
        return image
    from skimage import data

    img = np.asarray(getattr(data, name)())
    return np.ascontiguousarray(img[..., :3])


def read_user_image(path: str | Path) -> np.ndarray | None:
    """A user's image as 8-bit RGB, or None if it cannot be decoded (any bit depth or channel count is converted)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def gamma_table(gamma: float) -> np.ndarray:
    return ((np.arange(256, dtype=np.float64) / 255.0) ** gamma).astype(np.float32)


def crop_to(photo: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``photo`` with the output's aspect ratio (45-100 % of the largest), flipped at random,
    resized to (height, width)."""
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.45, 1.0)
    ch = max(2, int(min(ph, pw * height / width) * scale))
    cw = max(2, min(pw, int(round(ch * width / height))))
    top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = photo[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    shrinking = ch > height
    return cv2.resize(np.ascontiguousarray(crop), (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)  # fmt: skip


def vignette(height: int, width: int, strength: float) -> np.ndarray:
    y = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    return 1 - strength * (x * x + y * y) / 2


def photo_scene(photo: np.ndarray, height: int, width: int, gamma: float, rng: np.random.Generator):
    """(scene, lights): a photograph made night-like in linear light, its highlights and painted lights as lights."""
    crop = crop_to(photo, height, width, rng)
    linear = gamma_table(gamma)[crop]
    lights = Lights.empty(height, width)
    bright_regions(lights, linear, rng)
    exposure = rng.uniform(0.04, 0.22)
    tint = np.array([rng.uniform(0.7, 0.95), rng.uniform(0.85, 1.0), 1.0], np.float32)
    scene = linear * (exposure * tint)
    scene *= vignette(height, width, rng.uniform(0.1, 0.5))[..., None]
    paint_lights(lights, rng)
    return scene, lights


def make_scene(source: Source, image: np.ndarray | None, height: int, width: int, gamma: float,
               rng: np.random.Generator) -> tuple[np.ndarray, Lights]:  # fmt: skip
    """The pair's clean scene (H, W, 3) float32 in linear light, and its lights."""
    if source.kind == "procedural":
        return procedural_scene(source.name, height, width, rng)
    return photo_scene(image, height, width, gamma, rng)


def split_user_images(paths: list[Path], train_count: int, test_count: int, seed: int) -> dict[str, list[Path]]:
    """A seeded shuffle of the user's images, cut into a training and a test share (each at least one image)."""
    order = np.random.default_rng([seed, 0x5343]).permutation(len(paths))
    n_test = min(len(paths) - 1, max(1, int(round(len(paths) * test_count / (train_count + test_count)))))
    shuffled = [paths[k] for k in order]
    return {"test": sorted(shuffled[:n_test]), "train": sorted(shuffled[n_test:])}


def pick_source(split: str, rng: np.random.Generator, user: dict[str, list[Path]] | None = None,
                more_photos: bool = False) -> Source:  # fmt: skip
    """The scene source of one pair of ``split``: a user's image if any were given, else a built-in photo
    of that split (``PHOTO_SHARE`` of the time; ``more_photos``: from ``MORE_PHOTOS`` too) or a procedural scene.
    The same draws are made either way, so the photographs widen the choice and change nothing else."""
    if user is not None:
        paths = user[split]
        return Source("user", str(paths[int(rng.integers(len(paths)))]))
    names = photo_names(split, more_photos)
    if names and rng.random() < PHOTO_SHARE:
        return Source("photo", names[int(rng.integers(len(names)))])
    return Source("procedural", PROCEDURAL_KINDS[int(rng.integers(len(PROCEDURAL_KINDS)))])
