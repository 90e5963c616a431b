"""A miniature Carvana competition, rendered deterministically from a seed.

Each car is a small 3-D model (a lower body, a cabin with windows, four wheels, lights and a grille)
turned through Carvana's 16 turntable views and drawn with a pinhole camera onto a studio backdrop
with a floor disc and a soft shadow. The mask is drawn from the same polygons in the same pixel grid,
so it is exact. Files, names and formats follow Kaggle's: `train.zip` (train/<id>_<NN>.jpg),
`train_masks.zip` (train_masks/<id>_<NN>_mask.gif, palette values 0/1), `train_masks.csv`,
`test.zip`, `sample_submission.csv`, `metadata.csv`. The test truth goes to a separate folder that no
pipeline stage reads.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline import rle

VIEWS = 16  # Carvana's turntable views, named _01 .. _16; _01 faces the camera
CLASSES = ("background", "body", "windows", "wheels", "lights")  # index masks of the multi-class demo
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: the same seed gives the same bytes
NOISE = 1  # sensor noise in levels (+-); JPEGs then weigh about what Carvana's train_hq files do

PALETTE = [  # (name, rgb, weight): the colour mix of a used-car lot
    ("white", (232, 232, 230), 0.20),
    ("black", (28, 29, 32), 0.18),
    ("silver", (168, 171, 175), 0.14),
    ("grey", (98, 101, 106), 0.14),
    ("red", (158, 22, 28), 0.10),
    ("blue", (28, 58, 128), 0.10),
    ("green", (36, 84, 52), 0.04),
    ("beige", (196, 178, 140), 0.04),
    ("orange", (214, 104, 24), 0.03),
    ("yellow", (222, 190, 40), 0.03),
]
MAKES = {"sedan": ("Demo", "Saloon"), "hatch": ("Demo", "Hatch"), "suv": ("Demo", "Crossover")}


@dataclass(frozen=True)
class Car:
    """Shape and paint of one demo car, in metres (x forward, y left, z up)."""

    car_id: str
    kind: str
    color_name: str
    color: tuple[int, int, int]
    length: float
    width: float
    clearance: float
    belt: float  # top of the lower body, under the windows
    hood: float  # front edge of the hood
    roof: float
    hood_len: float  # nose to windscreen base
    tail_len: float  # rear to rear-window base
    screen_slant: float  # horizontal run of the windscreen
    rear_slant: float
    wheel_radius: float
    wheelbase: float
    year: int


def make_car(rng: np.random.Generator) -> Car:
    """Draw a random car: body type, colour and proportions."""
    kind = rng.choice(["sedan", "hatch", "suv"], p=[0.45, 0.25, 0.30]).item()
    weights = np.array([w for _, _, w in PALETTE])
    name, rgb, _ = PALETTE[rng.choice(len(PALETTE), p=weights / weights.sum())]
    length = rng.uniform(4.0, 4.4) if kind == "hatch" else rng.uniform(4.4, 5.0)
    roof = {"sedan": rng.uniform(1.38, 1.48), "hatch": rng.uniform(1.42, 1.52), "suv": rng.uniform(1.62, 1.78)}[kind]
    clearance = rng.uniform(0.30, 0.36) if kind == "suv" else rng.uniform(0.18, 0.24)
    belt = clearance + (rng.uniform(0.62, 0.72) if kind == "suv" else rng.uniform(0.58, 0.66))
    tail = {"sedan": rng.uniform(0.85, 1.05), "hatch": rng.uniform(0.12, 0.22), "suv": rng.uniform(0.10, 0.20)}[kind]
    rear_slant = {"sedan": rng.uniform(0.45, 0.6), "hatch": rng.uniform(0.35, 0.5), "suv": rng.uniform(0.08, 0.18)}[
        kind
    ]
    return Car(
        car_id="".join(rng.choice(list("0123456789abcdef"), 12)),
        kind=kind,
        color_name=name,
        color=tuple(int(np.clip(c + rng.normal(0, 6), 0, 255)) for c in rgb),
        length=length,
        width=rng.uniform(1.74, 1.92),
        clearance=clearance,
        belt=belt,
        hood=belt - rng.uniform(0.06, 0.14),
        roof=roof,
        hood_len=rng.uniform(1.0, 1.35) if kind != "hatch" else rng.uniform(0.85, 1.05),
        tail_len=tail,
        screen_slant=rng.uniform(0.55, 0.8),
        rear_slant=rear_slant,
        wheel_radius=rng.uniform(0.34, 0.39) if kind == "suv" else rng.uniform(0.30, 0.34),
        wheelbase=length * rng.uniform(0.58, 0.62),
        year=int(rng.integers(2008, 2018)),
    )


# ----------------------------------------------------------------------------------------------
# geometry: convex parts made of planar faces


@dataclass
class Face:
    points: np.ndarray  # (n, 3) in car coordinates
    color: tuple[int, int, int]
    label: int  # class index in the multi-class mask
    shiny: float = 0.0
    decals: tuple = ()  # faces drawn on top of this one when it is visible


def _quad(a, b, c, d) -> np.ndarray:
    return np.array([a, b, c, d], dtype=np.float64)


def _inset(points: np.ndarray, frac: float) -> np.ndarray:
    centre = points.mean(axis=0)
    return centre + (points - centre) * (1.0 - frac)


def _on_face(corners: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """A sub-quad of a quad face, bilinear in its (u along 0->1, v along 0->3) coordinates."""
    p0, p1, p2, p3 = corners

    def at(u: float, v: float) -> np.ndarray:
        return (1 - v) * ((1 - u) * p0 + u * p1) + v * ((1 - u) * p3 + u * p2)

    return np.array([at(u, v) for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])


def _corners(rear: float, front: float, half: float, z: float) -> dict[str, np.ndarray]:
    """The four corners of a horizontal rectangle: rear/front x left/right."""
    return {
        "rl": np.array((rear, half, z)),
        "fl": np.array((front, half, z)),
        "fr": np.array((front, -half, z)),
        "rr": np.array((rear, -half, z)),
    }


def build_parts(car: Car) -> dict[str, list[Face]]:
    """The car's convex parts: 'body', 'cabin' and one entry per wheel."""
    L, W, body_rgb = car.length, car.width, car.color
    half = W / 2
    zc, zb, zh = car.clearance, car.belt, car.hood
    xf = L / 2 - car.hood_len  # windscreen base
    xr = -L / 2 + car.tail_len  # rear-window base
    trunk = zb - 0.04 if car.tail_len > 0.5 else zb
    # lower body: a convex side profile (x, z), rear-bottom first, counter-clockwise seen from +y
    profile = [
        (-L / 2, zc + 0.12),
        (-L / 2 + 0.12, zc),
        (L / 2 - 0.16, zc),
        (L / 2, zc + 0.16),
        (L / 2, zh - 0.12),
        (L / 2 - 0.14, zh),
        (xf, zb),
        (xr, zb),
        (-L / 2 + 0.06, trunk),
        (-L / 2, trunk - 0.1),
    ]
    grille = (30, 30, 32)
    head, tail = (236, 238, 228), (170, 20, 24)
    body: list[Face] = []
    for y, sign in ((half, 1), (-half, -1)):
        side = np.array([(x, y, z) for x, z in profile])
        body.append(Face(side if sign > 0 else side[::-1], body_rgb, 1, shiny=0.4))
    n = len(profile)
    for i in range(n):
        (x0, z0), (x1, z1) = profile[i], profile[(i + 1) % n]
        quad = _quad((x0, -half, z0), (x1, -half, z1), (x1, half, z1), (x0, half, z0))
        decals = ()
        if i == 3:  # nose: headlights and grille
            decals = (
                Face(_on_face(quad, 0.55, 0.95, 0.06, 0.28), head, 4),
                Face(_on_face(quad, 0.55, 0.95, 0.72, 0.94), head, 4),
                Face(_on_face(quad, 0.2, 0.5, 0.3, 0.7), grille, 1),
            )
        if i == 9:  # tail: lights
            decals = (
                Face(_on_face(quad, 0.1, 0.55, 0.04, 0.24), tail, 4),
                Face(_on_face(quad, 0.1, 0.55, 0.76, 0.96), tail, 4),
            )
        body.append(Face(quad, body_rgb, 1, shiny=0.6, decals=decals))

    glass = (38, 44, 52)
    b_half, r_half = half - 0.04, half - 0.2
    xf2, xr2 = xf - car.screen_slant, xr + car.rear_slant
    zr = car.roof
    bottom, top = _corners(xr, xf, b_half, zb), _corners(xr2, xf2, r_half, zr)
    screen = _quad(bottom["fl"], bottom["fr"], top["fr"], top["fl"])
    rear = _quad(bottom["rr"], bottom["rl"], top["rl"], top["rr"])
    left = _quad(bottom["rl"], bottom["fl"], top["fl"], top["rl"])
    right = _quad(bottom["fr"], bottom["rr"], top["rr"], top["fr"])
    split = 0.55 if car.kind != "hatch" else 0.6
    cabin = [
        Face(screen, body_rgb, 1, decals=(Face(_inset(screen, 0.1), glass, 2, shiny=1.0),)),
        Face(rear, body_rgb, 1, decals=(Face(_inset(rear, 0.12), glass, 2, shiny=1.0),)),
        Face(
            left,
            body_rgb,
            1,
            decals=(
                Face(_on_face(left, 0.06, split - 0.02, 0.1, 0.86), glass, 2, shiny=1.0),
                Face(_on_face(left, split + 0.02, 0.94, 0.1, 0.86), glass, 2, shiny=1.0),
            ),
        ),
        Face(
            right,
            body_rgb,
            1,
            decals=(
                Face(_on_face(right, 0.06, 1 - split - 0.02, 0.1, 0.86), glass, 2, shiny=1.0),
                Face(_on_face(right, 1 - split + 0.02, 0.94, 0.1, 0.86), glass, 2, shiny=1.0),
            ),
        ),
        Face(_quad(top["rl"], top["rr"], top["fr"], top["fl"]), body_rgb, 1, shiny=0.8),
    ]

    parts: dict[str, list[Face]] = {"body": body, "cabin": cabin}
    r, t = car.wheel_radius, 0.22
    tyre, rim, hub = (24, 24, 26), (176, 178, 182), (70, 72, 76)
    angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    for name, x in (("front", car.wheelbase / 2), ("rear", -car.wheelbase / 2)):
        for side in (1, -1):
            y_out, y_in = side * (half - 0.01), side * (half - 0.01 - t)
            ring = np.stack([x + r * np.cos(angles), np.zeros_like(angles), r + r * np.sin(angles)], axis=1)
            outer, inner = ring.copy(), ring.copy()
            outer[:, 1], inner[:, 1] = y_out, y_in
            centre = np.array([x, y_out, r])
            faces = [
                Face(
                    outer,
                    tyre,
                    3,
                    decals=(
                        Face(centre + (outer - centre) * 0.64, rim, 3, shiny=0.7),
                        Face(centre + (outer - centre) * 0.22, hub, 3),
                    ),
                ),
                Face(inner, tyre, 3),
            ]
            for i in range(len(angles)):
                j = (i + 1) % len(angles)
                faces.append(Face(_quad(outer[i], outer[j], inner[j], inner[i]), tyre, 3))
            parts[f"wheel_{name}_{'left' if side > 0 else 'right'}"] = faces
    return parts


# ----------------------------------------------------------------------------------------------
# camera and drawing


@dataclass(frozen=True)
class Camera:
    position: np.ndarray
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    focal: float
    centre: tuple[float, float]

    @staticmethod
    def studio(width: int, height: int) -> "Camera":
        position = np.array([8.5, 0.0, 1.35])
        target = np.array([0.0, 0.0, 0.62])
        forward = (target - position) / np.linalg.norm(target - position)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        return Camera(position, right, up, forward, 1.6 * width, (width / 2, height * 0.52))

    def project(self, points: np.ndarray) -> np.ndarray:
        d = points - self.position
        depth = d @ self.forward
        x = self.centre[0] + self.focal * (d @ self.right) / depth
        y = self.centre[1] - self.focal * (d @ self.up) / depth
        return np.stack([x, y], axis=1)


def _rotation(view: int) -> np.ndarray:
    phi = (view - 1) * 2 * math.pi / VIEWS
    c, s = math.cos(phi), math.sin(phi)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@functools.lru_cache(maxsize=4)
def _studio(width: int, height: int) -> tuple[Image.Image, Image.Image]:
    """Studio wall and floor with the turntable disc, and the same darkened for shadows (RGB)."""
    camera = Camera.studio(width, height)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    light = 246 - 14 * rows - 10 * cols**2
    disc = np.array([(3.3 * math.cos(a), 3.3 * math.sin(a), 0.0) for a in np.linspace(0, 2 * math.pi, 96)])
    small = (max(width // 8, 8), max(height // 8, 8))
    layer = Image.new("L", small, 0)
    pts = camera.project(disc) * (small[0] / width)
    ImageDraw.Draw(layer).polygon([tuple(p) for p in pts], fill=255)
    layer = layer.filter(ImageFilter.GaussianBlur(1.2)).resize((width, height), Image.BILINEAR)
    floor = np.asarray(layer, dtype=np.float32) / 255.0
    grey = light - 30 * floor - 8 * floor * rows
    rgb = np.stack([grey, grey, grey * 1.015], axis=2)
    return (
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)),
        Image.fromarray(np.clip(rgb * 0.45, 0, 255).astype(np.uint8)),
    )


def render(car: Car, view: int, width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render one turntable view: (RGB uint8 (H, W, 3), class-index mask uint8 (H, W))."""
    camera = Camera.studio(width, height)
    rot = _rotation(view)
    cam_in_car = rot.T @ camera.position  # camera position in car coordinates
    light = rot.T @ np.array([0.45, 0.5, 0.75])
    light /= np.linalg.norm(light)

    # soft contact shadow: the footprint on the floor, blurred at low resolution
    L, W = car.length, car.width
    foot = (
        np.array(
            [
                (-L / 2 - 0.15, -W / 2 - 0.1, 0),
                (L / 2 + 0.15, -W / 2 - 0.1, 0),
                (L / 2 + 0.15, W / 2 + 0.1, 0),
                (-L / 2 - 0.15, W / 2 + 0.1, 0),
            ]
        )
        @ rot.T
    )
    small = (max(width // 8, 8), max(height // 8, 8))
    shadow = Image.new("L", small, 0)
    ImageDraw.Draw(shadow).polygon([tuple(p) for p in camera.project(foot) * (small[0] / width)], fill=255)
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(small[0] / 90, 1))).resize((width, height), Image.BILINEAR)
    studio, dark = _studio(width, height)
    canvas = Image.composite(dark, studio, shadow)
    mask = Image.new("L", (width, height), 0)
    draw, draw_mask = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)

    parts = build_parts(car)
    near_side = 1 if cam_in_car[1] > 0 else -1
    facing_side = abs(cam_in_car[1]) > 0.25 * np.linalg.norm(cam_in_car[:2])

    def is_near_wheel(name: str) -> bool:
        side = 1 if name.endswith("left") else -1
        return facing_side and side == near_side

    order = [n for n in parts if n.startswith("wheel") and not is_near_wheel(n)]
    order += ["body", "cabin"] + [n for n in parts if n.startswith("wheel") and is_near_wheel(n)]
    for name in order:
        faces = parts[name]
        centre = np.concatenate([f.points for f in faces]).mean(axis=0)
        if name == "body" and facing_side:  # dark wheel arches, seen on the near side
            for x in (car.wheelbase / 2, -car.wheelbase / 2):
                r = car.wheel_radius * 1.12
                arch = np.array(
                    [
                        (x + r * math.cos(a), near_side * W / 2, car.wheel_radius + r * math.sin(a))
                        for a in np.linspace(0, math.pi, 12)
                    ]
                )
                faces = faces + [Face(arch, (18, 18, 20), 1)]
        for face in faces:
            _draw_face(face, centre, rot, camera, cam_in_car, light, draw, draw_mask)

    # lens softness where there are edges (the car), then sensor noise
    box = mask.getbbox()
    if box:
        box = (max(box[0] - 4, 0), max(box[1] - 4, 0), min(box[2] + 4, width), min(box[3] + 4, height))
        canvas.paste(canvas.crop(box).filter(ImageFilter.GaussianBlur(0.6)), box[:2])
    rgb = np.asarray(canvas, dtype=np.int16) + rng.integers(-NOISE, NOISE + 1, size=(height, width, 1), dtype=np.int16)
    return np.clip(rgb, 0, 255).astype(np.uint8), np.asarray(mask, dtype=np.uint8)


def _draw_face(face: Face, centre, rot, camera, cam_in_car, light, draw, draw_mask) -> None:
    pts = face.points
    normal = np.cross(pts[1] - pts[0], pts[2] - pts[0])
    norm = np.linalg.norm(normal)
    if norm < 1e-12:
        return
    normal /= norm
    middle = pts.mean(axis=0)
    if normal @ (middle - centre) < 0:
        normal = -normal
    to_cam = cam_in_car - middle
    if normal @ to_cam <= 0:
        return  # back face
    to_cam /= np.linalg.norm(to_cam)
    half_vec = (to_cam + light) / np.linalg.norm(to_cam + light)
    shade = 0.5 + 0.5 * max(0.0, float(normal @ light))
    spec = face.shiny * 120 * max(0.0, float(normal @ half_vec)) ** 24
    color = tuple(int(min(255, c * shade + spec)) for c in face.color)
    poly = [tuple(p) for p in camera.project(pts @ rot.T)]
    draw.polygon(poly, fill=color)
    draw_mask.polygon(poly, fill=face.label)
    for decal in face.decals:
        dpts = decal.points
        dspec = decal.shiny * 90 * max(0.0, float(normal @ half_vec)) ** 8
        dcolor = tuple(int(min(255, c * shade + dspec)) for c in decal.color)
        dpoly = [tuple(p) for p in camera.project(dpts @ rot.T)]
        draw.polygon(dpoly, fill=dcolor)
        draw_mask.polygon(dpoly, fill=decal.label)


# ----------------------------------------------------------------------------------------------
# files


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _mask_file(index_mask: np.ndarray, multiclass: bool) -> bytes:
    """Binary masks as Kaggle's palette GIF (values 0/1); multi-class as palette PNG (class indices)."""
    buf = io.BytesIO()
    if multiclass:
        img = Image.fromarray(index_mask, mode="P")
        img.putpalette([0, 0, 0, 200, 30, 30, 40, 120, 220, 250, 200, 40, 250, 250, 250] + [0] * 3 * 251)
        img.save(buf, format="PNG")
    else:
        img = Image.fromarray((index_mask > 0).astype(np.uint8), mode="P")
        img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 3 * 254)
        img.save(buf, format="GIF")
    return buf.getvalue()


def _render_job(seed: int, split: int, car_index: int, view: int, width: int, height: int, multiclass: bool):
    car = make_car(np.random.default_rng([seed, split, car_index]))
    rgb, index_mask = render(car, view, width, height, np.random.default_rng([seed, split, car_index, view]))
    name = f"{car.car_id}_{view:02d}"
    return name, _jpeg(rgb), _mask_file(index_mask, multiclass), rle.encode(index_mask > 0)


def _zip_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def generate(
    out_dir: Path,
    truth_dir: Path,
    *,
    seed: int,
    train_cars: int,
    test_cars: int,
    width: int,
    height: int,
    multiclass: bool = False,
    jobs: int = -1,
) -> dict[str, int]:
    """Write the demo competition into `out_dir` and its test truth into `truth_dir`.

    Returns the number of train and test images. The same arguments give byte-identical files.
    """
    from joblib import Parallel, delayed
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    cars = {
        0: [make_car(np.random.default_rng([seed, 0, i])) for i in range(train_cars)],
        1: [make_car(np.random.default_rng([seed, 1, i])) for i in range(test_cars)],
    }
    jobs_list = [(split, i, v) for split in (0, 1) for i in range(len(cars[split])) for v in range(1, VIEWS + 1)]
    mask_ext = "png" if multiclass else "gif"
    tmp = {n: out_dir / f".{n}.tmp" for n in ("train.zip", "train_masks.zip", "test.zip")}
    train_rows, test_rows = [], []
    with (
        zipfile.ZipFile(tmp["train.zip"], "w") as z_train,
        zipfile.ZipFile(tmp["train_masks.zip"], "w") as z_masks,
        zipfile.ZipFile(tmp["test.zip"], "w") as z_test,
    ):
        results = Parallel(n_jobs=jobs, return_as="generator")(
            delayed(_render_job)(seed, split, i, v, width, height, multiclass) for split, i, v in jobs_list
        )
        for (split, _, _), (name, jpeg, mask, run) in tqdm(
            zip(jobs_list, results), total=len(jobs_list), desc="demo", unit="img"
        ):
            if split == 0:
                _zip_entry(z_train, f"train/{name}.jpg", jpeg)
                _zip_entry(z_masks, f"train_masks/{name}_mask.{mask_ext}", mask)
                train_rows.append((f"{name}.jpg", run))
            else:
                _zip_entry(z_test, f"test/{name}.jpg", jpeg)
                test_rows.append((f"{name}.jpg", run))
    for name, path in tmp.items():
        path.replace(out_dir / name)

    _write_csv(out_dir / "train_masks.csv", ("img", "rle_mask"), train_rows)
    _write_csv(out_dir / "sample_submission.csv", ("img", "rle_mask"), [(n, "1 1") for n, _ in test_rows])
    meta = [(c.car_id, c.year, *MAKES[c.kind], c.color_name, "") for split in (0, 1) for c in cars[split]]
    _write_csv(out_dir / "metadata.csv", ("id", "year", "make", "model", "trim1", "trim2"), meta)
    _write_csv(truth_dir / "test_masks.csv", ("img", "rle_mask"), test_rows)
    classes = out_dir / "classes.json"
    if multiclass:
        classes.write_text(json.dumps({"names": list(CLASSES)}) + "\n")
    else:
        classes.unlink(missing_ok=True)
    return {"train": len(train_rows), "test": len(test_rows)}


def _write_csv(path: Path, header: tuple[str, ...], rows) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
