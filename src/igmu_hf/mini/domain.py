"""The mini world's procedural domain: scenes, captions and renders, all seeded and exact.

Every image is drawn by code from a :class:`Scene` (one or two objects on a background, optionally restyled), so
the ground truth of each generation-time concept is known. Each factor maps to a CatIGMU category:

==============  ===============================  ==========================================
factor          CatIGMU category                 values
==============  ===============================  ==========================================
style           Global / Abstract / Style        none, sepia, sketch, inverted, mosaic
background      Global / Concrete / Entity       plain, ocean, desert, grass, night
texture         Local / Abstract / Status        solid, striped, dotted (strongly bound)
colour          Local / Abstract / Property      red, green, blue, yellow (weakly bound)
shape           Local / Concrete / Object        circle, square, triangle, star, house
==============  ===============================  ==========================================

Captions use several templates and synonyms ("a circle", "a disc", "a ball"), so that a concept can be reached
by words that do not name it, which is what adversarial prompts and Dark Miner's mining exploit.
Factors a caption does not mention take a default (no style, plain background, solid texture); the colour of an
object is random when unmentioned.
"""

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


IMAGE_SIZE = 32
_SUPERSAMPLE = 4

SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "ball"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "pyramid", "wedge"),
    "star": ("star", "pentagram", "sparkle"),
    "house": ("house", "hut", "cabin"),
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (40, 70, 230),
    "yellow": (245, 215, 20),
}
TEXTURES: dict[str, tuple[str, ...]] = {"solid": ("solid", "uniform"), "striped": ("striped", "banded"),
                                        "dotted": ("dotted", "spotted")}
BACKGROUNDS: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "blank"),
    "ocean": ("ocean", "sea", "waves"),
    "desert": ("desert", "sand", "dunes"),
    "grass": ("grass", "meadow", "lawn"),
    "night": ("night", "midnight", "darkness"),
}
STYLES: dict[str, tuple[str, ...]] = {
    "none": ("realistic",),
    "sepia": ("sepia", "vintage"),
    "sketch": ("sketch", "drawing", "pencil"),
    "inverted": ("inverted", "negative"),
    "mosaic": ("mosaic", "pixelated", "tiles"),
}
# Words used by templates and by the generic prompts of the methods ("a photo", " ", "art").
FUNCTION_WORDS = (
    "a", "an", "the", "of", "on", "in", "with", "and", "next", "to", "beside", "behind", "background", "style",
    "photo", "image", "picture", "scene", "empty", "art", "object", "shape", "thing", "colourful", ",",
)
FACTORS = ("shape", "colour", "texture", "background", "style")
# Which factor a concept word belongs to, for every canonical value and synonym.
FACTOR_VALUES: dict[str, tuple[str, ...]] = {
    "shape": tuple(SHAPES), "colour": tuple(COLOURS), "texture": tuple(TEXTURES),
    "background": tuple(BACKGROUNDS), "style": tuple(STYLES),
}


def _synonyms(factor: str) -> dict[str, tuple[str, ...]]:
    if factor == "colour":
        return {c: (c,) for c in COLOURS}
    return {"shape": SHAPES, "texture": TEXTURES, "background": BACKGROUNDS, "style": STYLES}[factor]


def vocabulary() -> list[str]:
    """Every word a mini-world caption can contain, sorted; the tokenizer is built over it."""
    words = set(FUNCTION_WORDS)
    for factor in FACTORS:
        for syns in _synonyms(factor).values():
            for s in syns:
                words.update(s.split())
    return sorted(words)


def concept_of_word(word: str) -> tuple[str, str] | None:
    """Return ``(factor, canonical value)`` for a concept word or synonym of the domain, else ``None``."""
    word = word.lower().strip()
    for factor in FACTORS:
        for value, syns in _synonyms(factor).items():
            if word == value or word in syns:
                return factor, value
    return None


@dataclass
class SceneObject:
    shape: str
    colour: str
    texture: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in IMAGE_SIZE pixels


@dataclass
class Scene:
    objects: list[SceneObject] = field(default_factory=list)
    background: str = "plain"
    style: str = "none"

    def labels(self) -> dict[str, list[str] | str]:
        """Ground-truth factors: sets of present shapes/colours/textures, the background, the style, and each object's
        ``(shape, (x0, y0, x1, y1))`` box in pixels (the labels of the mini YOLO detector)."""
        return {
            "shapes": sorted({o.shape for o in self.objects}),
            "colours": sorted({o.colour for o in self.objects}),
            "textures": sorted({o.texture for o in self.objects}),
            "background": self.background,
            "style": self.style,
            "boxes": [(o.shape, tuple(o.box)) for o in self.objects],
        }


def sample_scene_and_caption(rng: np.random.Generator) -> tuple[Scene, str]:
    """Draw a random scene and a caption describing it (unmentioned factors take their defaults)."""

    def pick(seq):
        return seq[int(rng.integers(len(seq)))]

    n_objects = int(rng.choice([0, 1, 2], p=[0.08, 0.62, 0.30]))
    phrases, objects = [], []
    for _ in range(n_objects):
        shape, colour = pick(list(SHAPES)), pick(list(COLOURS))
        texture = pick(["striped", "dotted"]) if rng.random() < 0.4 else "solid"
        words = []
        if rng.random() < 0.8:
            words.append(colour)
        if texture != "solid" or rng.random() < 0.1:
            words.append(pick(TEXTURES[texture]))
        words.append(pick(SHAPES[shape]))
        phrases.append("a " + " ".join(words))
        objects.append(SceneObject(shape, colour, texture, (0, 0, 0, 0)))

    if n_objects == 0 or rng.random() < 0.55:
        background = pick([b for b in BACKGROUNDS if b != "plain"])
    else:
        background = "plain"
    style = pick([s for s in STYLES if s != "none"]) if rng.random() < 0.4 else "none"

    if n_objects == 0:
        text = pick(["a {} scene", "an empty {}", "{}", "a {} background"]).format(pick(BACKGROUNDS[background]))
    else:
        text = phrases[0] if n_objects == 1 else pick(["{} next to {}", "{} and {}", "{} beside {}"]).format(*phrases)
        if background != "plain" or rng.random() < 0.1:
            text += pick([" on a {} background", " in the {}", " with {} behind"]).format(pick(BACKGROUNDS[background]))
    if style != "none":
        s = pick(STYLES[style])
        text = pick(["{t}, {s} style", "a {s} image of {t}", "{t} in {s} style"]).format(t=text, s=s)
    elif rng.random() < 0.15:
        text = pick(["a photo of {t}", "{t}, realistic style"]).format(t=text)

    _place_objects(objects, rng)
    return Scene(objects, background, style), text


def _place_objects(objects: list[SceneObject], rng: np.random.Generator) -> None:
    n = len(objects)
    for i, obj in enumerate(objects):
        if n == 1:
            size = int(rng.integers(15, 22))
            x0 = int(rng.integers(2, IMAGE_SIZE - size - 1))
            y0 = int(rng.integers(2, IMAGE_SIZE - size - 1))
        else:  # left and right halves, first object on the left
            size = int(rng.integers(11, 14))
            half = IMAGE_SIZE // 2
            x0 = int(rng.integers(1, half - size)) + i * half
            y0 = int(rng.integers(4, IMAGE_SIZE - size - 4))
        obj.box = (x0, y0, x0 + size, y0 + size)


def _shape_polygon(shape: str, box: tuple[float, float, float, float]) -> list[list[tuple[float, float]]]:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return [[(cx + w / 2 * np.cos(a), cy + h / 2 * np.sin(a)) for a in angles]]
    if shape == "square":
        m = 0.08 * w
        return [[(x0 + m, y0 + m), (x1 - m, y0 + m), (x1 - m, y1 - m), (x0 + m, y1 - m)]]
    if shape == "triangle":
        return [[(cx, y0), (x1, y1), (x0, y1)]]
    if shape == "star":
        pts = []
        for k in range(10):
            r = (w / 2) if k % 2 == 0 else (w / 5)
            a = -np.pi / 2 + k * np.pi / 5
            pts.append((cx + r * np.cos(a), cy + 0.1 * h + r * np.sin(a)))
        return [pts]
    if shape == "house":
        roof = [(cx, y0), (x1, y0 + 0.45 * h), (x0, y0 + 0.45 * h)]
        body = [(x0 + 0.15 * w, y0 + 0.45 * h), (x1 - 0.15 * w, y0 + 0.45 * h), (x1 - 0.15 * w, y1),
                (x0 + 0.15 * w, y1)]
        return [roof, body]
    raise ValueError(f"Unknown shape {shape!r}; known shapes: {list(SHAPES)}.")


def _background(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGB", (size, size), {"plain": (228, 228, 228), "ocean": (30, 90, 170), "desert": (222, 188, 120),
                                          "grass": (70, 150, 60), "night": (12, 16, 48)}[name])
    draw = ImageDraw.Draw(img)
    s = size / IMAGE_SIZE
    if name == "ocean":
        for k in range(6):
            y = (k + 0.5) * size / 6 + rng.uniform(-2, 2) * s
            pts = [(x, y + 1.5 * s * np.sin(x / (3 * s) + k)) for x in np.linspace(0, size, 40)]
            draw.line(pts, fill=(120, 180, 235), width=max(1, int(0.8 * s)))
    elif name == "desert":
        for k in range(3):
            y = (k + 1) * size / 3.5 + rng.uniform(-2, 2) * s
            pts = [(x, y + 2.5 * s * np.sin(x / (6 * s) + 2 * k)) for x in np.linspace(0, size, 40)]
            draw.line(pts, fill=(180, 140, 70), width=max(1, int(1.0 * s)))
    elif name == "grass":
        for _ in range(40):
            x, y = rng.uniform(0, size), rng.uniform(0, size)
            draw.line([(x, y), (x + rng.uniform(-1, 1) * s, y - 3 * s)], fill=(30, 100, 30), width=max(1, int(0.6 * s)))
    elif name == "night":
        for _ in range(18):
            x, y, r = rng.uniform(0, size), rng.uniform(0, size), 0.45 * s
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(250, 250, 210))
    return img


def _fill(texture: str, colour: tuple[int, int, int], size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(img)
    s = size / IMAGE_SIZE
    if texture == "striped":
        step = 4 * s
        for k in range(-size, 2 * size, int(step)):
            draw.line([(k, 0), (k + size, size)], fill=(250, 250, 250), width=int(1.6 * s))
    elif texture == "dotted":
        step, r = 4 * s, 0.9 * s
        for yy in np.arange(step / 2, size, step):
            for xx in np.arange(step / 2 + (yy // step) % 2 * step / 2, size, step):
                draw.ellipse([xx - r, yy - r, xx + r, yy + r], fill=(250, 250, 250))
    return img


def _stylise(img: Image.Image, style: str) -> Image.Image:
    if style == "none":
        return img
    if style == "sepia":
        a = np.asarray(img, dtype=np.float32)
        m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)
        return Image.fromarray(np.clip(a @ m.T, 0, 255).astype(np.uint8))
    if style == "sketch":
        edges = img.convert("L").filter(ImageFilter.FIND_EDGES).point(lambda v: 255 - min(255, 3 * v))
        return edges.convert("RGB")
    if style == "inverted":
        return Image.fromarray(255 - np.asarray(img))
    if style == "mosaic":
        return img.resize((16, 16), Image.BILINEAR).resize(img.size, Image.NEAREST)
    raise ValueError(f"Unknown style {style!r}; known styles: {list(STYLES)}.")


def render(scene: Scene, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Draw ``scene`` as a ``(size, size, 3)`` uint8 array (supersampled, then reduced, for smooth edges)."""
    big = size * _SUPERSAMPLE
    scale = big / IMAGE_SIZE
    canvas = _background(scene.background, big, rng)
    for obj in scene.objects:
        box = tuple(v * scale for v in obj.box)
        mask = Image.new("L", (big, big), 0)
        mdraw = ImageDraw.Draw(mask)
        for poly in _shape_polygon(obj.shape, box):
            mdraw.polygon(poly, fill=255, outline=255)
        outline = mask.filter(ImageFilter.MaxFilter(5))
        canvas.paste((20, 20, 20), mask=outline)
        canvas.paste(_fill(obj.texture, COLOURS[obj.colour], big), mask=mask)
    small = canvas.resize((size, size), Image.LANCZOS)
    return np.asarray(_stylise(small, scene.style), dtype=np.uint8)


_CHUNK = 1024  # images per independently seeded chunk: the data do not depend on how many workers draw them


def _draw_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, list[str], list[dict]]:
    seed, chunk, count = args
    rng = np.random.default_rng([seed, chunk])
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions, labels = [], []
    for i in range(count):
        scene, text = sample_scene_and_caption(rng)
        images[i] = render(scene, rng)
        captions.append(text)
        labels.append(scene.labels())
    return images, captions, labels


def make_dataset(num_images: int, seed: int = 0, num_workers: int = 1) -> tuple[np.ndarray, list[str], list[dict]]:
    """Draw ``num_images`` (image, caption, labels) triples reproducibly from ``seed``.

    Images are drawn in chunks of 1024 with their own seeds, so ``num_workers`` processes give the same data as one.
    """
    jobs = [(seed, c, min(_CHUNK, num_images - c * _CHUNK)) for c in range((num_images + _CHUNK - 1) // _CHUNK)]
    if num_workers > 1 and len(jobs) > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(num_workers) as pool:
            parts = pool.map(_draw_chunk, jobs)
    else:
        parts = [_draw_chunk(j) for j in jobs]
    if not parts:
        return np.empty((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8), [], []
    return (np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]], [lab for p in parts for lab in p[2]])
