"""restore.py's settings: how a photo is restored, where the result goes, and the local web page's limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.checkpoint import REPO, STARTER
from utils.core.errors import fail
from utils.core.settings import Allowed, Form, setting


@dataclass(frozen=True)
class PhotoSettings:
    """How restore.py, the web page and ``restore_image`` restore a photo: the photo defaults of test.py's
    options (the starter model, a working size, window-blended tiles at half overlap)."""

    weights: str = setting(str(STARTER), "the checkpoint (found in the current folder, else in the repository)")
    work_size: int = setting(
        1024,
        "restore a copy whose long side is at most this many pixels and apply its upsampled correction to the "
        "full-size photo, so that glare has the size the model learned; 0 = restore at full size (slow)",
        Allowed(minimum=0),
    )
    keep_lights: bool = setting(
        True,
        "blend the photo's clipped light cores back into the result, so that lamps keep their brightness and "
        "colour (the starter alone keeps about 96% of a lamp's brightness but turns warm lamps whiter)",
    )
    lamp_edge: float = setting(
        0.4,
        "the soft edge around each light core blended back, as a share of that core's diameter (of a disc of its "
        "area, at most 4 times its thickness; at least 4 pixels per 1,024 of the long side): narrower removes "
        "more of the glow next to a lamp but shows the clipped region's ragged outline",
        Allowed(minimum=0, maximum=4),
    )
    darken_only: bool = setting(
        True,
        "never make a pixel brighter than the photo's: flare only adds light, so what the model adds is a colour "
        "shift, dropped",
    )
    floor_radius: float = setting(
        0.04,
        "never make a pixel darker than about the darkest of the photo within this share of the long side around "
        "it (a smoothed floor), so that removing glare leaves far fewer dark rings around lamps; 0 = off",
        Allowed(minimum=0, maximum=1),
    )
    min_change: float = setting(
        4.0,
        "leave a pixel as it is where the model changes it by less than this many 8-bit levels and make every "
        "larger change smaller by as much: far from the lights the photo stays the photo; 0 = off",
        Allowed(minimum=0, maximum=255),
    )
    light_reach: float = setting(
        0.12,
        "keep the model's changes only near the photo's clipped lights: in full up to half this share of the "
        "long side from a light, none beyond it (glare lives around lights; the model leaves a photo without "
        "clipped lights alone); 0 = everywhere",
        Allowed(minimum=0, maximum=2),
    )
    quality: int = setting(95, "JPEG, WebP and HEIC quality of the written photos", Allowed(minimum=1, maximum=100))
    max_megapixels: float = setting(
        50.0, "refuse larger photos (memory: about 0.25 GB per megapixel)", Allowed(positive=True, maximum=178)
    )
    device: str = setting("auto", "auto (CUDA if available), cpu, cuda or cuda:N")


@dataclass(frozen=True)
class PhotoOutput:
    """Where restore.py writes: beside each photo, or into one folder."""

    output: str | None = setting(
        None, "write the restored photos into this folder", form=Form(shown="beside each photo, as NAME_restored.EXT")
    )
    overwrite: bool = setting(False, "replace restored photos written earlier (never any other file)")
    progress: bool = setting(True, "no progress bar or progress lines")


@dataclass(frozen=True)
class PageSettings:
    """The local web page of ``restore.py --serve``: where it listens and what it accepts."""

    serve: bool = setting(False, "start the local web page instead of restoring the files given")
    host: str = setting("127.0.0.1", "the address the page listens on; another than this machine's only if you must")
    port: int = setting(7860, "the page's port (0: any free one)", Allowed(minimum=0, maximum=65535))
    max_upload_mb: float = setting(40.0, "largest photo the page accepts, in MB", Allowed(positive=True))
    max_photos: int = setting(20, "restored photos the page keeps; older ones are removed", Allowed(minimum=1))


PHOTO_SETTINGS = (PhotoSettings, PhotoOutput, PageSettings)  # restore.py's flags, in this order


def find_weights(weights: str | Path) -> Path:
    """The checkpoint ``weights`` names: a file in the current folder, else one in the repository (so that the
    shipped starter model is found from any folder); refused in one sentence that names where it looked."""
    if not str(weights).strip():
        fail("--weights is empty; leave it out to use the shipped starter model, or give a checkpoint file.")
    given = Path(weights)
    for candidate in (given, REPO / given):
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            fail(f"--weights {weights} is a folder; give a checkpoint file in it, such as {given / '256_best.pth'}.")
    if given == STARTER:
        fail(f"the shipped starter model {REPO / STARTER} is missing; bring it back with git checkout {STARTER}.")
    places = f"{given.resolve()}" + ("" if given.is_absolute() else f" or {REPO / given}")
    fail(
        f"--weights {weights} does not exist (looked for {places}); without --weights restore.py uses the shipped "
        f"starter model {REPO / STARTER}."
    )
