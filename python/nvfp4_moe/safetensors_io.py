"""A small safetensors reader and writer (no dependency beyond torch).

File layout: 8-byte little-endian header length N, N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``, then the data
buffer. The reader reads one tensor at a time (a MoE layer loads a fraction of a shard) and checks
each entry's size against its dtype and shape. A checkpoint directory is read through its
``model.safetensors.index.json`` when present, else through every ``*.safetensors`` file in it.
"""

from __future__ import annotations

import ctypes
import json
import struct
from pathlib import Path
from typing import Iterable, Mapping, Optional

import torch

_DTYPES: dict[str, torch.dtype] = {
    "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
    "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100_000_000


class SafetensorsFile:
    """One validated safetensors file; ``get(name)`` reads a tensor (CPU, contiguous)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ValueError(f"{self.path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", raw)
            size = self.path.stat().st_size
            if n > _MAX_HEADER or 8 + n > size:
                raise ValueError(f"{self.path}: header length {n} exceeds the file ({size} bytes)")
            header = json.loads(f.read(n).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError(f"{self.path}: the header is not a JSON object")
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._data_start = 8 + n
        self._entries: dict[str, tuple[torch.dtype, list[int], int, int]] = {}
        for name, e in header.items():
            dtype = _DTYPES.get(e.get("dtype"))
            if dtype is None:
                raise ValueError(f"{self.path}: tensor {name}: unsupported dtype {e.get('dtype')!r}")
            shape = [int(d) for d in e["shape"]]
            begin, end = (int(v) for v in e["data_offsets"])
            numel = 1
            for d in shape:
                numel *= d
            itemsize = torch.empty((), dtype=dtype).element_size()
            if end - begin != numel * itemsize or begin < 0 or self._data_start + end > size:
                raise ValueError(f"{self.path}: tensor {name}: data_offsets [{begin}, {end}] do not hold "
                                 f"shape {shape} of {e['dtype']} inside the file")
            self._entries[name] = (dtype, shape, begin, end)

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> torch.Tensor:
        if name not in self._entries:
            raise KeyError(f"{self.path}: no tensor named {name}")
        dtype, shape, begin, end = self._entries[name]
        with open(self.path, "rb") as f:
            f.seek(self._data_start + begin)
            data = bytearray(f.read(end - begin))
        if not data:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(data, dtype=torch.uint8).view(dtype).reshape(shape)


class Checkpoint:
    """Tensors of a checkpoint: one ``.safetensors`` file or a directory of shards."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.root = path if path.is_dir() else path.parent
        self._files: dict[str, SafetensorsFile] = {}
        self._where: dict[str, str] = {}
        if path.is_dir():
            index = path / "model.safetensors.index.json"
            if index.is_file():
                weight_map = json.loads(index.read_text())["weight_map"]
                files = sorted(set(weight_map.values()))
            else:
                files = sorted(p.name for p in path.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"{path}: no .safetensors files")
            for fname in files:
                self._add(path / fname)
        else:
            self._add(path)

    def _add(self, file: Path) -> None:
        st = SafetensorsFile(file)
        self._files[str(file)] = st
        for k in st.keys():
            if k in self._where:
                raise ValueError(f"tensor {k} appears in both {self._where[k]} and {file}")
            self._where[k] = str(file)

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str) -> torch.Tensor:
        if name not in self._where:
            raise KeyError(f"checkpoint {self.root}: missing tensor {name}")
        return self._files[self._where[name]].get(name)

    def get_optional(self, name: str) -> Optional[torch.Tensor]:
        return self.get(name) if name in self else None


def save_file(tensors: Mapping[str, torch.Tensor], path: str | Path,
              metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write ``tensors`` (any device; copied to the CPU) as one safetensors file."""
    header: dict = {}
    blobs: list[torch.Tensor] = []
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _NAMES:
            raise ValueError(f"save_file: tensor {name}: unsupported dtype {t.dtype}")
        t = t.detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + raw.numel()]}
        blobs.append(raw)
        offset += raw.numel()
    if metadata:
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # keep the data buffer 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            if raw.numel():
                f.write(ctypes.string_at(raw.data_ptr(), raw.numel()))


def load_file(path: str | Path, names: Optional[Iterable[str]] = None) -> dict[str, torch.Tensor]:
    """Read all (or the named) tensors of one file."""
    st = SafetensorsFile(path)
    return {k: st.get(k) for k in (names if names is not None else st.keys())}
