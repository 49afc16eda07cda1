"""Reader for CTranslate2's ``model.bin`` (no CTranslate2 runtime needed)."""

import struct
from pathlib import Path
from typing import Dict

import numpy as np
from typeguard import typechecked

from espnet_blsp.convert.common import ConversionError, PathLike

# CTranslate2 model.bin dtype codes -> (numpy dtype, torch dtype name).
_CT2_DTYPES = {
    0: (np.float32, "float32"),
    1: (np.int8, "int8"),
    2: (np.int16, "int16"),
    3: (np.int32, "int32"),
    4: (np.float16, "float16"),
    5: (np.uint16, "bfloat16"),  # raw bits, reinterpreted as bfloat16 below
}


class Ct2Model:
    """The variables of a CTranslate2 ``model.bin`` (format version 6).

    Attributes:
        spec: Spec name, e.g. ``"WhisperSpec"``.
        revision: Spec revision.
        variables: Variable name -> numpy array (scalars are 0-d arrays;
            bfloat16 data is kept as ``uint16`` bits, see ``torch_dtypes``).
        torch_dtypes: Variable name -> torch dtype name of the stored data.
        aliases: Alias name -> target variable name.
    """

    @typechecked
    def __init__(
        self,
        spec: str,
        revision: int,
        variables: Dict[str, np.ndarray],
        torch_dtypes: Dict[str, str],
        aliases: Dict[str, str],
    ):
        self.spec = spec
        self.revision = revision
        self.variables: Dict[str, np.ndarray] = variables
        self.torch_dtypes: Dict[str, str] = torch_dtypes
        self.aliases: Dict[str, str] = aliases

    def resolve(self, name: str) -> str:
        """Follow aliases to the name of a stored variable."""
        seen = set()
        while name in self.aliases:
            if name in seen:
                raise ConversionError(f"alias cycle at CT2 variable {name!r}")
            seen.add(name)
            name = self.aliases[name]
        return name

    def has(self, name: str) -> bool:
        """Whether ``name`` (or what it aliases) is a stored variable."""
        return self.resolve(name) in self.variables


@typechecked
def read_ct2_model_bin(path: PathLike) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (little-endian, binary version 6).

    Layout: uint32 version; spec name; uint32 revision; uint32 variable count;
    per variable: name, uint8 rank, rank x uint32 dims, uint8 dtype code,
    uint32 byte count, data; then uint32 alias count and (alias, target) name
    pairs. A name is a uint16 byte length followed by the bytes, NUL included.

    Args:
        path: The ``model.bin`` file.

    Returns:
        The parsed model.

    Raises:
        ConversionError: On an unsupported version/dtype or a malformed file.
    """
    buf = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def name() -> str:
        nonlocal pos
        (length,) = take("H")
        raw = buf[pos : pos + length]
        pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    (version,) = take("I")
    if version != 6:
        raise ConversionError(f"{path}: model.bin version {version}, only 6 is supported")
    spec = name()
    (revision,) = take("I")
    (count,) = take("I")
    variables, torch_dtypes = {}, {}
    for _ in range(count):
        var = name()
        (rank,) = take("B")
        dims = take("I" * rank) if rank else ()
        (code,) = take("B")
        (nbytes,) = take("I")
        if code not in _CT2_DTYPES:
            raise ConversionError(f"{path}: variable {var!r} has unknown dtype code {code}")
        np_dtype, torch_name = _CT2_DTYPES[code]
        expected = int(np.prod(dims, dtype=np.int64)) * np.dtype(np_dtype).itemsize
        if nbytes != expected:
            raise ConversionError(
                f"{path}: variable {var!r} {dims} holds {nbytes} bytes, expected {expected}"
            )
        array = np.frombuffer(buf, dtype=np_dtype, count=expected // np.dtype(np_dtype).itemsize,
                              offset=pos).reshape(dims)
        pos += nbytes
        variables[var] = array
        torch_dtypes[var] = torch_name
    (n_alias,) = take("I")
    aliases = {}
    for _ in range(n_alias):
        alias = name()
        aliases[alias] = name()
    if pos != len(buf):
        raise ConversionError(f"{path}: {len(buf) - pos} trailing bytes after the aliases")
    return Ct2Model(spec, revision, variables, torch_dtypes, aliases)

