"""Reader for CTranslate2's ``model.bin`` (numpy only; no ctranslate2 or torch needed).

Layout (little endian, binary versions 5 and 6, as written by ``ctranslate2.specs.ModelSpec.save``)::

    uint32   binary version
    string   spec name                      (uint16 length incl. trailing NUL, then bytes)
    uint32   spec revision
    uint32   number of variables
    per variable:
        string  name
        uint8   rank
        uint32  dims[rank]
        uint8   dtype id                    (CTranslate2 ``DataType`` enum, see :data:`DTYPES`)
        uint32  number of bytes
        bytes   raw data (row major)
    uint32   number of aliases
    per alias: string alias, string target

Quantised weights (``int8``/``int16``) come with a float ``<name>_scale`` holding one scale per
output row; the float value is ``w = q / scale``. :func:`read_model_bin` returns every variable
dequantised to float32 (scalars and integer metadata such as ``num_heads`` keep their dtype).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vocalis.errors import ModelError

#: CTranslate2 ``DataType`` ids (``include/ctranslate2/types.h``), checked against tiny.en's
#: ``model.bin``: ``encoder/num_heads`` is int16 (id 2), float weights of the packaged model are
#: float16 (id 4), the ``decoder/activation`` enum is int8 (id 1).
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),  # FLOAT32
    1: np.dtype("i1"),  # INT8
    2: np.dtype("<i2"),  # INT16
    3: np.dtype("<i4"),  # INT32
    4: np.dtype("<f2"),  # FLOAT16
    # 5: BFLOAT16 is handled separately (numpy has no bfloat16)
}
_BFLOAT16 = 5
SUPPORTED_VERSIONS = (5, 6)


@dataclass
class CT2Model:
    """Parsed ``model.bin``: spec name/revision, raw variables (as stored) and aliases."""

    spec: str
    revision: int
    binary_version: int
    raw: dict[str, np.ndarray]
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        """Variable ``name`` (following aliases), dequantised to float32 when it is a weight."""
        name = self.aliases.get(name, name)
        if name not in self.raw:
            raise ModelError(f"CTranslate2 model has no variable {name!r}")
        arr = self.raw[name]
        scale = self.raw.get(name + "_scale")
        if scale is not None and arr.dtype.kind == "i" and arr.ndim >= 1:
            s = scale.astype(np.float32).reshape((-1,) + (1,) * (arr.ndim - 1))
            return (arr.astype(np.float32) / s).astype(np.float32)
        if arr.dtype.kind == "f":
            return arr.astype(np.float32)
        return arr

    def scalar(self, name: str) -> int:
        """An integer metadata value such as ``encoder/num_heads``."""
        return int(np.asarray(self.get(name)).reshape(-1)[0])


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ModelError(f"{self.path}: truncated CTranslate2 model.bin (offset {self.pos}, need {n} bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        return int(struct.unpack("<" + fmt, self.take(size))[0])

    def string(self) -> str:
        n = self.unpack("H")
        return self.take(n).rstrip(b"\0").decode("utf-8")


def _decode(buf: bytes, dtype_id: int, dims: list[int], name: str, path: Path) -> np.ndarray:
    if dtype_id == _BFLOAT16:
        u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
        arr = u16.view(np.float32)
    elif dtype_id in DTYPES:
        arr = np.frombuffer(buf, dtype=DTYPES[dtype_id])
    else:
        raise ModelError(f"{path}: variable {name!r} has unknown CTranslate2 dtype id {dtype_id}")
    n = int(np.prod(dims)) if dims else 1
    if arr.size != n:
        raise ModelError(f"{path}: variable {name!r} holds {arr.size} values, its shape {dims} needs {n}")
    return arr.reshape(dims) if dims else arr.reshape(())


def read_model_bin(path: str | Path) -> CT2Model:
    """Parse ``model.bin`` (or the directory holding it) into a :class:`CT2Model`."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.bin"
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read CTranslate2 model {p}: {e}") from e
    cur = _Cursor(data, p)
    version = cur.unpack("I")
    if version not in SUPPORTED_VERSIONS:
        raise ModelError(f"{p}: CTranslate2 binary version {version} is not supported (need {SUPPORTED_VERSIONS})")
    spec = cur.string()
    revision = cur.unpack("I")
    raw: dict[str, np.ndarray] = {}
    for _ in range(cur.unpack("I")):
        name = cur.string()
        rank = cur.unpack("B")
        dims = [cur.unpack("I") for _ in range(rank)]
        dtype_id = cur.unpack("B")
        nbytes = cur.unpack("I")
        raw[name] = _decode(cur.take(nbytes), dtype_id, dims, name, p)
    aliases: dict[str, str] = {}
    if cur.pos < len(data):
        for _ in range(cur.unpack("I")):
            alias = cur.string()
            aliases[alias] = cur.string()
    return CT2Model(spec=spec, revision=revision, binary_version=version, raw=raw, aliases=aliases)


def read_weights(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """``name -> array`` of every variable whose name starts with ``prefix``, weights as float32.

    ``*_scale`` companions of quantised weights are folded into their weight and not returned.
    """
    m = read_model_bin(path)
    names = [n for n in list(m.raw) + list(m.aliases) if n.startswith(prefix)]
    quantised = {n for n in m.raw if n + "_scale" in m.raw and m.raw[n].dtype.kind == "i"}
    return {n: m.get(n) for n in names if not (n.endswith("_scale") and n[: -len("_scale")] in quantised)}
