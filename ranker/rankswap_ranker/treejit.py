"""The model's tree ensemble compiled to vectorised native code at load (an optional fast path).

ONNX Runtime's ``TreeEnsembleRegressor`` walks the trees node by node, row by row (~17 ns per
tree and row on the real 60 x 15 model). Here the same node, read from ``model.onnx`` (still the
only artifact), becomes one LLVM function (``llvmlite``: LLVM in a wheel, no C compiler) that
scores 8 rows at once: every split of every tree is a vector comparison of one feature of 8 rows
against the threshold, every tree a nest of vector selects from its leaf values, and the trees
are added in the node's order, in float32, then the base value: the order and the precision
ONNX Runtime sums in, so the scores can be bit-identical. The loader keeps it only when it
scores the parity rows exactly as the whole graph does (:func:`rankswap_ranker.bundle.load`).

Hostile artifacts: :func:`ensemble` reads only what it validates — one tree per contiguous run
of nodes, trees numbered 0..T-1 in order, unique node ids, node 0 the root, children inside the
tree, every node reached exactly once from the root (no cycles, no sharing), feature ids inside
the row, one weight of target 0 per leaf, at most :data:`MAX_NODES` nodes, the known modes and
nothing else (``SUM``, ``NONE``, one target). Anything else is :class:`Unsupported`, and the
trees are scored by ONNX Runtime as before. The generated code reads ``x[f * stride + i]`` for
validated ``f`` < width and ``i`` < stride, and writes ``out[i]``, nothing else.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

LANES = 8
"""Rows scored together (one AVX2 vector of float32; narrower CPUs split it)."""
MAX_NODES = 20_000
"""Nodes of all trees together (compile time grows with them: ~0.1 ms per node here)."""

_OPS = {"BRANCH_LEQ": "le", "BRANCH_LT": "lt", "BRANCH_GTE": "ge", "BRANCH_GT": "gt"}


class Unsupported(ValueError):
    """The tree ensemble node is not one this evaluator reproduces (ONNX Runtime scores)."""


@dataclass(frozen=True)
class Tree:
    """One tree in preorder: ``feature``/``threshold``/``op``/``missing_true`` of each split,
    ``true``/``false`` child indices (into this tree's nodes), and leaf values."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    op: tuple[str, ...]  # "le", "lt", "ge", "gt"; "" for a leaf
    missing_true: tuple[bool, ...]
    true: tuple[int, ...]
    false: tuple[int, ...]
    weight: tuple[float, ...]


@dataclass(frozen=True)
class Ensemble:
    trees: tuple[Tree, ...]
    width: int
    base: float

    @property
    def nodes(self) -> int:
        return sum(len(t.op) for t in self.trees)


def _one_string(attrs: dict[str, list[Any]], name: str, default: str) -> str:
    value = attrs.get(name)
    if value is None:
        return default
    if len(value) != 1 or not isinstance(value[0], bytes | str):
        raise Unsupported(f"{name}: expected one string")
    return value[0].decode() if isinstance(value[0], bytes) else value[0]


def ensemble(attrs: dict[str, list[Any]], width: int) -> Ensemble:
    """The validated trees of a ``TreeEnsembleRegressor``'s attributes (see the module)."""
    known = {
        "n_targets", "nodes_falsenodeids", "nodes_featureids", "nodes_hitrates",
        "nodes_missing_value_tracks_true", "nodes_modes", "nodes_nodeids", "nodes_treeids",
        "nodes_truenodeids", "nodes_values", "post_transform", "target_ids", "target_nodeids",
        "target_treeids", "target_weights", "aggregate_function", "base_values",
    }  # fmt: skip
    if set(attrs) - known:
        raise Unsupported(f"attributes {sorted(set(attrs) - known)}")
    if _one_string(attrs, "post_transform", "NONE") != "NONE":
        raise Unsupported("post_transform is not NONE")
    if _one_string(attrs, "aggregate_function", "SUM") != "SUM":
        raise Unsupported("aggregate_function is not SUM")
    if attrs.get("n_targets", [1]) != [1]:
        raise Unsupported("more than one target")
    base = attrs.get("base_values", [0.0])
    if len(base) != 1:
        raise Unsupported("base_values must hold one value")
    cols = ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes",
            "nodes_values", "nodes_truenodeids", "nodes_falsenodeids")  # fmt: skip
    n = len(attrs.get("nodes_treeids", []))
    if not 0 < n <= MAX_NODES:
        raise Unsupported(f"{n} nodes (1..{MAX_NODES} compiled)")
    missing = attrs.get("nodes_missing_value_tracks_true", [0] * n)
    if any(len(attrs.get(c, [])) != n for c in cols) or len(missing) != n:
        raise Unsupported("node attributes of different lengths")
    tids = attrs["nodes_treeids"]
    leaf_weight: dict[tuple[int, int], float] = {}
    targets = ("target_treeids", "target_nodeids", "target_ids", "target_weights")
    if len({len(attrs.get(c, [])) for c in targets}) != 1:
        raise Unsupported("target attributes of different lengths")
    for t, node, target, w in zip(*(attrs[c] for c in targets), strict=True):
        if target != 0 or (t, node) in leaf_weight:
            raise Unsupported("a leaf with another target or several weights")
        leaf_weight[(t, node)] = float(np.float32(w))
    trees: list[Tree] = []
    start = 0
    while start < n:
        t = tids[start]
        if t != len(trees):
            raise Unsupported("trees not numbered 0..T-1 in node order")
        end = start
        while end < n and tids[end] == t:
            end += 1
        trees.append(_tree(attrs, missing, range(start, end), t, width, leaf_weight))
        start = end
    if sum(1 for t in trees for op in t.op if not op) != len(leaf_weight):
        raise Unsupported("weights for nodes that are not leaves")
    return Ensemble(trees=tuple(trees), width=width, base=float(np.float32(base[0])))


def _tree(
    attrs: dict[str, list[Any]],
    missing: list[Any],
    rows: range,
    tree_id: int,
    width: int,
    leaf_weight: dict[tuple[int, int], float],
) -> Tree:
    index = {attrs["nodes_nodeids"][i]: i for i in rows}
    if len(index) != len(rows) or attrs["nodes_nodeids"][rows.start] != 0:
        raise Unsupported(f"tree {tree_id}: node ids not unique, or node 0 not first")
    order: list[int] = []  # preorder over the attribute rows
    pos: dict[int, int] = {}
    children: list[tuple[int, int]] = []
    stack = [rows.start]
    while stack:
        i = stack.pop()
        if i in pos:
            raise Unsupported(f"tree {tree_id}: a node reached twice")
        pos[i] = len(order)
        order.append(i)
        mode = attrs["nodes_modes"][i]
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode == "LEAF":
            children.append((-1, -1))
            continue
        if mode not in _OPS:
            raise Unsupported(f"tree {tree_id}: mode {mode!r}")
        if not 0 <= attrs["nodes_featureids"][i] < width:
            raise Unsupported(f"tree {tree_id}: feature id outside the row")
        kids = (attrs["nodes_truenodeids"][i], attrs["nodes_falsenodeids"][i])
        if any(k not in index for k in kids):
            raise Unsupported(f"tree {tree_id}: a child outside the tree")
        children.append((index[kids[0]], index[kids[1]]))
        stack += [index[kids[1]], index[kids[0]]]
    if len(order) != len(rows):
        raise Unsupported(f"tree {tree_id}: nodes not reached from the root")
    ops = []
    for i in order:
        mode = attrs["nodes_modes"][i]
        mode = mode.decode() if isinstance(mode, bytes) else mode
        ops.append(_OPS.get(mode, ""))
        if not ops[-1] and (tree_id, attrs["nodes_nodeids"][i]) not in leaf_weight:
            raise Unsupported(f"tree {tree_id}: a leaf without a weight")
    return Tree(
        feature=tuple(int(attrs["nodes_featureids"][i]) for i in order),
        threshold=tuple(float(np.float32(attrs["nodes_values"][i])) for i in order),
        op=tuple(ops),
        missing_true=tuple(bool(missing[i]) for i in order),
        true=tuple(-1 if t < 0 else pos[t] for t, _ in children),
        false=tuple(-1 if f < 0 else pos[f] for _, f in children),
        weight=tuple(
            0.0 if op else leaf_weight[(tree_id, attrs["nodes_nodeids"][i])]
            for i, op in zip(order, ops, strict=True)
        ),
    )


def _hex(value: float) -> str:
    """An LLVM float constant: the double spelling of a float32 value, bit for bit."""
    return "0x" + struct.pack(">d", value).hex().upper()


def llvm_ir(ens: Ensemble) -> str:
    """``void score(float* x, i64 stride, i64 blocks, float* out)``: ``x`` is ``[width, stride]``
    (column-major); rows ``8b .. 8b+7`` of every block ``b`` < ``blocks`` are scored into
    ``out``."""
    vec = f"<{LANES} x float>"
    used = sorted({f for t in ens.trees for f, op in zip(t.feature, t.op, strict=True) if op})
    body = [
        "define void @score(ptr noalias nocapture readonly %x, i64 %stride, i64 %blocks, "
        "ptr noalias nocapture %out) {",
        "entry:",
        "  %any = icmp sgt i64 %blocks, 0",
        "  br i1 %any, label %loop, label %done",
        "loop:",
        "  %b = phi i64 [ 0, %entry ], [ %next, %loop ]",
        f"  %i = mul i64 %b, {LANES}",
    ]
    for f in used:
        body += [
            f"  %o{f} = mul i64 %stride, {f}",
            f"  %a{f} = add i64 %o{f}, %i",
            f"  %p{f} = getelementptr float, ptr %x, i64 %a{f}",
            f"  %x{f} = load {vec}, ptr %p{f}, align 4",
        ]
    acc = "zeroinitializer"
    for k, tree in enumerate(ens.trees):
        value: list[str] = [""] * len(tree.op)
        for j in range(len(tree.op) - 1, -1, -1):  # children come after parents in preorder
            if not tree.op[j]:
                value[j] = f"splat (float {_hex(tree.weight[j])})"
                continue
            pred = ("u" if tree.missing_true[j] else "o") + tree.op[j]
            thr = f"splat (float {_hex(tree.threshold[j])})"
            body.append(f"  %c{k}_{j} = fcmp {pred} {vec} %x{tree.feature[j]}, {thr}")
            body.append(
                f"  %v{k}_{j} = select <{LANES} x i1> %c{k}_{j}, {vec} {value[tree.true[j]]}, "
                f"{vec} {value[tree.false[j]]}"
            )
            value[j] = f"%v{k}_{j}"
        body.append(f"  %s{k} = fadd {vec} {acc}, {value[0]}")
        acc = f"%s{k}"
    body += [
        f"  %total = fadd {vec} {acc}, splat (float {_hex(ens.base)})",
        "  %q = getelementptr float, ptr %out, i64 %i",
        f"  store {vec} %total, ptr %q, align 4",
        "  %next = add i64 %b, 1",
        "  %more = icmp slt i64 %next, %blocks",
        "  br i1 %more, label %loop, label %done",
        "done:",
        "  ret void",
        "}",
    ]
    return "\n".join(body) + "\n"


_init_lock = threading.Lock()
_initialised = False


def _llvm() -> Any:
    import llvmlite.binding as llvm

    global _initialised
    with _init_lock:
        if not _initialised:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _initialised = True
    return llvm


_Kernel = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)


@dataclass(frozen=True)
class NativeTrees:
    """The compiled ensemble: :meth:`score` takes ``[width, stride]`` column-major rows."""

    ensemble: Ensemble
    engine: Any  # llvmlite ExecutionEngine: owns the code, freed with this object
    kernel: Any
    compile_s: float

    @staticmethod
    def stride(n: int) -> int:
        """Row slots for ``n`` rows (whole vectors)."""
        return -(-n // LANES) * LANES

    def score(self, cols: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
        """Scores of the first ``n`` rows of ``cols`` (float32, C-contiguous,
        ``[width, stride(n)]``; the padding rows are scored and dropped)."""
        stride = self.stride(n)
        if (
            cols.dtype != np.float32
            or cols.shape != (self.ensemble.width, stride)
            or not cols.flags.c_contiguous
        ):
            raise ValueError(f"rows must be float32 [{self.ensemble.width}, {stride}], C order")
        out = np.empty(stride, dtype=np.float32)
        self.kernel(cols.ctypes.data, stride, stride // LANES, out.ctypes.data)
        return out[:n]


KEPT = 4
"""Compiled ensembles kept per process, by their code: a bundle of the same model (new
features, a rollback) loads without compiling again."""
_kept: dict[tuple[str, int], NativeTrees] = {}
_kept_lock = threading.Lock()


def compile_ensemble(ens: Ensemble, *, opt: int = 2) -> NativeTrees:
    """Generate, verify and compile :func:`llvm_ir` for this host's CPU (or reuse the code of
    an identical ensemble compiled before in this process; ``compile_s`` is then 0)."""
    code = llvm_ir(ens)
    key = (hashlib.sha256(code.encode()).hexdigest(), opt)
    with _kept_lock:
        hit = _kept.get(key)
    if hit is not None:
        return dataclasses.replace(hit, ensemble=ens, compile_s=0.0)
    llvm = _llvm()
    t0 = time.perf_counter()
    module = llvm.parse_assembly(code)
    module.verify()
    target = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=opt
    )
    engine = llvm.create_mcjit_compiler(module, target)
    engine.finalize_object()
    kernel = _Kernel(engine.get_function_address("score"))
    native = NativeTrees(
        ensemble=ens, engine=engine, kernel=kernel, compile_s=time.perf_counter() - t0
    )
    with _kept_lock:
        _kept.pop(key, None)
        while len(_kept) >= KEPT:
            del _kept[next(iter(_kept))]
        _kept[key] = native
    return native
