"""What ``scripts.flare_data`` makes (``FlareDataSettings``, its flags) and the checks that run before any work.

Each field is one flag with its default, range and help; the parser, the range checks, ``--help``
and the flag table of docs/flags.md follow from the fields (``utils.core.settings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from utils.core.errors import fail
from utils.core.settings import Allowed, Form, flag_fields, setting
from utils.flare.bank import BankSettings
from utils.flare.pairs import flare_free_count

MAX_COUNT = 10000  # names run from 10000 (train) and 20000 (test), five digits each
MAX_SIDE = 8192
MIN_GRID, MAX_GRID = 64, 4096  # the PSFs' FFT grid: at 4096, about 40 s and 1 GB per PSF on one core
MIN_PSF_SIZE = 16
_BANK = BankSettings()


@dataclass(frozen=True)
class FlareDataSettings:
    """What the flare data set is made of and where it goes; every field is a flag of ``scripts.flare_data``."""

    root: str | Path = setting("data", "data folder to fill (the contest layout)")
    train_count: int = setting(12, "training pairs", Allowed(2, MAX_COUNT))
    test_count: int = setting(4, "test pairs", Allowed(1, MAX_COUNT))
    height: int = setting(576, "image height; the contest's are 1224 and 2448", Allowed(64, MAX_SIDE))
    width: int = setting(768, "image width; the contest's are 1632 and 3264", Allowed(64, MAX_SIDE))
    seed: int = setting(0, "the same seed gives the same files", Allowed(0, 2**32 - 1))
    workers: int = setting(2, "worker processes", Allowed(1, 256))
    masks: bool = setting(False, "also write glare and streak masks of each input")
    scenes: str | Path | None = setting(
        None, "folder of your own clean photographs to use as scenes", form=Form(shown="none")
    )
    clean_share: float = setting(
        0.0,
        "share of the training pairs made without flare (input = target + sensor noise), from 0 to below 1, spread "
        "evenly, so that a model also sees lamps with nothing to remove",
    )
    more_photos: bool = setting(
        False, "also use the photographs that scikit-learn and matplotlib ship as scenes (docs/flare.md)"
    )
    phone_flare: bool = setting(
        False, "phone flare: 1-4 more street-coloured lamps, long thin streaks and large soft glows"
    )
    night: bool = setting(
        False,
        "night camera: per-pair exposure, white balance cast, sensor noise and JPEG, the same on input and target",
    )
    psf_count: int = setting(_BANK.count, "PSFs in the bank", Allowed(1, 1024))
    psf_grid: int = setting(_BANK.grid, "FFT grid of the PSFs, a power of two", Allowed(MIN_GRID, MAX_GRID))
    psf_size: int = setting(
        _BANK.size, "side of a stored PSF in pixels, at most --psf_grid", Allowed(MIN_PSF_SIZE, MAX_GRID)
    )
    overwrite: bool = setting(False, "replace an earlier data set of this project and its patches")
    progress: bool = setting(True, "hide the progress bars")

    def bank(self) -> BankSettings:
        """The PSF bank these settings ask for (with the seed, it names the bank's cache file)."""
        return BankSettings(count=self.psf_count, grid=self.psf_grid, size=self.psf_size)


def check_settings(settings: FlareDataSettings) -> None:
    """Each number within its range, the PSF grid a power of two that holds the stored PSF, and a ``--clean_share``
    that leaves pairs with flare and makes some without; the first that is not is one sentence."""
    for f in flag_fields(FlareDataSettings):
        low, high, value = f.metadata["minimum"], f.metadata["maximum"], getattr(settings, f.name)
        if high is not None and not low <= value <= high:
            fail(f"--{f.name} must be {low} to {high} (got {value}).")
    grid, train_count, share = settings.psf_grid, settings.train_count, settings.clean_share
    if grid & (grid - 1):
        fail(f"--psf_grid must be a power of two from {MIN_GRID} to {MAX_GRID} (got {grid}).")
    if settings.psf_size > grid:
        fail(f"--psf_size must be {MIN_PSF_SIZE} to --psf_grid ({grid}) pixels (got {settings.psf_size}).")
    if not 0 <= share < 1:
        fail(f"--clean_share must be from 0 to below 1 (got {share!r}).")
    free = flare_free_count(train_count, share)
    if train_count - free < 2:
        fail(f"--clean_share {share!r} leaves {train_count - free} of {train_count} training pairs with flare; "
             f"at least two are needed: lower it or raise --train_count.")  # fmt: skip
    if share > 0 and free == 0:
        fail(f"--clean_share {share!r} of {train_count} training pairs makes none without flare; "
             f"raise it to at least 1/{train_count}, or leave it out.")  # fmt: skip
