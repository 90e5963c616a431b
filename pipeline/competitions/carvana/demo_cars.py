"""The demo's cars: a make, a colour and proportions drawn from a seed, and their 3-D parts.

A car is a small set of convex parts made of planar faces (a lower body, a cabin with windows, four wheels,
lights and a grille); demo_render draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
