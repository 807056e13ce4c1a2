"""A validating reader for IDX files (the MNIST / Fashion-MNIST format), plain or gzipped.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code byte, a byte
giving the number of dimensions ``ndim``, then ``ndim`` big-endian uint32 sizes, then the data in C
order, big-endian. Anything else (bad magic, unknown type code, a file shorter or longer than its header
says, a corrupt gzip stream) is a ValueError naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx", "open_maybe_gzip"]

# type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def open_maybe_gzip(path: str | Path) -> bytes:
    """The (decompressed) bytes of ``path``; gzip is detected by its magic bytes, not the file name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; truncation is EOFError
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file into a native-endian numpy array of the shape its header gives.

    Args:
        path: the file, plain or gzip-compressed.
    Returns:
        array of shape ``dims`` and the header's dtype (uint8 for MNIST images and labels).
    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: bad magic bytes, unknown type code, or a length that disagrees with the header.
    """
    path = Path(path)
    data = open_maybe_gzip(path)
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: bad IDX magic {data[:4].hex()} (must start with two zero bytes)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x} "
                         f"(known: {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(f"{path}: file {kind}: {len(data)} bytes but header dims {dims} need {expected}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))
