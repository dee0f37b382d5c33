"""Reading dlib's own binary serialization (`dlib/serialize.h`, `dlib/dnn/*.h`) without dlib: no code runs.

Primitives, as dlib 19/20 write them:
- integers: a control byte (low 4 bits: how many little-endian bytes follow, 1-8; bit 7: negative), then the
  magnitude's bytes (`ser_helper::pack_int`); 0 is written as one zero byte after a control byte of 1
- floats: two integers, a signed 64-bit mantissa and a 16-bit exponent, value = mantissa * 2**exponent, the
  exponents 32000/32001/32002 meaning +inf/-inf/NaN (`float_details`); the older ASCII form is not read
- bool: the byte '1' or '0'; string: its length (an integer), then the bytes
- tensor (`resizable_tensor`, version 2): num_samples, k, nr, nc, then raw little-endian float32 data;
  `alias_tensor` (version 1): the four sizes only (a view into a layer's `params`)

`DlibStream.layer()` reads the details of one dnn layer (`con_`, `affine_` or `bn_` folded to affine, `relu_`,
`max_pool_`, `avg_pool_`, `add_prev_`, `fc_`) from its version string; which layers a network holds in which
nesting is in its C++ type, not in the file, so a network's reader (e.g. `models.dlib_face`) walks the stream.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import CheckpointError

__all__ = ["DlibLayer", "DlibStream", "DlibFormatError"]

# float_details' special exponents
_INF, _NINF, _NAN = 32000, 32001, 32002


class DlibFormatError(Exception):
    """Raised inside `DlibStream` where the bytes are not what was expected; `DlibStream.fail` turns it into
    the CheckpointError a user sees."""


@dataclass
class DlibLayer:
    """One dnn layer's details: `kind` (con, affine, relu, max_pool, avg_pool, add_prev, fc), the version
    string it was stored with, its hyperparameters `attrs` and its weights `tensors` (float32 numpy arrays)."""

    kind: str
    version: str
    attrs: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)


class DlibStream:
    """A cursor over the bytes of a dlib-serialized file. Every read checks the bounds; malformed or truncated
    data raises `DlibFormatError` with the byte offset."""

    def __init__(self, data: bytes, path: str | os.PathLike = "stream"):
        self.data = memoryview(data)
        self.pos = 0
        self.path = path

    # -- primitives --------------------------------------------------------------------------------------

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise DlibFormatError(f"the file ends at byte {len(self.data)}, {n} more bytes were expected at byte "
                                  f"{self.pos} (truncated?)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        at = self.pos
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise DlibFormatError(f"byte {at} (0x{control:02x}) does not start an integer")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent == _INF:
            return math.inf
        if exponent == _NINF:
            return -math.inf
        if exponent == _NAN:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        at = self.pos
        ch = bytes(self._take(1))
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"byte {at} ({ch!r}) is not a bool ('0' or '1')")
        return ch == b"1"

    def string(self, max_len: int = 256) -> str:
        at = self.pos
        n = self.int()
        if not 0 <= n <= max_len:  # dlib allows any length; the names read here are short
            raise DlibFormatError(f"byte {at}: a string of length {n} is not a layer or version name")
        try:
            return bytes(self._take(n)).decode("ascii")
        except UnicodeDecodeError:
            raise DlibFormatError(f"byte {at}: the string is not ASCII") from None

    def version(self, expected: tuple[int, ...], what: str) -> int:
        at = self.pos
        v = self.int()
        if v not in expected:
            raise DlibFormatError(f"byte {at}: {what} version {v}, expected {' or '.join(map(str, expected))}")
        return v

    def tensor(self) -> np.ndarray:
        """A `resizable_tensor` as a float32 array [num_samples, k, nr, nc]."""
        self.version((2,), "tensor")
        at = self.pos
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0 or math.prod(shape) > len(self.data):
            raise DlibFormatError(f"byte {at}: tensor size {shape} is impossible")
        n = math.prod(shape)
        raw = self._take(4 * n)
        return np.frombuffer(raw, dtype="<f4", count=n).astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version((1,), "alias_tensor")
        return tuple(self.int() for _ in range(4))

    # -- dnn layers --------------------------------------------------------------------------------------

    def layer(self) -> DlibLayer:
        """The details of one dnn layer, by the version string it starts with."""
        at = self.pos
        version = self.string()
        read = _LAYERS.get(version)
        if read is None:
            raise DlibFormatError(f"byte {at}: unknown layer '{version}'")
        return read(self, version)

    def add_layer_state(self, version: int) -> None:
        """Skip what `add_layer` stores after its details (version 1-2): three flags and its runtime buffers
        (x_grad, cached_output, params_grad), which are not weights."""
        for _ in range(3):
            self.bool()
        for _ in range(3 if version >= 2 else 2):
            self.tensor()

    def input_add_layer_state(self, version: int) -> None:
        """The same for the `add_layer` over the input layer (version 2-3): flags, x_grad, cached_output,
        grad_final and (version 3) the sample expansion factor."""
        for _ in range(3):
            self.bool()
        for _ in range(3):
            self.tensor()
        if version >= 3:
            self.int()

    def fail(self, what: str, err: Exception, todo: str) -> CheckpointError:
        """The one-line error for `err` met while reading `what` (a name users know); `todo`: what to do."""
        if bytes(self.data[:3]) == b"BZh":
            todo = "it is bzip2-compressed: decompress it first (bunzip2)"
        return CheckpointError(f"{self.path}: not {what} ({err}); {todo}")


def _params(s: DlibStream, params: np.ndarray, *aliases: tuple[int, ...]) -> list[np.ndarray]:
    """Split a layer's flat `params` tensor into the views `aliases` describe, laid out one after another."""
    flat, out, off = params.reshape(-1), [], 0
    for shape in aliases:
        n = math.prod(shape)
        if off + n > flat.size:
            raise DlibFormatError(f"before byte {s.pos}: params hold {flat.size} values, fewer than the "
                                  f"{off + n} of the layer's weights")
        out.append(flat[off:off + n].reshape(shape))
        off += n
    if off != flat.size:
        raise DlibFormatError(f"before byte {s.pos}: params hold {flat.size} values, the weights {off}")
    return out


def _con(s: DlibStream, version: str) -> DlibLayer:
    if version not in ("con_4", "con_5", "con_6"):
        raise DlibFormatError(f"unsupported convolution version '{version}'")
    params = s.tensor()
    attrs = {k: s.int() for k in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}
    filters, biases = s.alias_tensor(), s.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.float()
    attrs["use_bias"] = s.bool() if version in ("con_5", "con_6") else True
    attrs["use_relu"] = s.bool() if version == "con_6" else False
    shapes = [filters] + ([(biases[1],)] if attrs["use_bias"] and math.prod(biases) else [])
    tensors = dict(zip(("weight", "bias"), _params(s, params, *shapes)))
    return DlibLayer("con", version, attrs, tensors)


def _affine(s: DlibStream, version: str) -> DlibLayer:
    if version not in ("affine_", "affine_2"):
        raise DlibFormatError(f"unsupported affine version '{version}'")
    params = s.tensor()
    gamma, beta = s.alias_tensor(), s.alias_tensor()
    mode = s.int()  # dlib's layer_mode: 0 CONV_MODE (per channel), 1 FC_MODE (per element)
    disabled = s.bool() if version == "affine_2" else False
    g, b = _params(s, params, gamma, beta) if not disabled else (np.ones(0), np.zeros(0))
    return DlibLayer("affine", version, {"mode": mode, "disabled": disabled},
                     {"gamma": g.reshape(-1), "beta": b.reshape(-1)})


def _bn(s: DlibStream, version: str) -> DlibLayer:
    """A batch norm stored where an affine layer is read: folded with its running statistics, as dlib's
    `affine_(const bn_&)` does (float32: gamma / sqrt(var + eps), beta - gamma' * mean)."""
    params = s.tensor()
    gamma, beta = s.alias_tensor(), s.alias_tensor()
    for _ in range(2):  # means, invstds of the last batch
        s.tensor()
    running_means, running_variances = s.tensor(), s.tensor()
    s.int()  # num_updates
    s.int()  # running_stats_window_size
    for _ in range(4):
        s.float()
    eps = np.float32(s.float())
    g, b = (t.reshape(-1) for t in _params(s, params, gamma, beta))
    scale = g / np.sqrt(running_variances.reshape(-1) + eps)
    shift = b - scale * running_means.reshape(-1)
    return DlibLayer("affine", version, {"mode": 0 if version == "bn_con2" else 1, "disabled": False},
                     {"gamma": scale.astype(np.float32), "beta": shift.astype(np.float32)})


def _relu(s: DlibStream, version: str) -> DlibLayer:
    return DlibLayer("relu", version, {"disabled": s.bool() if version == "relu_2" else False})


def _pool(kind: str):
    def read(s: DlibStream, version: str) -> DlibLayer:
        attrs = {k: s.int() for k in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}
        return DlibLayer(kind, version, attrs)

    return read


def _add_prev(s: DlibStream, version: str) -> DlibLayer:
    return DlibLayer("add_prev", version)


def _fc(s: DlibStream, version: str) -> DlibLayer:
    attrs = {"num_outputs": s.int(), "num_inputs": s.int()}
    params = s.tensor()
    weights, biases = s.alias_tensor(), s.alias_tensor()
    attrs["bias_mode"] = s.int()  # 0 FC_HAS_BIAS, 1 FC_NO_BIAS
    for _ in range(4):
        s.float()
    attrs["use_bias"] = (s.bool() if version == "fc_3" else True) and attrs["bias_mode"] == 0
    shapes = [weights[:2]] + ([(biases[1],)] if attrs["use_bias"] else [])
    tensors = dict(zip(("weight", "bias"), _params(s, params, *shapes)))  # weight: [num_inputs, num_outputs]
    return DlibLayer("fc", version, attrs, tensors)


_LAYERS = {
    **{v: _con for v in ("con_4", "con_5", "con_6")},
    **{v: _affine for v in ("affine_", "affine_2")},
    **{v: _bn for v in ("bn_con2", "bn_fc2")},
    **{v: _relu for v in ("relu_", "relu_2")},
    "max_pool_2": _pool("max_pool"),
    "avg_pool_2": _pool("avg_pool"),
    "add_prev_": _add_prev,
    **{v: _fc for v in ("fc_2", "fc_3")},
}
