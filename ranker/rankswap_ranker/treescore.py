"""Scoring the model's tree ensemble on rows the ranker encodes itself (an optional fast path).

The model artifact is one ONNX graph: the categorical columns (strings) go through the graph's
``LabelEncoder`` nodes, are concatenated after the numeric columns, and a
``TreeEnsembleRegressor`` scores the rows. Handing ONNX Runtime a string tensor costs about as
much as the trees themselves (every Python ``str`` becomes a C++ string, then is hashed), so at
load :func:`split` reads the graph (the ONNX protobuf, decoded here on the wire format: the ranker
does not ship the ``onnx`` package) and, when it has exactly that shape, returns a
:class:`TreeScorer`: the same ``TreeEnsembleRegressor`` node, copied byte for byte into a graph
of its own, and the encoders' own key/value tables applied with dict lookups. The loader keeps
it only if it scores a parity set of rows bit-identically to the whole graph
(:func:`rankswap_ranker.bundle.load`); any other graph is scored whole.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from rankswap.artifacts.model_contract import INPUT_CAT, INPUT_NUM, OUTPUT_SCORE
from rankswap_ranker.treejit import NativeTrees

Fields = list[tuple[int, int, Any]]  # (field number, wire type, value: int or bytes)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(buf: bytes) -> Fields:
    """The fields of one protobuf message, in order (length-delimited values as bytes)."""
    out: Fields = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        out.append((num, wire, value))
    return out


def _get(msg: Fields, num: int) -> list[Any]:
    return [v for n, _, v in msg if n == num]


def _one(msg: Fields, num: int, default: Any = None) -> Any:
    values = _get(msg, num)
    return values[-1] if values else default


def _ints(msg: Fields, num: int) -> list[int]:
    """A repeated int64 field, packed or not."""
    out: list[int] = []
    for n, wire, v in msg:
        if n != num:
            continue
        if wire == 0:
            out.append(v - (1 << 64) if v >= 1 << 63 else v)
        else:
            pos = 0
            while pos < len(v):
                x, pos = _varint(v, pos)
                out.append(x - (1 << 64) if x >= 1 << 63 else x)
    return out


def _key(num: int, wire: int) -> bytes:
    return _enc_varint(num << 3 | wire)


def _enc_varint(x: int) -> bytes:
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        if x:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len(num: int, payload: bytes) -> bytes:
    return _key(num, 2) + _enc_varint(len(payload)) + payload


def _float_matrix_input(name: str, width: int) -> bytes:
    """ValueInfoProto: a float tensor [N, width]."""
    dims = _len(1, _len(2, b"N")) + _len(1, _key(1, 0) + _enc_varint(width))
    tensor = _key(1, 0) + _enc_varint(1) + _len(2, dims)  # elem_type FLOAT, shape
    return _len(1, name.encode()) + _len(2, _len(1, tensor))


@dataclass(frozen=True)
class _Node:
    raw: bytes
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Fields]


def _nodes(graph: Fields) -> Iterator[_Node]:
    for raw in _get(graph, 1):
        msg = fields(raw)
        attrs = {}
        for a in _get(msg, 5):
            am = fields(a)
            attrs[bytes(_one(am, 1, b"")).decode()] = am
        yield _Node(
            raw=raw,
            op=bytes(_one(msg, 4, b"")).decode(),
            inputs=[bytes(x).decode() for x in _get(msg, 1)],
            outputs=[bytes(x).decode() for x in _get(msg, 2)],
            attrs=attrs,
        )


def _initializer_ints(graph: Fields) -> dict[str, list[int]]:
    out = {}
    for raw in _get(graph, 5):
        t = fields(raw)
        name = bytes(_one(t, 8, b"")).decode()
        data = _ints(t, 7)
        blob = _one(t, 9)
        if blob is not None and _one(t, 2) == 7:  # raw int64
            data = list(struct.unpack(f"<{len(blob) // 8}q", blob))
        out[name] = data
    return out


MEMO_ENTRIES = 64
"""Encoded candidate-side columns kept per :class:`TreeScorer` (a few per tenant served)."""


def object_ids(cat: npt.NDArray[Any]) -> npt.NDArray[np.uintp]:
    """The identity (address) of every element of an object array, read from the array's own
    buffer without a Python call per element: ``[N, C]``, column-major so columns are
    contiguous."""
    c = np.ascontiguousarray(cat, dtype=object)
    if c.size == 0:
        return np.zeros(c.shape[::-1], dtype=np.uintp)
    raw = memoryview(c).cast("B")  # type: ignore[arg-type]  # ndarray exports a buffer
    return np.frombuffer(raw, dtype=np.uintp).reshape(c.shape).T.copy()


@dataclass
class _Encoded:
    raw: bytes
    """The strings' addresses (``object_ids``' column as bytes)."""
    codes: npt.NDArray[np.float32]
    keep: npt.NDArray[Any]
    """The encoded strings themselves: while the entry lives, no other object can take one of
    their addresses, so equal ``ids`` mean the very same strings."""


class CodeMemo:
    """Encoded columns by the identity of their strings (bounded, oldest first out).

    A cached candidate list hands the same string objects to every request, so the
    ``category``/``account_code`` columns of one tenant are encoded once and then recognised by
    comparing addresses (a vectorised comparison, no dict lookup per row). Any difference in any
    row is a miss and encodes the column again: a hit is exact by construction."""

    def __init__(self, entries: int = MEMO_ENTRIES) -> None:
        self._entries = entries
        self._memo: dict[tuple[int, int, int, int], _Encoded] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def get(
        self, column: int, ids: npt.NDArray[np.uintp], raw: bytes | None = None
    ) -> npt.NDArray[np.float32] | None:
        """The codes of a column whose strings are the very ones of an entry (``raw``:
        ``ids.tobytes()``, when the caller has it)."""
        key = (column, ids.shape[0], int(ids[0]), int(ids[-1]))
        with self._lock:
            hit = self._memo.get(key)
        if hit is None or hit.raw != (ids.tobytes() if raw is None else raw):
            return None
        self.hits += 1
        return hit.codes

    def put(
        self,
        column: int,
        ids: npt.NDArray[np.uintp],
        values: npt.NDArray[Any],
        codes: npt.NDArray[np.float32],
    ) -> None:
        key = (column, ids.shape[0], int(ids[0]), int(ids[-1]))
        entry = _Encoded(raw=ids.tobytes(), codes=codes, keep=np.array(values, dtype=object))
        with self._lock:
            self._memo.pop(key, None)
            while len(self._memo) >= self._entries:
                del self._memo[next(iter(self._memo))]
            self._memo[key] = entry


@dataclass(frozen=True)
class Encoder:
    """One categorical column's ``LabelEncoder``: the graph's own keys and values."""

    column: int
    codes: dict[str, float]
    default: float

    def encode(self, values: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """The float32 codes of ``values`` (``default`` for unknown strings), one per row."""
        return np.fromiter(
            map(self.codes.get, values, repeat(self.default)),
            dtype=np.float32,
            count=values.shape[0],
        )


BUFFER_LIMIT = 1 << 22
"""Floats of the compiled trees' input kept per thread and scorer (16 MB): an input of more
rows is written into an array of its own."""


class InputBuffers:
    """Per thread, one float32 buffer the compiled trees' input (:meth:`TreeScorer.columns`) is
    written into, grown to the largest input seen (up to ``BUFFER_LIMIT``), so a request does
    not allocate (and fault in) ~0.2 MB at 770 candidates. The kernel is done with it when
    ``NativeTrees.score`` returns (the scores are an array of their own), and another thread
    (a shadow scorer, a test client) writes into its own."""

    __slots__ = ("_local",)

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, height: int, stride: int) -> npt.NDArray[np.float32]:
        """A C-contiguous ``[height, stride]`` float32 array (contents undefined)."""
        need = height * stride
        if need > BUFFER_LIMIT:
            return np.empty((height, stride), dtype=np.float32)
        flat: npt.NDArray[np.float32] | None = getattr(self._local, "flat", None)
        if flat is None or flat.shape[0] < need:
            flat = np.empty(need, dtype=np.float32)
            self._local.flat = flat
        return flat[:need].reshape(height, stride)


@dataclass(frozen=True)
class TreeScorer:
    """The tree ensemble alone (a session on the copied node) behind the encoders."""

    session: Any
    input_name: str
    output_name: str
    encoders: tuple[Encoder, ...]
    attributes: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    """The ``TreeEnsembleRegressor`` node's attributes (:func:`attribute_values`)."""
    native: NativeTrees | None = None
    """The same trees compiled (:mod:`rankswap_ranker.treejit`), when the loader kept them."""
    memo: CodeMemo = field(default_factory=CodeMemo, compare=False, repr=False)
    buffers: InputBuffers = field(default_factory=InputBuffers, compare=False, repr=False)

    def encode(self, cat: npt.NDArray[Any], out: npt.NDArray[np.float32]) -> None:
        """Write each categorical column encoded as the graph's ``LabelEncoder`` + ``Cast``
        would into ``out[j]`` (``[len(encoders), N]``, any strides).

        A column of one string object (a request's ``vendor_industry``,
        ``employee_department``) is one lookup; a column seen before (a cached candidate
        list's ``category``, ``account_code``) comes from :class:`CodeMemo`."""
        n = cat.shape[0]
        if n == 0:
            return
        ids = object_ids(cat)
        for j, enc in enumerate(self.encoders):
            col = ids[enc.column]
            raw = col.tobytes()  # the addresses, compared as bytes (one memcmp, no ufunc)
            if raw == raw[: col.itemsize] * n:
                out[j] = self.encoders[j].codes.get(cat[0, enc.column], enc.default)
                continue
            codes = self.memo.get(enc.column, col, raw)
            if codes is None:
                values = cat[:, enc.column]
                codes = enc.encode(values)
                self.memo.put(enc.column, col, values, codes)
            out[j] = codes

    def rows(self, num: npt.NDArray[np.float32], cat: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """The ensemble's input: ``num``, then each categorical column encoded as the graph's
        ``LabelEncoder`` + ``Cast`` would."""
        n, width = num.shape
        rows = np.empty((n, width + len(self.encoders)), dtype=np.float32)
        rows[:, :width] = num
        self.encode(cat, rows[:, width:].T)
        return rows

    def columns(
        self,
        num: npt.NDArray[np.float32],
        cat: npt.NDArray[Any],
        stride: int,
        out: npt.NDArray[np.float32] | None = None,
    ) -> Any:
        """The same input column-major, ``[width, stride]`` (rows past ``N`` are zeros), into
        ``out`` when given (that shape, C order), else a new array."""
        n, width = num.shape
        cols = (
            np.empty((width + len(self.encoders), stride), dtype=np.float32) if out is None else out
        )
        cols[:width, :n] = num.T
        cols[:, n:] = 0.0
        self.encode(cat, cols[width:, :n])
        return cols

    def score(self, num: npt.NDArray[np.float32], cat: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if self.native is not None:
            n, width = num.shape
            stride = self.native.stride(n)
            buffer = self.buffers.get(width + len(self.encoders), stride)
            return self.native.score(self.columns(num, cat, stride, buffer), n)
        return self.score_ort(num, cat)

    def score_ort(
        self, num: npt.NDArray[np.float32], cat: npt.NDArray[Any]
    ) -> npt.NDArray[np.float32]:
        """The ensemble scored by ONNX Runtime (the copied node)."""
        out = self.session.run([self.output_name], {self.input_name: self.rows(num, cat)})
        return np.asarray(out[0], dtype=np.float32).reshape(-1)


def split(model: bytes, num_width: int, session_options: Any) -> TreeScorer | None:
    """A :class:`TreeScorer` for a graph of the expected shape (see the module), else None.

    Expected: ``cat`` → ``Gather`` (one column each) → ``LabelEncoder`` (string → int64) →
    ``Reshape`` → ``Concat`` → ``Cast`` → ``Concat(num, ...)`` → ``TreeEnsembleRegressor`` →
    ``Identity``/``Reshape`` → ``score``. Anything else (another converter, another op) is
    scored by the whole graph."""
    import onnxruntime as ort

    try:
        top = fields(model)
        graph = fields(_one(top, 7, b""))
        nodes = list(_nodes(graph))
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        return None
    by_output = {o: n for n in nodes for o in n.outputs}
    ints = _initializer_ints(graph)
    trees = [n for n in nodes if n.op == "TreeEnsembleRegressor"]
    if len(trees) != 1 or len(trees[0].inputs) != 1:
        return None
    tree = trees[0]
    if {n.op for n in nodes} - {
        "Gather", "LabelEncoder", "Reshape", "Concat", "Cast", "Identity",
        "TreeEnsembleRegressor",
    }:  # fmt: skip
        return None
    joined = by_output.get(tree.inputs[0])
    if joined is None or joined.op != "Concat" or len(joined.inputs) != 2:
        return None
    first, second = (by_output.get(x) for x in joined.inputs)
    if first is None or first.op != "Identity" or first.inputs != [INPUT_NUM]:
        return None
    if second is None or second.op != "Cast" or _one(second.attrs.get("to", []), 3) != 1:
        return None
    concat = by_output.get(second.inputs[0])
    if concat is None or concat.op != "Concat":
        return None
    encoders = []
    for name in concat.inputs:
        reshape = by_output.get(name)
        enc = by_output.get(reshape.inputs[0]) if reshape and reshape.op == "Reshape" else None
        gather = by_output.get(enc.inputs[0]) if enc and enc.op == "LabelEncoder" else None
        if gather is None or gather.op != "Gather" or gather.inputs[0] != INPUT_CAT:
            return None
        index = ints.get(gather.inputs[1])
        a = enc.attrs if enc is not None else {}
        if index is None or len(index) != 1 or set(a) != {
            "keys_strings", "values_int64s", "default_int64"
        }:  # fmt: skip
            return None
        keys = [bytes(k).decode() for k in _get(a["keys_strings"], 9)]
        values = _ints(a["values_int64s"], 8)
        if len(keys) != len(values):
            return None
        default = _one(a["default_int64"], 3, 0)
        default = default - (1 << 64) if default >= 1 << 63 else default
        codes = {k: float(np.float32(v)) for k, v in zip(keys, values, strict=True)}
        encoders.append(Encoder(column=index[0], codes=codes, default=float(np.float32(default))))
    out_name = tree.outputs[0]
    sub_graph = (
        _len(1, tree.raw)
        + _len(2, b"rankswap_trees")
        + _len(11, _float_matrix_input(tree.inputs[0], num_width + len(encoders)))
        + _len(12, _len(1, out_name.encode()))
    )
    sub = b"".join(
        _key(n, w) + (_enc_varint(len(v)) + v if w == 2 else _enc_varint(v))
        for n, w, v in top
        if n in (1, 8)  # ir_version, opset_import
    ) + _len(7, sub_graph)
    try:
        session = ort.InferenceSession(
            sub, sess_options=session_options, providers=["CPUExecutionProvider"]
        )
    except Exception:  # onnxruntime's own errors: score the whole graph
        return None
    try:
        attributes = {name: attribute_values(a) for name, a in tree.attrs.items()}
    except (ValueError, struct.error):  # UnicodeDecodeError is a ValueError
        return None
    return TreeScorer(session, tree.inputs[0], out_name, tuple(encoders), attributes)


def attribute_values(attr: Fields) -> list[Any]:
    """An ``AttributeProto``'s value as a list: floats, ints or strings, by its type (a single
    value is a list of one); an empty list for tensors and graphs."""
    kind = _one(attr, 20, 0)
    if kind in (1, 6):  # FLOAT, FLOATS: fixed32, packed or not
        out: list[Any] = []
        for n, wire, v in attr:
            if n in (2, 7) and wire == 5:
                out.append(struct.unpack("<f", v)[0])
            elif n == 7 and wire == 2:
                if len(v) % 4:
                    raise ValueError("truncated packed floats")
                out.extend(struct.unpack(f"<{len(v) // 4}f", v))
        return out
    if kind == 2:
        return _ints(attr, 3)
    if kind == 7:
        return _ints(attr, 8)
    if kind == 3:
        return [bytes(_one(attr, 4, b"")).decode()]
    if kind == 8:
        return [bytes(v).decode() for v in _get(attr, 9)]
    return []


def ensemble_attributes(model: bytes) -> dict[str, list[Any]]:
    """The ``TreeEnsembleRegressor`` node's attributes (floats, ints or strings), for
    what rebuilds the same trees elsewhere (:mod:`rankswap_ranker.treejit`, the benchmark)."""
    graph = fields(_one(fields(model), 7, b""))
    node = next(n for n in _nodes(graph) if n.op == "TreeEnsembleRegressor")
    return {name: attribute_values(a) for name, a in node.attrs.items()}


__all__ = ["OUTPUT_SCORE", "TreeScorer", "attribute_values", "ensemble_attributes", "split"]
