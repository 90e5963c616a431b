"""Drawing a demo car: Carvana's 16 turntable views through a pinhole camera onto a studio backdrop, with a
floor disc and a soft shadow. The mask is drawn from the same polygons in the same pixel grid, so it is exact.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.competitions.carvana.demo_cars import Car, Face, build_parts

VIEWS = 16  # Carvana's turntable views, named _01 .. _16; _01 faces the camera
NOISE = 1  # sensor noise in levels (+-); JPEGs then weigh about what Carvana's train_hq files do


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
