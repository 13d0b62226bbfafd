"""A bank of lens PSFs (``utils.flare.psf``), computed in worker processes and cached on disk.

``BankSettings`` says what a bank is made of: the number of PSFs, the FFT grid (1024), the
stored side (384), the wavelengths (25) and the apertures' size and defocus. With the seed it
names the bank's cache file, so a bank is computed once per settings and seed. Each PSF is kept
as the fourth root of its peak-normalised values in float16, about 37 MB compressed for 64 PSFs:
the fourth root keeps their faint tails (1e-9 of the peak) from float16 under-flow. The cache
file is written atomically. A cache file is checked before use (shapes, types, finite values in
[0, 1], each PSF's peak at 1 and every channel a PSF that sums to 1): one that fails, damaged or
foreign, is computed again and replaced, with a warning, since it holds nothing that cannot be
made again from the settings and the seed; something else at its name (a folder, a symbolic
link) is not the project's to replace, and stops the run.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from utils.core.errors import fail
from utils.core.locks import atomic_path
from utils.flare.psf import APERTURE_THUMB, aperture_thumbnail, random_aperture, shrink, spectral_psf
from utils.flare.spectrum import wavelengths

_FORMAT = 1


@dataclass(frozen=True)
class BankSettings:
    """What a PSF bank is made of; with the seed, it names the bank's cache file."""

    count: int = 64
    grid: int = 1024
    size: int = 384
    wavelengths: int = 25
    pupil_fraction: float = 0.22  # pupil radius over the grid side
    max_defocus: float = 0.6  # waves at 540 nm

    def key(self, seed: int) -> str:
        text = json.dumps({"format": _FORMAT, "seed": int(seed), **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_entry(settings: BankSettings, seed: int, index: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The ``index``-th PSF of the bank for ``seed``: (fourth root in float16, aperture thumbnail, info)."""
    rng = np.random.default_rng([seed, 0x50534620, index])
    aperture = random_aperture(settings, rng)
    psf = shrink(spectral_psf(aperture, wavelengths(settings.wavelengths)), settings.size)
    root = np.sqrt(np.sqrt(psf / psf.max()))
    return root.astype(np.float16), aperture_thumbnail(aperture), (aperture.sides, aperture.defocus)


class PSFBank:
    """RGB PSFs stored compactly; ``psf(i)`` gives a float32 (size, size, 3) PSF whose channels sum to 1."""

    def __init__(self, roots: np.ndarray, apertures: np.ndarray, sides: np.ndarray, defocus: np.ndarray) -> None:
        self.roots, self.apertures, self.sides, self.defocus = roots, apertures, sides, defocus

    def __len__(self) -> int:
        return len(self.roots)

    @property
    def size(self) -> int:
        return self.roots.shape[1]

    def psf(self, index: int) -> np.ndarray:
        x = self.roots[index].astype(np.float32)
        x = (x * x) ** 2
        return x / x.sum(axis=(0, 1))

    def aperture(self, index: int) -> np.ndarray:
        return self.apertures[index].astype(np.float32) / 255.0


def compute_bank(settings: BankSettings, seed: int, workers: int = 1, progress=None) -> PSFBank:
    """Compute every PSF of the bank (in ``workers`` processes); ``progress`` wraps the iterator of results."""
    entries: list = [None] * settings.count
    tasks = list(range(settings.count))
    if workers > 1 and settings.count > 1:
        from utils.core.workers import TaskFailed, run_tasks

        results = run_tasks(lambda i: make_entry(settings, seed, i), tasks, workers)
        for index, out in progress(results) if progress else results:
            if isinstance(out, TaskFailed):
                raise_if_memory(out)
                raise RuntimeError(f"PSF {index} failed: {out}")
            entries[index] = out
    else:
        for index in progress(tasks) if progress else tasks:
            entries[index] = make_entry(settings, seed, index)
    roots, thumbs, info = zip(*entries)
    info = np.array(info, np.float64)
    return PSFBank(np.stack(roots), np.stack(thumbs), info[:, 0].astype(np.int32), info[:, 1].astype(np.float32))


def cache_path(folder: str | Path, settings: BankSettings, seed: int) -> Path:
    return Path(folder) / f"psf_{settings.key(seed)}.npz"


def raise_if_memory(failure: str) -> None:
    """Raise MemoryError for a worker's failure that was one (``"MemoryError: ..."``, numpy's
    ``_ArrayMemoryError`` too), so that the caller reports it as memory, not as a bug."""
    kind, _, message = failure.partition(":")
    if kind.strip().endswith("MemoryError"):
        raise MemoryError(message.strip() or kind)


def valid_bank(bank: PSFBank, settings: BankSettings) -> bool:
    """Whether ``bank`` is one that ``compute_bank`` can have made for ``settings``: its shapes and types, finite
    fourth roots in [0, 1] with each PSF's peak at exactly 1 (as stored), and every channel of every PSF a finite
    PSF that sums to 1 (an all-zero channel would make NaN flare, and black inputs)."""
    n, s, t = settings.count, settings.size, APERTURE_THUMB
    roots = bank.roots
    shapes = (roots.shape, bank.apertures.shape, bank.sides.shape, bank.defocus.shape)
    if shapes != ((n, s, s, 3), (n, t, t), (n,), (n,)) or roots.dtype != np.float16:
        return False
    if bank.apertures.dtype != np.uint8 or bank.sides.dtype.kind not in "iu" or bank.defocus.dtype.kind != "f":
        return False
    if not (np.isfinite(roots).all() and np.isfinite(bank.defocus).all()):
        return False
    if roots.min() < 0 or (roots.reshape(n, -1).max(axis=1) != 1).any():
        return False
    return all(_sums_to_one(bank.psf(i)) for i in range(n))


def _sums_to_one(psf: np.ndarray) -> bool:
    with np.errstate(invalid="ignore", divide="ignore"):
        return bool(np.isfinite(psf).all() and np.allclose(psf.sum(axis=(0, 1)), 1, atol=1e-3))


def load_cached(path: Path, settings: BankSettings, seed: int) -> PSFBank | None:
    """The bank stored at ``path`` if it is a valid one (``valid_bank``) of these settings and seed, else None."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != settings.key(seed):
                return None
            bank = PSFBank(data["roots"], data["apertures"], data["sides"], data["defocus"])
    except (OSError, KeyError, ValueError, EOFError):
        return None
    return bank if valid_bank(bank, settings) else None


def load_or_compute(folder: str | Path, settings: BankSettings, seed: int, workers: int = 1, progress=None) -> PSFBank:
    """The bank for ``settings`` and ``seed``: from its cache file in ``folder`` if that is valid, else computed and
    cached there (written atomically, so that runs side by side never read a half-written file)."""
    path = cache_path(folder, settings, seed)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        fail(f"{path} is not a file of this project's PSF cache; move it away, then run again.")
    if path.exists():
        bank = load_cached(path, settings, seed)
        if bank is not None:
            return bank
        warnings.warn(
            f"{path} is not a valid PSF bank of these settings; computing it again to replace it", stacklevel=2
        )
    bank = compute_bank(settings, seed, workers, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh, key=np.array(settings.key(seed)), roots=bank.roots, apertures=bank.apertures,
            sides=bank.sides, defocus=bank.defocus,
        )  # fmt: skip
    return bank
