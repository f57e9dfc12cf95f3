"""Dewarping: pages come out flat and upright before detection.

:class:`Dewarper` takes one RGB page and returns the page to OCR plus a
:class:`PageGeometry` that says what was done and maps points of the returned
page back to pixels of the original. The steps, each skipped unless the page
gives clear evidence for it (do no harm):

1. **Page outline and perspective** (:func:`find_page_quad`): a bright page on
   a darker background (a photo on a table, a scanner bed larger than the page)
   is found as a quadrilateral on a reduced image, its edges are refined on the
   full page by fitting lines to the strongest edge along each side, and it is
   warped to a rectangle whose aspect ratio comes from the quad's vanishing
   geometry (Zhang and He's whiteboard method). A page that fills the image, or
   whose outline is an axis-aligned rectangle, is left alone.
2. **Orientation and skew** (:func:`text_angle`): the ink of the reduced page
   (adaptive threshold) is projected at angles within ``max_skew_deg`` of the
   horizontal and of the vertical; text lines give the sharpest profile. That
   gives the line direction (0/180 against 90/270) and the skew. Between the two
   directions along the line, a few text lines are recognised both ways up and
   the reading with the higher mean confidence wins (by ``orientation_margin``).
3. **Curl** (:class:`CurlModel`): text lines of the upright page are found as
   blobs of horizontally closed ink, their centre curves are measured, and one
   smooth vertical displacement field, a polynomial in x (degree 5, no constant
   term) times a quadratic in y, is fitted to all of them with a free height per
   line. When the fitted lines bend by more than ``curl_min_sag`` x-heights the
   field is inverted into a remap that makes them straight.

Everything composes into one map from the output page to the original page
(curl, then one homography for rotation, deskew and perspective), so the page
is resampled once, by ``cv2.warpPerspective`` or ``cv2.remap``, or by torch's
``grid_sample`` on a GPU (:func:`remap`), and polygons map back exactly through
the same functions (:meth:`PageGeometry.to_original`).

Conventions: ``rotation`` is the clockwise quarter turn (0, 90, 180, 270) that
made the page upright; ``skew_deg`` the angle of the text lines in the original
image, counterclockwise positive as displayed, relative to the nearest axis
(the page was turned by ``-skew_deg`` to level it); ``quad`` the page corners in
original pixels, clockwise from the page's top-left.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.config import DewarpConfig
from pipeline.imaging.geometry import crop_quad
from pipeline.types import Dewarp

__all__ = [
    "PageGeometry",
    "CurlModel",
    "Dewarper",
    "find_page_quad",
    "text_angle",
    "ink_mask",
    "remap",
]

log = logging.getLogger(__name__)

#: Pages smaller than this (either side, pixels) are not dewarped.
MIN_SIDE = 64
#: The line classifier's mean P(upside down) over the lines checked below which a page counts as clearly
#: upright without reading its lines both ways up: well below what upside-down pages give, since the
#: classifier is unsure of single lines of an upright page, not of whole pages (docs/dewarp.md).
UPRIGHT_MAX_P = 0.3
#: Mean confidences of two lines read upright and upside down that differ by this much decide the way up
#: without reading the other lines of the check.
DECISIVE = 0.3

#: Reads line crops: a (text, confidence, ...) tuple per crop, such as the recognizer's readings.
Recognize = Callable[[list[np.ndarray]], Sequence[tuple]]


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class CurlModel:
    """A smooth vertical displacement field: observed y = flat y + d(x, y).

    ``d(x, y) = sum_ij coef[i, j] * X**(i+1) * Y**j`` with ``X = (x - cx) / sx``
    and ``Y = (y - cy) / sy`` clipped to the range the model was fitted on, so
    it never extrapolates wildly into empty margins.
    """

    coef: np.ndarray  # (degree_x, degree_y + 1)
    cx: float
    cy: float
    sx: float
    sy: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def scaled(self, factor: float) -> CurlModel:
        """The same field for coordinates multiplied by ``factor``."""
        return CurlModel(self.coef * factor, self.cx * factor, self.cy * factor, self.sx * factor, self.sy * factor,
                         self.x_range, self.y_range)

    def _basis(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xn = np.clip((x - self.cx) / self.sx, *self.x_range)
        yn = np.clip((y - self.cy) / self.sy, *self.y_range)
        px = np.stack([xn ** (i + 1) for i in range(self.coef.shape[0])], axis=-1)
        py = np.stack([yn**j for j in range(self.coef.shape[1])], axis=-1)
        return px, py

    def displacement(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """d(x, y) at matching points (any shape)."""
        px, py = self._basis(np.asarray(x, np.float64), np.asarray(y, np.float64))
        return ((px @ self.coef) * py).sum(axis=-1)

    def source_y(self, x: np.ndarray, v: np.ndarray, iterations: int = 4) -> np.ndarray:
        """Where the flat row ``v`` lies in the curled page at column ``x``: y = v + d(x, y)."""
        y = np.asarray(v, np.float64)
        for _ in range(iterations):
            y = v + self.displacement(x, y)
        return y


@dataclass(frozen=True)
class PageGeometry:
    """What dewarping did to one page, and the map back to its original pixels.

    Attributes:
        rotation: clockwise quarter turn (0, 90, 180, 270) that made the page upright.
        skew_deg: text angle removed (counterclockwise positive, as displayed); 0.0 when left alone.
        quad: (4, 2) page corners in original pixels (clockwise from the page's
            top-left) when the page outline was found and warped, else None.
        curl_corrected: whether curved text lines were straightened.
        skipped: why the page (or a step) was left alone, None when nothing was
            skipped; several reasons are joined by "; ".
        size: (height, width) of the returned page.
        homography: 3x3 map from the upright page (before curl) to original pixels.
        curl: the curl field in upright-page pixels, or None.
    """

    rotation: int = 0
    skew_deg: float = 0.0
    quad: np.ndarray | None = None
    curl_corrected: bool = False
    skipped: str | None = None
    size: tuple[int, int] = (0, 0)
    homography: np.ndarray = field(default_factory=lambda: np.eye(3))
    curl: CurlModel | None = None

    @property
    def identity(self) -> bool:
        """True when the returned page is the original, pixel for pixel."""
        return self.curl is None and bool(np.allclose(self.homography, np.eye(3)))

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 2) points of the returned page to pixels of the original page."""
        pts = np.asarray(points, np.float64)
        shape = pts.shape
        pts = pts.reshape(-1, 2)
        if self.curl is not None:
            pts = np.stack([pts[:, 0], self.curl.source_y(pts[:, 0], pts[:, 1])], axis=1)
        h = self.homography
        den = pts @ h[2, :2] + h[2, 2]
        out = (pts @ h[:2, :2].T + h[:2, 2]) / den[:, None]
        return out.reshape(shape)

    def map_quads(self, quads: np.ndarray) -> np.ndarray:
        """Map (N, 4, 2) quads of the returned page to original pixels, corners kept in order.

        Straight edges stay straight under a homography, so corners suffice;
        through a curl the edges bend, and the quad becomes the smallest
        rectangle around the mapped edges (corners matched to the mapped ones).
        """
        quads = np.asarray(quads, np.float64).reshape(-1, 4, 2)
        if self.identity or len(quads) == 0:
            return quads.astype(np.float32)
        if self.curl is None:
            return self.to_original(quads).astype(np.float32)
        t = np.linspace(0.0, 1.0, 9)[None, :, None]
        edges = np.concatenate([quads[:, [0]] + (quads[:, [1]] - quads[:, [0]]) * t,
                                quads[:, [2]] + (quads[:, [3]] - quads[:, [2]]) * t], axis=1)
        mapped = self.to_original(edges).astype(np.float32)
        corners = self.to_original(quads)
        out = np.empty((len(quads), 4, 2), np.float32)
        for i, pts in enumerate(mapped):
            box = cv2.boxPoints(cv2.minAreaRect(pts))
            d = np.linalg.norm(corners[i][:, None, :] - box[None, :, :], axis=2)
            order = _assign(d)
            out[i] = box[order]
        return out

    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 (H, W) source pixel indices in the original page for every output pixel (cv2.remap's maps).

        Points are continuous coordinates (pixel (0, 0) spans [0, 1)); pixel
        indices sit at their centres, hence the half-pixel shifts.
        """
        h, w = self.size
        if self.curl is None:
            gx, gy = np.meshgrid(np.arange(w, dtype=np.float64) + 0.5, np.arange(h, dtype=np.float64) + 0.5)
            src = self.to_original(np.stack([gx, gy], axis=-1)) - 0.5
            return src[..., 0].astype(np.float32), src[..., 1].astype(np.float32)
        # The curl is smooth: evaluate it on a grid of step-pixel cells (one cell of margin on each
        # side) and let cv2.resize interpolate. Resized pixel k sits at cell coordinate
        # (k + 0.5) / step - 0.5, so cell i is centred on pixel index (i - 0.5) * step - 0.5.
        step = 8
        ny, nx = -(-h // step) + 2, -(-w // step) + 2
        ys = (np.arange(ny, dtype=np.float64) - 0.5) * step
        xs = (np.arange(nx, dtype=np.float64) - 0.5) * step
        gx, gy = np.meshgrid(xs, ys)  # pixel index + 0.5 = continuous coordinates of the pixel centre
        src = self.to_original(np.stack([gx, gy], axis=-1)) - 0.5
        mx = cv2.resize(src[..., 0].astype(np.float32), (nx * step, ny * step), interpolation=cv2.INTER_LINEAR)
        my = cv2.resize(src[..., 1].astype(np.float32), (nx * step, ny * step), interpolation=cv2.INTER_LINEAR)
        mx, my = mx[step : step + h, step : step + w], my[step : step + h, step : step + w]
        return np.ascontiguousarray(mx[:h, :w]), np.ascontiguousarray(my[:h, :w])

    def record(self) -> Dewarp:
        """What was done, as the page model records it (the ``pages`` columns of the same names)."""
        quad = None if self.quad is None else tuple((float(x), float(y)) for x, y in self.quad)
        return Dewarp(int(self.rotation), float(self.skew_deg), quad, bool(self.curl_corrected), self.skipped)


def _assign(d: np.ndarray) -> list[int]:
    """For a 4x4 distance matrix, the column each row gets (greedy, nearest first, one each)."""
    order = [-1] * 4
    used: set[int] = set()
    for flat in np.argsort(d, axis=None):
        r, c = divmod(int(flat), 4)
        if order[r] < 0 and c not in used:
            order[r] = c
            used.add(c)
    return order


# --------------------------------------------------------------------------- resampling


def remap(
    image: np.ndarray, geometry: PageGeometry, backend: str = "opencv", border: Sequence[float] = (255, 255, 255)
) -> np.ndarray:
    """Resample ``image`` into the page ``geometry`` describes (bilinear).

    Args:
        image: the original (H, W, 3) uint8 page.
        geometry: a non-identity :class:`PageGeometry`.
        backend: ``opencv`` (cv2.warpPerspective when there is no curl, else
            cv2.remap) or ``torch`` (``grid_sample``; on CUDA when available).
            Both give the same page within interpolation error.
        border: colour of output pixels that fall outside the original.
    """
    h, w = geometry.size
    value = tuple(float(v) for v in border)
    if backend == "torch":
        return _remap_torch(image, *geometry.maps(), value)
    if geometry.curl is None:
        half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
        m = np.linalg.inv(half) @ np.linalg.inv(geometry.homography) @ half  # original -> output, pixel indices
        return cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=value)
    mx, my = geometry.maps()
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=value)


def _torch():
    try:
        import torch
    except ImportError as e:
        raise RuntimeError("dewarp.remap=torch needs PyTorch: pip install torch") from e
    return torch


def torch_cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device (imports torch only when asked)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _remap_torch(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, border: tuple[float, ...]) -> np.ndarray:
    """cv2.remap's bilinear sampling through ``torch.nn.functional.grid_sample``."""
    torch = _torch()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    h, w = image.shape[:2]
    img = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float()
    # one extra channel marks where the source exists, to paint the border colour outside it
    img = torch.cat([img, torch.ones_like(img[:, :1])], dim=1)
    gx = torch.from_numpy(map_x).to(device) * (2.0 / max(w - 1, 1)) - 1.0
    gy = torch.from_numpy(map_y).to(device) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[None]
    out = torch.nn.functional.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    inside = out[:, 3:4]
    colour = torch.tensor(border[:3], dtype=out.dtype, device=device).view(1, 3, 1, 1)
    rgb = out[:, :3] + (1.0 - inside) * colour
    return rgb[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


# --------------------------------------------------------------------------- page outline


def _order_corners(pts: np.ndarray) -> np.ndarray:
    """Four points clockwise (as displayed) from the one nearest the top-left."""
    pts = np.asarray(pts, np.float64).reshape(4, 2)
    c = pts.mean(axis=0)
    ang = np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0])
    pts = pts[np.argsort(ang)]  # y down: increasing angle is clockwise on screen
    start = int(np.argmin(pts.sum(axis=1)))
    return np.roll(pts, -start, axis=0)


def _line_through(points: np.ndarray) -> np.ndarray:
    """Homogeneous line (a, b, c), a x + b y + c = 0, fitted to points (robust Huber fit)."""
    vx, vy, x0, y0 = cv2.fitLine(points.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
    return np.array([vy, -vx, vx * y0 - vy * x0], np.float64)


def _refine_quad(gray: np.ndarray, quad: np.ndarray, reach: float) -> np.ndarray:
    """Move each side of ``quad`` onto the strongest bright-to-dark edge within ``reach`` px, subpixel."""
    g = cv2.GaussianBlur(gray, (0, 0), 1.2).astype(np.float32)
    lines = []
    n_samples, offsets = 48, np.arange(-reach, reach + 1, 1.0)
    centre = quad.mean(axis=0)
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        t = np.linspace(0.12, 0.88, n_samples)[:, None]
        base = a + (b - a) * t
        d = (b - a) / max(np.linalg.norm(b - a), 1e-9)
        normal = np.array([d[1], -d[0]])
        if np.dot(normal, (a + b) / 2 - centre) < 0:
            normal = -normal  # pointing out of the page
        pts = base[:, None, :] + offsets[None, :, None] * normal[None, None, :]
        prof = cv2.remap(g, pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        drop = prof[:, :-2] - prof[:, 2:]  # brightness falling outwards, centred difference
        k = np.argmax(drop, axis=1)
        k = np.clip(k, 1, drop.shape[1] - 2)
        rows = np.arange(len(k))
        y0, y1, y2 = drop[rows, k - 1], drop[rows, k], drop[rows, k + 1]
        den = y0 - 2 * y1 + y2
        sub = np.where(np.abs(den) > 1e-6, 0.5 * (y0 - y2) / np.where(np.abs(den) > 1e-6, den, 1.0), 0.0)
        pos = offsets[0] + k + 1 + np.clip(sub, -1, 1)
        strong = y1 > max(8.0, 0.4 * float(np.median(y1)))
        if strong.sum() < 8:
            return quad
        edge = base[strong] + pos[strong, None] * normal
        lines.append(_line_through(edge))
    out = []
    for i in range(4):
        p = np.cross(lines[(i - 1) % 4], lines[i])
        if abs(p[2]) < 1e-9:
            return quad
        out.append(p[:2] / p[2])
    out = np.asarray(out)
    if np.abs(out - quad).max() > 2 * reach:
        return quad
    return out


def find_page_quad(gray: np.ndarray, min_area: float = 0.2) -> tuple[np.ndarray | None, str | None]:
    """The corners of a bright page on a darker background, or why there is none.

    Args:
        gray: (H, W) uint8 page.
        min_area: smallest page, as a fraction of the image.

    Returns:
        ``(quad, None)`` with a (4, 2) float array clockwise from the top-left
        in the pixels of ``gray``, or ``(None, reason)``.
    """
    h, w = gray.shape
    scale = min(1.0, 512.0 / max(h, w))
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (5, 5), 0)
    thresh, bright = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    lo, hi = small[bright == 0], small[bright > 0]
    if lo.size == 0 or hi.size == 0 or float(hi.mean()) - float(lo.mean()) < 40:
        return None, "no page outline (no bright page on a darker background)"
    k = max(3, round(min(small.shape) / 60)) | 1
    bright = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None, "no page outline"
    contour = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(contour)
    img_area = float(small.shape[0] * small.shape[1])
    if area < min_area * img_area:
        return None, "no page outline (largest bright region too small)"
    hull = cv2.convexHull(contour)
    peri = cv2.arcLength(hull, True)
    approx = None
    for eps in (0.01, 0.02, 0.03, 0.045, 0.06):
        a = cv2.approxPolyDP(hull, eps * peri, True)
        if len(a) == 4:
            approx = a
            break
    if approx is None:
        return None, "no page outline (bright region is not a quadrilateral)"
    quad = _order_corners(approx.reshape(4, 2))
    if not cv2.isContourConvex(quad.astype(np.float32)):
        return None, "no page outline (not convex)"
    qarea = cv2.contourArea(quad.astype(np.float32))
    if area < 0.92 * qarea or qarea > 0.985 * img_area:
        return None, "page fills the image" if qarea > 0.985 * img_area else "no page outline (not quadrilateral)"
    # the page must stand out from all of its surroundings, not from a shadow along one edge
    inside = np.zeros(small.shape, np.uint8)
    cv2.fillPoly(inside, [np.round(quad).astype(np.int32)], 1)
    paper = float(np.median(small[inside > 0]))
    outside = small[cv2.dilate(inside, np.ones((5, 5), np.uint8)) == 0]
    if outside.size and float(np.mean(outside > paper - 40)) > 0.15:
        return None, "no page outline (the surroundings are as bright as the page)"
    for i in range(4):
        u, v = quad[i - 1] - quad[i], quad[(i + 1) % 4] - quad[i]
        cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-9))
        if abs(cos) > 0.6:  # corners between about 53 and 127 degrees
            return None, "no page outline (implausible corner angles)"
    quad = quad / scale
    quad = _refine_quad(gray, quad, reach=max(6.0, 2.5 / scale))
    return quad, None


def _axis_aligned(quad: np.ndarray, tol: float) -> bool:
    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return bool(np.abs(quad - box).max() <= tol)


def _page_aspect(quad: np.ndarray, w: int, h: int) -> float:
    """Width / height of the real page behind a perspective quad (Zhang and He 2007).

    The focal length is estimated from the quad with the principal point at
    the image centre; when that fails (a nearly affine view) the mean side
    lengths give the ratio.
    """
    tl, tr, br, bl = quad
    top, bottom = np.linalg.norm(tr - tl), np.linalg.norm(br - bl)
    left, right = np.linalg.norm(bl - tl), np.linalg.norm(br - tr)
    fallback = (top + bottom) / max(left + right, 1e-9)
    c = np.array([w / 2.0, h / 2.0])
    m1, m2, m3, m4 = (np.append(p - c, 1.0) for p in (tl, tr, bl, br))
    try:
        k2 = np.dot(np.cross(m1, m4), m3) / np.dot(np.cross(m2, m4), m3)
        k3 = np.dot(np.cross(m1, m4), m2) / np.dot(np.cross(m3, m4), m2)
        n2, n3 = k2 * m2 - m1, k3 * m3 - m1
        den = n2[2] * n3[2]
        if abs(den) < 1e-9:
            return float(fallback)
        f2 = -(n2[0] * n3[0] + n2[1] * n3[1]) / den
        if not np.isfinite(f2) or f2 <= 0:
            return float(fallback)
        ratio = math.sqrt((n2[0] ** 2 / f2 + n2[1] ** 2 / f2 + n2[2] ** 2) / (n3[0] ** 2 / f2 + n3[1] ** 2 / f2 + n3[2] ** 2))
    except (FloatingPointError, ZeroDivisionError, ValueError):
        return float(fallback)
    if not np.isfinite(ratio) or abs(ratio / fallback - 1) > 0.3:
        return float(fallback)
    return float(ratio)


# --------------------------------------------------------------------------- text analysis


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """Dark marks on a lighter ground (uint8 0/1): adaptive threshold, specks removed."""
    block = max(15, (min(gray.shape) // 40) | 1)
    ink = cv2.adaptiveThreshold(gray, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 12)
    return cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))


def _char_height(ink: np.ndarray) -> float | None:
    """Median height of character-sized ink components, None when there are too few."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if n < 2:
        return None
    hs, ws, areas = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_AREA]
    keep = (areas >= 6) & (hs >= 3) & (hs <= ink.shape[0] / 15) & (ws <= 4 * hs) & (hs <= 4 * ws)
    if keep.sum() < 20:
        return None
    return float(np.median(np.maximum(hs[keep], ws[keep])))


def _sharpness(xs: np.ndarray, ys: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Projection-profile sharpness for text lines at each angle: 1.0 for evenly spread ink, more for lines.

    A line at angle a (counterclockwise as displayed, y down) runs along
    (cos a, -sin a); its points share r = x sin a + y cos a. The sum of squared
    bin counts is scaled by the number of bins over the squared number of
    points, so profiles of different lengths compare.
    """
    out = np.empty(len(angles_deg))
    n = len(xs)
    for i, a in enumerate(np.radians(angles_deg)):
        r = xs * math.sin(a) + ys * math.cos(a)
        r = (r - r.min()).astype(np.int64)
        counts = np.bincount(r)
        out[i] = float(np.dot(counts, counts)) * len(counts) / (n * n)
    return out


def text_angle(
    ink: np.ndarray, max_skew: float, max_points: int = 20000
) -> tuple[float, float, float, float] | None:
    """The angle of the text lines, and how clearly the two line directions differ.

    Args:
        ink: uint8 0/1 mask of dark marks.
        max_skew: search within this many degrees of the horizontal and the vertical.

    Returns:
        ``(angle, sharpness, other, other_angle)``: the line angle in degrees
        (counterclockwise as displayed, in [-max_skew, max_skew] or
        [90 - max_skew, 90 + max_skew]), the profile sharpness there (1.0 for
        evenly spread ink), and the best sharpness and its angle (to half a
        degree) in the other direction; None when there is too little ink.
    """
    ys, xs = np.nonzero(ink)
    if len(xs) < 200:
        return None
    if len(xs) > max_points:
        pick = np.random.default_rng(0).choice(len(xs), max_points, replace=False)
        xs, ys = xs[pick], ys[pick]
    xs, ys = xs.astype(np.float64), ys.astype(np.float64)
    coarse = np.arange(-max_skew, max_skew + 1e-9, 0.5)
    s0 = _sharpness(xs, ys, coarse)
    s1 = _sharpness(xs, ys, coarse + 90)
    if s0.max() >= s1.max():
        base, best, other, other_angle = 0.0, float(coarse[np.argmax(s0)]), float(s1.max()), 90 + float(coarse[np.argmax(s1)])
    else:
        base, best, other, other_angle = 90.0, float(coarse[np.argmax(s1)]), float(s0.max()), float(coarse[np.argmax(s0)])
    fine = best + np.arange(-0.6, 0.6 + 1e-9, 0.05)
    sf = _sharpness(xs, ys, fine + base)
    k = int(np.argmax(sf))
    angle = float(fine[k])
    if 0 < k < len(sf) - 1:  # parabola through the peak
        den = sf[k - 1] - 2 * sf[k] + sf[k + 1]
        if den < 0:
            angle += 0.05 * 0.5 * (sf[k - 1] - sf[k + 1]) / den
    return angle + base, float(sf[k]), other, other_angle


def _line_blobs(ink_u: np.ndarray, ch: float) -> tuple[int, np.ndarray, np.ndarray]:
    """Text lines of an upright ink mask: ink closed horizontally over word gaps, then labelled."""
    kw = max(3, int(round(1.2 * ch)))
    closed = cv2.morphologyEx(ink_u, cv2.MORPH_CLOSE, np.ones((1, kw), np.uint8))
    return cv2.connectedComponentsWithStats(closed, connectivity=8)[:3]


def _centre_points(ink_u: np.ndarray, labels: np.ndarray, stats: np.ndarray, ch: float):
    """Centre-curve samples of every line blob: (x, y, line) per bin of about one x-height."""
    hs, ws = stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_WIDTH]
    good = (ws >= 6 * ch) & (hs >= 0.5 * ch) & (hs <= 3.5 * ch)
    good[0] = False
    ys, xs = np.nonzero(ink_u)
    lab = labels[ys, xs]
    keep = good[lab]
    xs, ys, lab = xs[keep], ys[keep], lab[keep]
    if len(xs) == 0:
        return np.zeros((0, 3))
    bw = max(2, int(round(ch)))
    nb = ink_u.shape[1] // bw + 1
    key = lab.astype(np.int64) * nb + xs // bw
    uniq, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    sx = np.bincount(inv, weights=xs)
    sy = np.bincount(inv, weights=ys)
    ok = counts >= max(3, 0.15 * ch * bw / 2)
    pts = np.stack([sx[ok] / counts[ok], sy[ok] / counts[ok], (uniq[ok] // nb).astype(np.float64)], axis=1)
    # lines with too few samples say nothing about curvature
    ids, n_per = np.unique(pts[:, 2], return_counts=True)
    return pts[np.isin(pts[:, 2], ids[n_per >= 6])]


def fit_curl(points: np.ndarray, width: int, height: int, degree_x: int = 5, degree_y: int = 2):
    """Fit y = y0[line] + d(x, y) to centre-curve samples; returns (model, per-line sag, rms before, rms after).

    ``sag`` is, per line, the range of d along the line minus its best straight
    line (so tilt alone is not curl).
    """
    x, y, line = points[:, 0], points[:, 1], points[:, 2].astype(np.int64)
    ids, idx = np.unique(line, return_inverse=True)
    cx, cy, sx, sy = width / 2.0, height / 2.0, width / 2.0, height / 2.0
    xn, yn = (x - cx) / sx, (y - cy) / sy
    x_range = (float(xn.min()), float(xn.max()))
    y_range = (float(yn.min()), float(yn.max()))
    px = np.stack([xn ** (i + 1) for i in range(degree_x)], axis=1)
    py = np.stack([yn**j for j in range(degree_y + 1)], axis=1)
    basis = (px[:, :, None] * py[:, None, :]).reshape(len(x), -1)
    n_lines, n_basis = len(ids), basis.shape[1]

    def line_mean(v: np.ndarray, w: np.ndarray) -> np.ndarray:
        # per-line weighted mean of v (N,) or (N, k), gathered back to the samples
        tot = np.maximum(np.bincount(idx, weights=w, minlength=n_lines), 1e-9)
        if v.ndim == 1:
            return (np.bincount(idx, weights=v * w, minlength=n_lines) / tot)[idx]
        cols = [np.bincount(idx, weights=v[:, j] * w, minlength=n_lines) / tot for j in range(v.shape[1])]
        return np.stack(cols, axis=1)[idx]

    # The free height per line is eliminated by centring y and the basis within each line (a
    # fixed-effects fit), which leaves a small normal-equation system; a ridge keeps it smooth.
    weights = np.ones(len(x))
    ridge = 1e-3 * len(x)
    for _ in range(2):  # one reweighting pass drops outlying samples (ascender-heavy words, touching lines)
        bc = basis - line_mean(basis, weights)
        yc = y - line_mean(y, weights)
        bw = bc * weights[:, None]
        coef_flat = np.linalg.solve(bw.T @ bc + ridge * np.eye(n_basis), bw.T @ yc)
        resid = yc - bc @ coef_flat
        mad = float(np.median(np.abs(resid[weights > 0]))) + 1e-6
        weights = (np.abs(resid) < 4 * 1.4826 * mad).astype(np.float64)
    coef = coef_flat.reshape(degree_x, degree_y + 1)
    model = CurlModel(coef, cx, cy, sx, sy, x_range, y_range)

    def line_detrend(v: np.ndarray) -> np.ndarray:
        # v minus its least-squares straight line in x, per line (closed form)
        ones = np.ones(len(x))
        xm, vm = line_mean(x, ones), line_mean(v, ones)
        dx = x - xm
        slope = (np.bincount(idx, weights=dx * (v - vm), minlength=n_lines)
                 / np.maximum(np.bincount(idx, weights=dx * dx, minlength=n_lines), 1e-9))[idx]
        return v - vm - slope * dx

    rms_before = math.sqrt(float(np.mean(line_detrend(y) ** 2)))
    dev = line_detrend(model.displacement(x, y))
    hi = np.full(n_lines, -np.inf)
    lo = np.full(n_lines, np.inf)
    np.maximum.at(hi, idx, dev)
    np.minimum.at(lo, idx, dev)
    sags = hi - lo
    rms_after = math.sqrt(float(np.sum((resid * weights) ** 2)) / max(weights.sum(), 1))
    return model, np.asarray(sags), rms_before, rms_after


# --------------------------------------------------------------------------- the dewarper


def _rotation_about(size: tuple[float, float], angle_ccw: float) -> tuple[np.ndarray, tuple[int, int]]:
    """3x3 rotation by ``angle_ccw`` degrees (as displayed) of a (w, h) page onto a canvas holding all of it."""
    w, h = size
    m = np.vstack([cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_ccw, 1.0), [0, 0, 1]])
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64) @ m.T
    x0, y0 = corners[:, :2].min(axis=0)
    x1, y1 = corners[:, :2].max(axis=0)
    nw, nh = int(round(x1 - x0)), int(round(y1 - y0))
    m[0, 2] -= x0
    m[1, 2] -= y0
    return m, (nw, nh)


class Dewarper:
    """Flatten one page: outline and perspective, orientation, skew, curl (see the module docstring).

    Args:
        config: the ``dewarp`` section.
        recognize: optional ``crops -> [(text, confidence)]``; without it the
            0/180 (and 90/270) decision is not made and such pages are only
            levelled to the nearer of the two.
        upside_down: optional ``crops -> P(upside down)`` per crop (PP-OCR's
            line classifier): a quick first look that spares reading the lines
            both ways up when they are clearly upright.
    """

    def __init__(self, config: DewarpConfig, recognize: Recognize | None = None,
                 upside_down: Callable[[list[np.ndarray]], np.ndarray] | None = None):
        self.config = config
        self.recognize = recognize
        self.upside_down = upside_down
        backend = config.remap
        if backend == "auto":
            backend = "torch" if torch_cuda_available() else "opencv"
        self.backend = backend

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, PageGeometry]:
        """Dewarp one RGB uint8 page; the page itself comes back when nothing needs doing."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) page, got {image.dtype} of shape {image.shape}")
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE:
            return image, PageGeometry(skipped=f"image too small ({w}x{h})", size=(h, w))
        cfg = self.config
        notes: list[str] = []
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)

        # 1. page outline -> rectified frame R (h_ro: original -> R)
        quad = None
        h_ro, (wr, hr) = np.eye(3), (w, h)
        if cfg.perspective:
            quad, why = find_page_quad(gray)
            if quad is not None and _axis_aligned(quad, 0.01 * math.hypot(w, h)):
                quad, why = None, "page outline is an upright rectangle: left as is"
            if quad is None:
                notes.append(why or "no page outline")
            else:
                tl, tr, br, bl = quad
                wr = int(round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))))
                hr = int(round(wr / _page_aspect(quad, w, h)))
                dst = np.array([[0, 0], [wr, 0], [wr, hr], [0, hr]], np.float32)
                h_ro = cv2.getPerspectiveTransform(quad.astype(np.float32), dst).astype(np.float64)

        # 2. reduced, rectified grey page for the analysis
        a = min(1.0, cfg.analysis_side / max(wr, hr))
        pre = min(1.0, cfg.analysis_side / max(w, h)) if quad is None else min(1.0, 1.5 * cfg.analysis_side / max(w, h))
        small = cv2.resize(gray, (max(1, round(w * pre)), max(1, round(h * pre))), interpolation=cv2.INTER_AREA)
        s_a = np.diag([a, a, 1.0])
        g_small = s_a @ h_ro @ np.diag([1 / pre, 1 / pre, 1.0])
        aw, ah = max(1, round(wr * a)), max(1, round(hr * a))
        if quad is not None or (aw, ah) != small.shape[::-1]:
            small = cv2.warpPerspective(small, g_small, (aw, ah), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ink = ink_mask(small)
        ch = _char_height(ink)
        rotation, skew = 0, 0.0
        result = None
        if ch is None:
            notes.append("no text found: orientation, skew and curl left alone")
        elif cfg.orientation or cfg.deskew:
            result = text_angle(ink, cfg.max_skew_deg)
            if result is None:
                notes.append("too little ink to measure orientation or skew")
        candidates: list[tuple[int, float]] = []  # (clockwise quarter turn, skew), most likely first
        if result is not None:
            angle, sharp, other, other_angle = result
            if sharp < 1.15 * other or sharp < 1.5:
                notes.append("no clear text-line direction: orientation and skew left alone")
            else:
                for ang in (angle, other_angle) if sharp < 2.0 * other else (angle,):
                    family = 90 if ang > 45 else 0
                    small_angle = ang - family
                    if not cfg.orientation and family == 90:
                        continue
                    sk = round(small_angle, 2) if cfg.deskew and abs(small_angle) >= cfg.min_skew_deg else 0.0
                    candidates.append((family, sk))  # 90: turned clockwise; the recogniser may make it 270
                if not candidates:
                    notes.append("text lines vertical but orientation is off")
        if candidates:
            rotation, skew = candidates[0]
        if candidates and self.recognize is not None and cfg.orientation:
            # the lines each candidate frame would check, found once for the classifier and the reading
            found = [self._check_crops(image, ink, a, self._frame(h_ro, (wr, hr), rot, sk)[0], h_ro, ch)
                     for rot, sk in candidates]
            if not (len(candidates) == 1 and self._clearly_upright(found[0])):
                best, scored, first_lines = None, False, 0
                for rank, ((rot, sk), lines) in enumerate(zip(candidates, found)):
                    score = self._reading_score(lines)
                    if score is None:
                        continue
                    up, down, n_lines = score
                    if rank == 0:
                        first_lines = n_lines
                    elif n_lines < 0.5 * first_lines:
                        # far fewer text lines across this direction: a few vertical labels (a form number
                        # printed up the margin) read well, but the page's text does not run this way
                        continue
                    scored = True
                    # the profile's first choice, upright, wins ties; anything else must win by the margin
                    for value, r in ((up - (cfg.orientation_margin if rank else 0.0), rot),
                                     (down - cfg.orientation_margin, (rot + 180) % 360)):
                        if best is None or value > best[0]:
                            best = (value, r, sk)
                if not scored:
                    notes.append("no text lines to check which way up")
                elif best[0] < 0.5:
                    notes.append("text lines read poorly every way up: orientation left as measured")
                else:
                    rotation, skew = best[1], best[2]
        # U frame: R turned by -(rotation + skew) degrees counterclockwise
        m_ur, (wu, hu) = self._frame(h_ro, (wr, hr), rotation, skew)
        # 3. curl, measured on the upright ink
        curl = None
        if cfg.curl and ch is not None:
            curl, why = self._curl(ink, a, m_ur, (wu, hu), ch)
            if why:
                notes.append(why)
        homography = np.linalg.inv(m_ur @ h_ro)  # U -> original
        geometry = PageGeometry(
            rotation=rotation, skew_deg=skew, quad=quad, curl_corrected=curl is not None,
            skipped="; ".join(notes) or None, size=(hu, wu), homography=homography, curl=curl,
        )
        if quad is None and rotation == 0 and skew == 0.0 and curl is None:
            return image, PageGeometry(skipped=geometry.skipped or "nothing to correct", size=(h, w))
        border = np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0)
        return remap(image, geometry, self.backend, border), geometry

    @staticmethod
    def _frame(h_ro: np.ndarray, size_r: tuple[int, int], rotation: int, skew: float):
        """R -> U: turn the rectified page clockwise by ``rotation`` and level a ``skew``."""
        return _rotation_about(size_r, -(rotation + skew))

    def _upright_lines(self, ink: np.ndarray, a: float, m_ur: np.ndarray, ch: float):
        """Line boxes (x0, y0, x1, y1) of the ink turned into the U frame, at analysis scale."""
        s = np.diag([a, a, 1.0])
        m = (s @ m_ur @ np.linalg.inv(s))[:2]
        h, w = ink.shape
        corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64) @ m.T
        wu, hu = int(math.ceil(corners[:, 0].max())), int(math.ceil(corners[:, 1].max()))
        ink_u = cv2.warpAffine(ink, m, (max(1, wu), max(1, hu)), flags=cv2.INTER_NEAREST)
        return ink_u

    def _clearly_upright(self, found: tuple[list[np.ndarray], int] | None) -> bool:
        """Whether the line classifier finds the lines of the one candidate frame (``_check_crops``)
        upright beyond doubt.

        Reading lines both ways up is most of dewarping's time on a flat scan;
        this spares it on pages the classifier is sure of. Anything less than
        sure goes to the recognition check, which alone may turn a page."""
        if self.upside_down is None or found is None or len(found[0]) < 2:
            return False
        return float(np.mean(self.upside_down(found[0]))) < UPRIGHT_MAX_P

    def _check_crops(self, image, ink, a, m_ur, h_ro, ch) -> tuple[list[np.ndarray], int] | None:
        """Crops of a few long text lines of the U frame (as drawn), and how many text-line blobs it has."""
        ink_u = self._upright_lines(ink, a, m_ur, ch)
        n, labels, stats = _line_blobs(ink_u, ch)
        if n < 2:
            return None
        ws, hs = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
        fill = np.bincount(labels[ink_u > 0], minlength=n)[1:] / np.maximum(ws * hs, 1)
        # text, not rules or box outlines: x-height-sized, wide, partly inked
        good = np.flatnonzero((ws >= 5 * hs) & (hs >= 0.7 * ch) & (hs <= 2.5 * ch) & (fill > 0.12) & (fill < 0.6)) + 1
        if len(good) == 0:
            return None
        n_lines = len(good)
        good = good[np.argsort(-stats[good, cv2.CC_STAT_WIDTH])][: self.config.orientation_lines]
        to_orig = np.linalg.inv(m_ur @ h_ro) @ np.diag([1 / a, 1 / a, 1.0])
        crops = []
        for i in good:
            x, y, bw, bh = stats[i, :4].astype(np.float64)
            bw = min(bw, 8 * ch)  # a few words decide it; long rows only cost recognition time
            pad = 0.25 * bh
            box = np.array([[x - pad, y - pad, 1], [x + bw + pad, y - pad, 1], [x + bw + pad, y + bh + pad, 1],
                            [x - pad, y + bh + pad, 1]])
            q = box @ to_orig.T
            q = (q[:, :2] / q[:, 2:]).astype(np.float32)
            crop = crop_quad(image, q)
            if crop.shape[0] > crop.shape[1]:  # crop_quad turned it; this check wants it as drawn
                continue
            crops.append(crop)
        if not crops:
            return None
        return crops, n_lines

    def _reading_score(self, found: tuple[list[np.ndarray], int] | None) -> tuple[float, float, int] | None:
        """Mean recognition confidence of a few long lines of a U frame (``_check_crops``) read upright
        and upside down.

        Returns ``(upright, upside_down, lines)``, ``lines`` the number of text-line
        blobs the frame has (how much of the page's text runs this way)."""
        if found is None:
            return None
        crops, n_lines = found
        conf = np.zeros((2, 0))
        for part in (crops[:2], crops[2:]):  # two lines first: most pages are decided by them
            if not part:
                break
            results = self.recognize(part + [np.ascontiguousarray(c[::-1, ::-1]) for c in part])
            conf = np.hstack([conf, np.array([r[1] if len(r[0].strip()) >= 2 else 0.0 for r in results]).reshape(2, -1)])
            # a blob that reads as nothing either way up (a rule, a stamp, a logo) says nothing about the page
            text = conf.max(axis=0) > 0
            if text.sum() >= 2 and abs(float(np.diff(conf[:, text].mean(axis=1))[0])) >= DECISIVE:
                break
        if text.sum() < 2:  # one line is too easily misread
            return None
        up, down = (float(v) for v in conf[:, text].mean(axis=1))
        log.debug("orientation check on %d lines: upright %.3f, upside down %.3f", int(text.sum()), up, down)
        return up, down, n_lines

    def _curl(self, ink, a, m_ur, size_u, ch) -> tuple[CurlModel | None, str | None]:
        ink_u = self._upright_lines(ink, a, m_ur, ch)
        n, labels, stats = _line_blobs(ink_u, ch)
        pts = _centre_points(ink_u, labels, stats, ch)
        n_lines = len(np.unique(pts[:, 2])) if len(pts) else 0
        if n_lines < self.config.curl_min_lines:
            return None, f"curl: {n_lines} text lines found, fewer than {self.config.curl_min_lines}"
        wu, hu = size_u
        model, sags, before, after = fit_curl(pts, wu * a, hu * a)
        sag = float(np.percentile(sags, 90))
        if sag < self.config.curl_min_sag * ch or after > 0.8 * before:
            return None, None  # flat: nothing to say
        log.debug("curl: %d lines, sag %.1f px (x-height %.1f), rms %.2f -> %.2f", n_lines, sag, ch, before, after)
        return model.scaled(1.0 / a), None
