"""``to_code(model)``: Python source for a standalone ``nn.Module`` that rebuilds a frozen
model without nasflow (``export_top_models(k, formatter="code")``).

Two halves, each from a tool that already knows the answer:

- ``forward`` is torch.fx's code generation for the traced model, so whatever the user's
  forward does (residuals, concatenation, ``ChosenInputs``, cells) becomes straight-line
  torch code that calls the submodules by their attribute paths;
- ``__init__`` rebuilds the module tree under the same attribute paths: every leaf (a
  ``torch.nn`` layer, which fx calls rather than traces) from its constructor arguments
  read back off the layer, every container as an empty ``nn.Module``, and tensors held
  outside leaves (class tokens, position embeddings) as parameters or buffers of their
  shape. Parameter names, shapes and the order of operations are therefore the model's own,
  so its ``state_dict`` loads into the generated class and outputs are bit-identical.

The generated source is executed once before it is returned and its state-dict keys,
shapes and layer ``repr`` are compared with the model's: a layer whose constructor cannot
be read back raises here, never in the user's file later.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import keyword
import math
import re
import types
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from nasflow.exceptions import SpaceError

__all__ = ["to_code"]

# constructor arguments never read back: placement is the user's business
_SKIPPED_ARGS = frozenset({"self", "device", "dtype"})
# tensors held outside leaves are embedded up to this many elements
_MAX_EMBEDDED = 65536


def to_code(model: nn.Module, *, class_name: str | None = None) -> str:
    """Source of a module defining ``class_name`` (default: the model's class name), an
    ``nn.Module`` that needs only torch and rebuilds ``model``'s architecture.

    ``model.state_dict()`` loads into ``class_name()`` and gives identical outputs. The
    model must trace with ``torch.fx`` (frozen nasflow models do unless the user's own
    forward branches on tensor values). Values fx records at trace time stay constant in
    the code (``self.training`` read in a forward, Python-side shape arithmetic): trace
    in the mode you will run. Raises ``SpaceError`` saying what could not be exported.
    """
    if not isinstance(model, nn.Module):
        raise SpaceError(f"to_code() takes a torch.nn.Module, got {type(model).__name__}")
    name = class_name or type(model).__name__
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SpaceError(f"class_name must be a Python identifier, got {name!r}")
    tracer = fx.Tracer()
    before = set(vars(model))
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        raise SpaceError(
            f"cannot export {type(model).__name__} as code: torch.fx could not trace its "
            f"forward ({type(exc).__name__}: {exc}). Code export needs a forward without "
            "control flow on tensor values; export the sample (formatter='dict') instead"
        ) from exc
    constants = {k: v for k, v in vars(model).items() if k not in before}
    for k in constants:  # the tracer stored them on the model itself; give them back
        delattr(model, k)
    body = _init_body(model, tracer, constants)
    forward, imports = _forward(graph)
    source = _assemble(name, type(model), body, forward, imports)
    _check(source, name, model)
    return source


# --- __init__: the module tree ----------------------------------------------------------


_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)


def _init_body(model: nn.Module, tracer: fx.Tracer, constants: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    _emit_children(model, "self", "", tracer, lines, {})
    for key, value in constants.items():
        lines.append(_tensor_line("self", key, value, key, persistent=False))
    return lines


def _emit_children(module: nn.Module, ref: str, path: str, tracer: fx.Tracer,
                   lines: list[str], seen: dict[int, str]) -> None:
    """Lines that build ``module``'s children on ``ref``; ``seen`` maps modules already
    built to their variable, so a module used twice (tied weights) stays one module."""
    # tensors this (non-leaf) module holds itself
    for pname, param in module._parameters.items():
        if param is not None:
            shape = tuple(param.shape)
            lines.append(
                f"{ref}.register_parameter({pname!r}, nn.Parameter(torch.empty({shape}, "
                f"dtype={param.dtype}), requires_grad={param.requires_grad}))"
            )
    for bname, buf in module._buffers.items():
        if buf is None:
            continue
        where = f"{path}.{bname}" if path else bname
        persistent = bname not in module._non_persistent_buffers_set
        lines.append(_tensor_line(ref, bname, buf, where, persistent=persistent))
    for cname, child in module._modules.items():
        if child is None:
            continue
        cpath = f"{path}.{cname}" if path else cname
        if id(child) in seen:
            lines.append(f"{ref}.add_module({cname!r}, {seen[id(child)]})")
            continue
        var = "m_" + re.sub(r"\W", "_", cpath)
        seen[id(child)] = var
        # fx calls torch.nn's containers leaves, but they are never called: their children
        # are, by qualified name, so a plain module holding the same children serves
        if tracer.is_leaf_module(child, cpath) and not isinstance(child, _CONTAINERS):
            lines.append(f"{var} = {_constructor(child, cpath)}")
        else:
            kind = type(child).__name__ if type(child) in _CONTAINERS else "Module"
            lines.append(f"{var} = nn.{kind}()")
            _emit_children(child, var, cpath, tracer, lines, seen)
        lines.append(f"{ref}.add_module({cname!r}, {var})")


def _tensor_line(ref: str, name: str, value: Any, where: str, *, persistent: bool) -> str:
    if not isinstance(value, torch.Tensor):
        raise SpaceError(f"cannot export {where!r} as code: a {type(value).__name__} constant")
    if persistent:  # its value comes with the state dict
        return (f"{ref}.register_buffer({name!r}, torch.empty({tuple(value.shape)}, "
                f"dtype={value.dtype}))")
    if value.numel() > _MAX_EMBEDDED:
        raise SpaceError(
            f"cannot export {where!r} as code: a tensor of {value.numel()} elements that is "
            f"not in the state dict (more than {_MAX_EMBEDDED} to write into the source); "
            "register it as a persistent buffer"
        )
    data = value.detach().cpu()
    literal = repr(data.tolist()).replace("inf", "math.inf").replace("nan", "math.nan")
    return (f"{ref}.register_buffer({name!r}, torch.tensor({literal}, dtype={data.dtype})"
            f".reshape({tuple(data.shape)}), persistent=False)")


def _constructor(leaf: nn.Module, where: str) -> str:
    """``nn.Conv2d(3, 16, ...)``: the call that rebuilds ``leaf``, read back off it."""
    cls = type(leaf)
    if not (cls.__module__.startswith("torch.nn") and getattr(nn, cls.__name__, None) is cls):
        raise SpaceError(
            f"cannot export {where!r} as code: {cls.__module__}.{cls.__qualname__} is not a "
            "torch.nn layer, and only those are rebuilt from their arguments"
        )
    args: list[str] = []
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname in _SKIPPED_ARGS or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        found, value = _read_argument(leaf, pname)
        if not found:
            if param.default is inspect.Parameter.empty:
                raise SpaceError(
                    f"cannot export {where!r} as code: {cls.__name__}'s argument {pname!r} "
                    "cannot be read back off the layer"
                )
            continue
        if param.default is not inspect.Parameter.empty and _same(value, param.default):
            continue
        args.append(f"{pname}={_literal(value, where)}")
    return f"nn.{cls.__name__}({', '.join(args)})"


def _read_argument(leaf: nn.Module, name: str) -> tuple[bool, Any]:
    if isinstance(leaf, nn.MultiheadAttention):
        special = {"bias": leaf.in_proj_bias is not None if leaf._qkv_same_embed_dim
                   else leaf.out_proj.bias is not None,
                   "add_bias_kv": leaf.bias_k is not None, "dropout": leaf.dropout}
        if name in special:
            return True, special[name]
    if name == "bias" and "bias" in leaf._parameters:
        return True, leaf._parameters["bias"] is not None
    if name in ("_weight", "_freeze"):
        return False, None
    if name in ("affine", "elementwise_affine") and name not in vars(leaf):
        return True, leaf._parameters.get("weight") is not None
    if hasattr(leaf, name):
        value = getattr(leaf, name)
        if isinstance(value, (torch.Tensor, nn.Module)):
            return False, None
        return True, value
    return False, None


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def _literal(value: Any, where: str) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"float({str(value)!r})"
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_literal(v, where) for v in value)
        if isinstance(value, tuple):
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        return f"[{inner}]"
    if isinstance(value, torch.dtype):
        return str(value)
    raise SpaceError(f"cannot export {where!r} as code: argument value {value!r}")


# --- forward: torch.fx code generation --------------------------------------------------


def _forward(graph: fx.Graph) -> tuple[str, list[str]]:
    for node in graph.nodes:  # annotations would need their own globals
        node.type = None
    code = graph.python_code(root_module="self")
    imports: list[str] = []
    for gname, obj in sorted(code.globals.items()):
        if not re.search(rf"\b{re.escape(gname)}\b", code.src):
            continue  # fx lists these globals whether or not the code uses them
        line = _import_line(gname, obj)
        if line:
            imports.append(line)
    return code.src.strip("\n"), imports


_KNOWN_GLOBALS = {
    "torch": "import torch",
    "inf": "from math import inf",
    "nan": "from math import nan",
    "NoneType": "NoneType = type(None)",
    "device": "from torch import device",
    "fx_pytree": "import torch.fx._pytree as fx_pytree",
    "pytree": "import torch.utils._pytree as pytree",
}


def _import_line(gname: str, obj: Any) -> str | None:
    if gname in _KNOWN_GLOBALS:
        return _KNOWN_GLOBALS[gname]
    if getattr(builtins, gname, None) is obj:
        return None
    if isinstance(obj, types.ModuleType):
        _refuse_nasflow(obj.__name__, gname)
        return f"import {obj.__name__} as {gname}"
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qualname and "<" not in qualname and _resolves(module, qualname, obj):
        _refuse_nasflow(module, gname)
        if "." in qualname:
            head, rest = qualname.split(".", 1)
            return f"from {module} import {head} as _{gname}_owner\n{gname} = _{gname}_owner.{rest}"
        return f"from {module} import {qualname} as {gname}"
    raise SpaceError(
        f"cannot export as code: the forward calls {obj!r} ({gname}), which cannot be "
        "imported by name; make it a module-level function"
    )


def _resolves(module: str, qualname: str, obj: Any) -> bool:
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return False
    return found is obj


def _refuse_nasflow(module: str, gname: str) -> None:
    if module == "nasflow" or module.startswith("nasflow."):
        raise SpaceError(
            f"cannot export as code: the forward calls {module}.{gname}, and the generated "
            "code must not need nasflow"
        )


# --- the file -------------------------------------------------------------------------


def _assemble(name: str, cls: type, body: list[str], forward: str,
              imports: list[str]) -> str:
    header = [
        f'"""{name}: a standalone rebuild of {cls.__module__}.{cls.__qualname__}, generated '
        'by nasflow (needs only torch).',
        "",
        "Load trained weights with model.load_state_dict(torch.load(path)).",
        '"""',
        "",
        "import math",
        "",
        "import torch",
        "import torch.nn as nn",
    ]
    extra = sorted({line for line in imports if line not in ("import torch",)},
                   key=lambda line: (not line.startswith(("import", "from")), line))
    out = header + extra + ["", "", f"class {name}(nn.Module):", "    def __init__(self):",
                            "        super().__init__()"]
    out += ["        " + line for line in body]
    out.append("")
    out += ["    " + line if line.strip() else "" for line in forward.splitlines()]
    return "\n".join(out).rstrip() + "\n"


def _check(source: str, name: str, model: nn.Module) -> None:
    """Build the generated class and compare it with ``model``: keys, shapes, layers."""
    namespace: dict[str, Any] = {"__name__": f"nasflow_export_{name}"}
    try:
        exec(compile(source, f"<{name} export>", "exec"), namespace)
        built = namespace[name]()
    except Exception as exc:
        raise SpaceError(
            f"the code generated for {type(model).__name__} does not build "
            f"({type(exc).__name__}: {exc}); please report this with the model"
        ) from exc
    want, got = _shapes(model), _shapes(built)
    if want != got:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        shapes = sorted(k for k in set(want) & set(got) if want[k] != got[k])
        raise SpaceError(
            f"the code generated for {type(model).__name__} does not match it: missing "
            f"{missing}, unexpected {extra}, other shapes {shapes}; please report this"
        )
    tracer = fx.Tracer()
    for path, leaf in model.named_modules():
        if not path or not tracer.is_leaf_module(leaf, path) or isinstance(leaf, _CONTAINERS):
            continue  # a container's children are checked one by one
        rebuilt = built.get_submodule(path)
        if repr(rebuilt) != repr(leaf):
            raise SpaceError(
                f"cannot export {path!r} as code: rebuilt as {rebuilt!r}, but the model has "
                f"{leaf!r}"
            )


def _shapes(module: nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}
