"""Procedural night scenes drawn from a seed, in linear light, each with its lights.

Three kinds: a street in perspective (sky, buildings with lit windows and signs on the horizon,
the road with lamp posts, the pools of their light and cars' head- and tail-lights), a facade
filling the frame (a grid of windows, some lit, shop signs, a lamp in front) and trees against a
dusky sky (a moon perhaps, distant city lights, lamps among the trees). Every surface gets a
smooth random texture at two scales and the edges are softened a little, as a lens would.
"""

from __future__ import annotations

import cv2
import numpy as np

from utils.flare.light_sources import Light, Lights, lamp, lamp_intensity, light_colour, sign, window

PROCEDURAL_KINDS = ("street", "facade", "trees")


def _texture(height: int, width: int, rng: np.random.Generator, cells: int, amount: float) -> np.ndarray:
    """(H, W) float32 around 1: smooth random variation at about ``cells`` cells across the longer side."""
    gh = max(2, int(cells * height / max(height, width)))
    gw = max(2, int(cells * width / max(height, width)))
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    return 1 + amount * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _sky(height: int, width: int, horizon: float, rng: np.random.Generator) -> np.ndarray:
    """A night sky: deep blue at the top, an orange-grey city glow near the horizon."""
    top = np.array([0.001, 0.0015, 0.006], np.float32) * rng.uniform(0.5, 2.0)
    glow = np.array([0.02, 0.013, 0.008], np.float32) * rng.uniform(0.3, 2.0)
    y = np.clip(np.arange(height, dtype=np.float32) / max(horizon, 1), 0, 1)[:, None, None] ** 2.5
    sky = top + (glow - top) * y
    return np.broadcast_to(sky, (height, width, 3)).copy()


def _stars(scene: np.ndarray, below: int, rng: np.random.Generator) -> None:
    height, width = scene.shape[:2]
    count = int(rng.integers(0, 60))
    ys, xs = rng.integers(0, max(1, below), count), rng.integers(0, width, count)
    scene[ys, xs] += rng.uniform(0.01, 0.08, (count, 1)).astype(np.float32)


def _pool(scene: np.ndarray, light: Light, ry: float, rx: float) -> None:
    """A pool of lamp light on the ground: an elliptical Gaussian of radii ``ry``, ``rx`` and peak ``light.intensity``
    added to the scene (in a window around it)."""
    height, width = scene.shape[:2]
    cy, cx = light.cy, light.cx
    y0, y1 = max(0, int(cy - 3 * ry)), min(height, int(cy + 3 * ry) + 1)
    x0, x1 = max(0, int(cx - 3 * rx)), min(width, int(cx + 3 * rx) + 1)
    if y1 <= y0 or x1 <= x0:
        return
    yy = ((np.arange(y0, y1, dtype=np.float32) - cy) / max(ry, 1))[:, None]
    xx = ((np.arange(x0, x1, dtype=np.float32) - cx) / max(rx, 1))[None, :]
    scene[y0:y1, x0:x1] += (light.intensity * np.exp(-0.5 * (yy * yy + xx * xx)))[..., None] * light.colour


def _building_row(scene: np.ndarray, lights: Lights, base: float, rng: np.random.Generator, unit: float) -> None:
    """Buildings standing on the line y=``base``: dark blocks with rows of windows, some lit, a few signs."""
    height, width = scene.shape[:2]
    x = -rng.uniform(0, 0.1) * width
    while x < width:
        bw = rng.uniform(0.08, 0.3) * width
        bh = rng.uniform(0.15, 0.6) * base
        top = int(base - bh)
        wall = np.array([0.006, 0.005, 0.005], np.float32) * rng.uniform(0.4, 2.0)
        x0, x1 = int(max(x, 0)), int(min(x + bw, width))
        scene[max(top, 0) : int(base), x0:x1] = wall
        win_h, win_w = unit * rng.uniform(0.012, 0.03), unit * rng.uniform(0.01, 0.025)
        gap_y, gap_x = win_h * rng.uniform(2.2, 3.5), win_w * rng.uniform(2.0, 3.5)
        lit_share = rng.uniform(0.15, 0.6)
        warm = light_colour(rng)
        for wy in np.arange(top + gap_y, base - gap_y / 2, gap_y):
            for wx in np.arange(x + gap_x, x + bw - gap_x / 2, gap_x):
                if wx < 0 or wx > width:
                    continue
                if rng.random() < lit_share:
                    colour = warm if rng.random() < 0.7 else light_colour(rng)
                    light = Light(wy, wx, rng.uniform(0.4, 2.0), colour)
                    window(lights, light, win_h / 2, win_w / 2, rng.random() < 0.3)
                else:
                    scene[
                        int(wy - win_h / 2) : int(wy + win_h / 2), int(max(wx - win_w / 2, 0)) : int(wx + win_w / 2)
                    ] = wall * 0.5 + np.array([0.002, 0.003, 0.006], np.float32)
        if rng.random() < 0.3:
            cy, length = base - rng.uniform(0.05, 0.4) * bh, bw * rng.uniform(0.3, 0.7)
            sign(lights, Light(cy, x + bw / 2, rng.uniform(4, 25), light_colour(rng, neon=True)), length,
                 max(1.0, unit * 0.004), rng)  # fmt: skip
        x += bw + rng.uniform(0, 0.05) * width


def street(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, Lights]:
    """A street in perspective: sky, buildings on the horizon, the road with lamp posts, their light on it, cars."""
    unit = min(height, width)
    horizon = rng.uniform(0.35, 0.55) * height
    vx = rng.uniform(0.3, 0.7) * width
    scene = _sky(height, width, horizon, rng)
    _stars(scene, int(horizon * 0.6), rng)
    lights = Lights.empty(height, width)
    _building_row(scene, lights, horizon, rng, unit * 0.6)
    ground = np.array([0.006, 0.0055, 0.005], np.float32) * rng.uniform(0.5, 2.0)
    scene[int(horizon) :] = ground
    road = np.array([[vx - 2, horizon], [vx + 2, horizon], [width * rng.uniform(0.85, 1.3), height],
                     [width * rng.uniform(-0.3, 0.15), height]], np.int32)  # fmt: skip
    cv2.fillPoly(scene, [road], (ground * 0.7).tolist())
    for t in np.linspace(0.1, 0.9, 8):  # lane dashes, receding
        y = horizon + (height - horizon) * t**1.5
        half = 0.004 * width * (y - horizon) / (height - horizon) + 1
        cv2.rectangle(scene, (int(vx - half), int(y)), (int(vx + half), int(y + 3 * half)), (0.03, 0.03, 0.028), -1)
    colour = light_colour(rng)
    for side in (-1, 1):
        if rng.random() < 0.15:
            continue
        foot_x = vx + side * width * rng.uniform(0.45, 0.8)
        for t in sorted(rng.uniform(0.0, 1.0, int(rng.integers(2, 6)))):
            s = 0.08 + 0.92 * t  # nearer posts are larger
            px = vx + (foot_x - vx) * s
            py = horizon + (height - horizon) * s * 0.85
            pole = unit * 0.45 * s
            cv2.line(scene, (int(px), int(py)), (int(px), int(py - pole)), (0.004, 0.004, 0.004),
                     max(1, int(unit * 0.006 * s)))  # fmt: skip
            head_x = px - side * pole * 0.12
            lamp(lights, Light(py - pole, head_x, lamp_intensity(rng), colour), max(1.0, unit * 0.012 * s))
            _pool(scene, Light(py, head_x, rng.uniform(0.02, 0.15), colour), unit * 0.05 * s, unit * 0.15 * s)
    for _ in range(int(rng.integers(0, 4))):  # cars: pairs of head- or tail-lights
        t = rng.uniform(0.15, 0.9)
        y = horizon + (height - horizon) * t
        x = vx + (rng.uniform(-0.5, 0.5) * width) * t
        gap = unit * 0.06 * t
        tail = rng.random() < 0.5
        tint = np.array([1.0, 0.08, 0.05], np.float32) if tail else light_colour(rng)
        for dx in (-gap, gap):
            light = Light(y, x + dx, lamp_intensity(rng) * (0.3 if tail else 1), tint)
            lamp(lights, light, max(1.0, unit * 0.007 * t))
    return scene, lights


def facade(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, Lights]:
    """A building front filling the frame: a grid of windows (some lit), shop signs below, a lamp in front."""
    unit = min(height, width)
    scene = _sky(height, width, height * rng.uniform(0.05, 0.3), rng)
    lights = Lights.empty(height, width)
    roof = int(rng.uniform(0.0, 0.25) * height)
    wall = np.array([0.012, 0.008, 0.006], np.float32) * rng.uniform(0.4, 2.0)
    scene[roof:] = wall
    rows, cols = int(rng.integers(3, 8)), int(rng.integers(3, 9))
    cell_h, cell_w = (height * 0.8 - roof) / rows, width / cols
    lit_share = rng.uniform(0.2, 0.7)
    warm = light_colour(rng)
    for r in range(rows):
        for c in range(cols):
            cy, cx = roof + (r + 0.5) * cell_h, (c + 0.5) * cell_w
            hh, hw = cell_h * rng.uniform(0.22, 0.32), cell_w * rng.uniform(0.2, 0.3)
            if rng.random() < lit_share:
                colour = warm if rng.random() < 0.75 else light_colour(rng)
                window(lights, Light(cy, cx, rng.uniform(0.3, 1.6), colour), hh, hw, bool(rng.random() < 0.6))
            else:
                scene[int(cy - hh) : int(cy + hh), int(cx - hw) : int(cx + hw)] = [0.002, 0.0025, 0.005]
    street_y = int(height * 0.8)
    scene[street_y:] = np.array([0.005, 0.005, 0.005], np.float32) * rng.uniform(0.5, 2.0)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = street_y - rng.uniform(0.02, 0.1) * height, rng.uniform(0.1, 0.9) * width
        length = unit * rng.uniform(0.1, 0.3)
        light = Light(cy, cx, rng.uniform(5, 30), light_colour(rng, neon=bool(rng.random() < 0.7)))
        sign(lights, light, length, max(1.0, unit * 0.005), rng)
    if rng.random() < 0.7:
        x = rng.uniform(0.1, 0.9) * width
        colour = light_colour(rng)
        cy, radius = height * rng.uniform(0.35, 0.6), unit * rng.uniform(0.01, 0.02)
        lamp(lights, Light(cy, x, lamp_intensity(rng), colour), radius)
        _pool(scene, Light(height * 0.9, x, rng.uniform(0.03, 0.15), colour), unit * 0.06, unit * 0.2)
    return scene, lights


def trees(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, Lights]:
    """Trees against a dusky sky: a moon perhaps, distant lights on the horizon, a few lamps among the trees."""
    unit = min(height, width)
    horizon = rng.uniform(0.55, 0.8) * height
    scene = _sky(height, width, horizon, rng)
    _stars(scene, int(horizon * 0.7), rng)
    lights = Lights.empty(height, width)
    if rng.random() < 0.6:
        moon = np.array([0.9, 0.95, 1.0], np.float32)
        cy, cx = rng.uniform(0.08, 0.35) * height, rng.uniform(0.1, 0.9) * width
        radius = unit * rng.uniform(0.02, 0.04)
        lamp(lights, Light(cy, cx, rng.uniform(3.0, 12.0), moon), radius)
    for _ in range(int(rng.integers(5, 25))):  # distant city lights
        cy, cx = horizon - rng.uniform(0, 0.02) * height, rng.uniform(0, width)
        lamp(lights, Light(cy, cx, rng.uniform(5.0, 60.0), light_colour(rng)), max(1.0, unit * 0.003))
    scene[int(horizon) :] = np.array([0.003, 0.004, 0.003], np.float32) * rng.uniform(0.5, 2.0)
    foliage = np.array([0.002, 0.003, 0.002], np.float32) * rng.uniform(0.5, 2.0)
    for _ in range(int(rng.integers(3, 9))):
        x = rng.uniform(0, width)
        base = horizon + rng.uniform(0, 0.15) * height
        crown = unit * rng.uniform(0.08, 0.2)
        cv2.line(scene, (int(x), int(base)), (int(x), int(base - crown * 1.5)), (foliage * 0.8).tolist(),
                 max(1, int(crown * 0.12)))  # fmt: skip
        for _ in range(int(rng.integers(4, 10))):
            cy = base - crown * 1.6 + rng.normal(0, crown * 0.4)
            cx = x + rng.normal(0, crown * 0.5)
            axes = (int(crown * rng.uniform(0.3, 0.7)), int(crown * rng.uniform(0.3, 0.6)))
            cv2.ellipse(scene, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, foliage.tolist(), -1)
    for _ in range(int(rng.integers(0, 4))):
        colour = light_colour(rng)
        x, y = rng.uniform(0.05, 0.95) * width, horizon - rng.uniform(0.05, 0.3) * height
        radius = unit * rng.uniform(0.006, 0.014)
        lamp(lights, Light(y, x, lamp_intensity(rng), colour), radius)
    return scene, lights


def procedural_scene(kind: str, height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, Lights]:
    """(scene, lights) of a procedural night scene of ``kind``, with surface texture, edges softened."""
    scene, lights = {"street": street, "facade": facade, "trees": trees}[kind](height, width, rng)
    scene *= _texture(height, width, rng, 24, 0.25)[..., None]
    scene *= _texture(height, width, rng, 160, 0.12)[..., None]
    scene = cv2.GaussianBlur(np.clip(scene, 0, None), (0, 0), 0.6)
    return scene, lights
