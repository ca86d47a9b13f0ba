"""Readers for ASCII triangle-mesh files: Wavefront OBJ, OFF and PLY.

Each reader returns ``(vertices [V, 3] float64, faces [F, 3] int64)`` with 0-based indices; polygons
with more than three corners are split into a triangle fan. Validation of the geometry (index range,
degenerate faces, non-manifold edges) happens in :class:`funcgen.geometry.mesh.TriangleMesh`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_mesh_arrays", "write_obj", "FORMATS"]

FORMATS = {".obj": "Wavefront OBJ ('v x y z' and 'f i j k' lines, 1-based indices)",
           ".off": "OFF ('OFF' header, 'V F E' counts, V vertex lines, F 'n i0 .. i(n-1)' face lines)",
           ".ply": "ASCII PLY ('format ascii 1.0', element vertex with x y z, element face with a vertex index list)"}


def _fan(poly: list[int]) -> list[tuple[int, int, int]]:
    return [(poly[0], poly[i], poly[i + 1]) for i in range(1, len(poly) - 1)]


def _error(path: Path, line: int, msg: str, suffix: str) -> ValueError:
    return ValueError(f"{path}, line {line}: {msg}; expected {FORMATS[suffix]}")


def _read_obj(path: Path, lines: list[str]) -> tuple[list, list]:
    verts: list[list[float]] = []
    faces: list[tuple[int, int, int]] = []
    for no, raw in enumerate(lines, 1):
        parts = raw.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "v":
            try:
                verts.append([float(x) for x in parts[1:4]])
            except ValueError:
                raise _error(path, no, f"cannot parse vertex {raw.strip()!r}", ".obj") from None
            if len(verts[-1]) != 3:
                raise _error(path, no, f"vertex with {len(verts[-1])} coordinates", ".obj")
        elif parts[0] == "f":
            try:
                idx = [int(p.split("/")[0]) for p in parts[1:]]
            except ValueError:
                raise _error(path, no, f"cannot parse face {raw.strip()!r}", ".obj") from None
            if len(idx) < 3:
                raise _error(path, no, f"face with {len(idx)} corners", ".obj")
            if 0 in idx:
                raise _error(path, no, "face index 0 (OBJ indices start at 1)", ".obj")
            # negative indices count back from the last vertex read so far
            idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
            faces += _fan(idx)
    return verts, faces


def _counted_face(path: Path, no: int, p: list[str], fmt: str) -> list[int]:
    """Corner indices of a face row ``n i_1 ... i_n`` (the OFF and PLY layout), checked against ``n``."""
    try:
        n = int(p[0])
        idx = [int(x) for x in p[1:1 + n]]
    except (ValueError, IndexError):
        raise _error(path, no, f"cannot parse face {p}", fmt) from None
    if n < 3 or len(idx) != n:
        raise _error(path, no, f"face announces {n} corners but lists {len(idx)}", fmt)
    return idx


def _read_off(path: Path, lines: list[str]) -> tuple[list, list]:
    body = [(no, ln.split("#", 1)[0].split()) for no, ln in enumerate(lines, 1)]
    body = [(no, p) for no, p in body if p]
    if not body or not body[0][1][0].endswith("OFF"):
        raise _error(path, body[0][0] if body else 1, "missing 'OFF' header", ".off")
    head = body[0][1][1:] or (body.pop(1)[1] if len(body) > 1 else [])
    try:
        nv, nf = int(head[0]), int(head[1])
    except (ValueError, IndexError):
        raise _error(path, body[0][0], "missing vertex/face counts", ".off") from None
    rows = body[1:]
    if len(rows) < nv + nf:
        raise _error(path, len(lines), f"file announces {nv} vertices and {nf} faces but holds {len(rows)} rows",
                     ".off")
    verts, faces = [], []
    for no, p in rows[:nv]:
        try:
            verts.append([float(x) for x in p[:3]])
        except ValueError:
            raise _error(path, no, f"cannot parse vertex {p}", ".off") from None
    for no, p in rows[nv:nv + nf]:
        faces += _fan(_counted_face(path, no, p, ".off"))
    return verts, faces


def _read_ply(path: Path, lines: list[str]) -> tuple[list, list]:
    if not lines or lines[0].strip() != "ply":
        raise _error(path, 1, "missing 'ply' magic line", ".ply")
    elements: list[tuple[str, int, list[list[str]]]] = []
    end = None
    for no, raw in enumerate(lines[1:], 2):
        p = raw.split()
        if not p or p[0] in ("comment", "obj_info"):
            continue
        if p[0] == "format":
            if len(p) < 2 or p[1] != "ascii":
                raise _error(path, no, f"unsupported PLY format {' '.join(p[1:])!r} (only ASCII is read; convert "
                             "binary files, e.g. with meshio or trimesh)", ".ply")
        elif p[0] == "element":
            elements.append((p[1], int(p[2]), []))
        elif p[0] == "property":
            if not elements:
                raise _error(path, no, "property before any element", ".ply")
            elements[-1][2].append(p[1:])
        elif p[0] == "end_header":
            end = no
            break
    if end is None:
        raise _error(path, len(lines), "no 'end_header' line", ".ply")
    rows = [(no, ln.split()) for no, ln in enumerate(lines[end:], end + 1) if ln.split()]
    verts, faces, pos = [], [], 0
    for name, count, props in elements:
        chunk, pos = rows[pos:pos + count], pos + count
        if len(chunk) < count:
            raise _error(path, len(lines), f"element {name} announces {count} rows but the file ends early", ".ply")
        if name == "vertex":
            names = [q[-1] for q in props]
            if any(q[0] == "list" for q in props) or not {"x", "y", "z"} <= set(names):
                raise _error(path, end, "vertex element needs scalar x, y, z properties", ".ply")
            ix = [names.index(c) for c in "xyz"]
            for no, p in chunk:
                try:
                    verts.append([float(p[i]) for i in ix])
                except (ValueError, IndexError):
                    raise _error(path, no, f"cannot parse vertex {p}", ".ply") from None
        elif name == "face":
            if not props or props[0][0] != "list":
                raise _error(path, end, "face element must start with a vertex index list property", ".ply")
            for no, p in chunk:
                faces += _fan(_counted_face(path, no, p, ".ply"))
    return verts, faces


def read_mesh_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an ASCII ``.obj`` / ``.off`` / ``.ply`` file -> ``(vertices [V, 3], faces [F, 3])`` (0-based).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unknown extension, malformed content (with the line number), or no faces.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown mesh format {suffix!r}; supported: "
                         + "; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    if not path.is_file():
        raise FileNotFoundError(f"no mesh file at {path} (expected {FORMATS[suffix]})")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; expected {FORMATS[suffix]} (binary files are not read)") from None
    verts, faces = {".obj": _read_obj, ".off": _read_off, ".ply": _read_ply}[suffix](path, lines)
    if not verts or not faces:
        raise ValueError(f"{path}: found {len(verts)} vertices and {len(faces)} faces; expected {FORMATS[suffix]}")
    return np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64)


def write_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write an ASCII OBJ file (1-based indices)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for x in np.asarray(vertices):
            f.write("v " + " ".join(repr(float(c)) for c in x[:3]) + "\n")
        for t in np.asarray(faces) + 1:
            f.write(f"f {t[0]} {t[1]} {t[2]}\n")
    return path
