"""A Fruits-360-like tree of synthetic photos: <root>/<Label>/r_<n>_100.jpg.

Each label is a fruit-coloured shape on white, 100x100 RGB, with per-image jitter in size,
position, rotation and shade, so labels form clusters without being identical.
Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIDE = 100


@dataclass(frozen=True)
class FruitStyle:
    label: str
    colour: tuple[int, int, int]
    shape: str  # "round", "long" or "small"


DEFAULT_FRUITS = (
    FruitStyle("Apple Red 1", (190, 30, 40), "round"),
    FruitStyle("Banana", (235, 205, 50), "long"),
    FruitStyle("Blueberry", (60, 70, 140), "small"),
    FruitStyle("Kiwi", (120, 95, 50), "round"),
    FruitStyle("Lime", (110, 190, 60), "round"),
    FruitStyle("Cactus fruit red 1", (200, 60, 110), "long"),
)


def _jitter(rng: random.Random, value: int, spread: int) -> int:
    return max(0, min(255, value + rng.randint(-spread, spread)))


def draw_fruit(style: FruitStyle, rng: random.Random) -> Image.Image:
    """One 100x100 RGB picture of `style` on a white background."""
    canvas = Image.new("RGB", (IMAGE_SIDE * 2, IMAGE_SIDE * 2), "white")
    draw = ImageDraw.Draw(canvas)
    colour = tuple(_jitter(rng, c, 25) for c in style.colour)
    centre = IMAGE_SIDE + rng.randint(-12, 12), IMAGE_SIDE + rng.randint(-12, 12)
    if style.shape == "long":
        half_w, half_h = rng.randint(22, 30), rng.randint(60, 78)
    elif style.shape == "small":
        half_w = half_h = rng.randint(28, 40)
    else:
        half_w, half_h = rng.randint(55, 72), rng.randint(52, 70)
    box = (centre[0] - half_w, centre[1] - half_h, centre[0] + half_w, centre[1] + half_h)
    draw.ellipse(box, fill=colour)
    highlight = tuple(min(255, c + 60) for c in colour)
    draw.ellipse(
        (
            box[0] + half_w // 3,
            box[1] + half_h // 4,
            box[0] + half_w // 2 + 8,
            box[1] + half_h // 2,
        ),
        fill=highlight,
    )
    picture = canvas.rotate(rng.uniform(0, 360), fillcolor="white", resample=Image.BILINEAR)
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    return picture.resize((IMAGE_SIDE, IMAGE_SIDE))


def generate_images(
    root: Path, count: int, seed: int = 0, fruits: tuple[FruitStyle, ...] = DEFAULT_FRUITS
) -> list[Path]:
    """Write `count` images spread evenly over `fruits` under `root`; returns their paths."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = random.Random(seed)
    written = []
    for index in range(count):
        style = fruits[index % len(fruits)]
        folder = root / style.label
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"r_{index // len(fruits)}_{IMAGE_SIDE}.jpg"
        draw_fruit(style, rng).save(path, format="JPEG", quality=90)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--count", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = generate_images(args.root, args.count, args.seed)
    print(f"wrote {len(paths)} images under {args.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
