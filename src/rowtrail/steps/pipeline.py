"""Pipelines: an ordered list of steps plus what to monitor, from code or from a pipeline file.

A pipeline file is TOML::

    [[step]]
    use = "filter"
    where = "length(response) > 20"
    reason = "too-short"

    [[step]]
    use = "rewrite"
    function = "mypkg.cleaning:strip_hidden_reasoning"   # or "cleaning.py:strip_hidden_reasoning"
    version = "1"

    [monitor]
    numeric = ["length(response)", "score"]    # SQL expressions over a row
    categorical = ["lane"]
    bins = 10
    [monitor.thresholds]
    psi = { warn = 0.1, fail = 0.25 }

``function`` names are imported from the user's own module or from a file next to the pipeline
file — only while reading that file; nothing is ever imported from a stored manifest.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RowtrailError, StepError
from .base import Step
from .builtin import BUILTINS

CALLABLE_PARAM = {"filter": "where", "score": "expr", "rewrite": "fn"}
MONITOR_KEYS = ("numeric", "categorical", "bins", "thresholds")


@dataclass
class Pipeline:
    steps: list[Step]
    monitor: dict[str, Any] = field(default_factory=dict)

    @property
    def step_ids(self) -> list[str]:
        return [s.id for s in self.steps]


def check_monitor(monitor: dict[str, Any] | None) -> dict[str, Any]:
    from ..monitoring.drift import check

    monitor = dict(monitor or {})
    unknown = sorted(set(monitor) - set(MONITOR_KEYS))
    if unknown:
        raise StepError(f"monitor: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(MONITOR_KEYS)}")
    out: dict[str, Any] = {
        "numeric": [str(c) for c in monitor.get("numeric", [])],
        "categorical": [str(c) for c in monitor.get("categorical", [])],
        "bins": int(monitor.get("bins", 10)),
        "thresholds": dict(monitor.get("thresholds", {})),
    }
    try:
        check({}, out["thresholds"])
    except ValueError as exc:
        raise StepError(f"monitor thresholds: {exc}") from None
    return out


def as_pipeline(steps: Pipeline | Sequence[Step], monitor: dict[str, Any] | None = None) -> Pipeline:
    if isinstance(steps, Pipeline):
        return Pipeline(list(steps.steps), check_monitor(monitor if monitor is not None else steps.monitor))
    out = list(steps)
    for s in out:
        if not isinstance(s, Step):
            raise StepError(f"a pipeline holds steps (from rowtrail.steps), not {type(s).__name__}")
    return Pipeline(out, check_monitor(monitor))


def _import_function(ref: str, base: Path, where: str) -> Any:
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise RowtrailError(f"{where}: function = {ref!r}; write 'module:function' or 'file.py:function'")
    if target.endswith(".py"):
        path = (base / target).resolve()
        if not path.is_file():
            raise RowtrailError(f"{where}: no file {path}")
        spec = importlib.util.spec_from_file_location(f"rowtrail_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise RowtrailError(f"{where}: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # its own imports find the modules next to it, as 'python file.py' would
        try:
            spec.loader.exec_module(module)
        except ImportError as exc:
            raise RowtrailError(f"{where}: {path} failed to import {exc.name or ''!r} ({exc}); is it installed or next to {path.name}?") from None
        finally:
            sys.path.remove(str(path.parent))
    else:
        sys.path.insert(0, str(base))
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise RowtrailError(f"{where}: cannot import {target!r} ({exc}); is it installed or next to the pipeline file?") from None
        finally:
            sys.path.remove(str(base))
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise RowtrailError(f"{where}: {target!r} has no {attr!r}")
    return obj


def build_step(spec: dict[str, Any], base: Path, where: str) -> Step:
    spec = dict(spec)
    use = spec.pop("use", None)
    if use not in BUILTINS:
        raise RowtrailError(f"{where}: use = {use!r}; one of {', '.join(sorted(BUILTINS))}")
    if "function" in spec:
        fn = _import_function(str(spec.pop("function")), base, where)
        if use not in CALLABLE_PARAM:
            raise RowtrailError(f"{where}: step '{use}' takes no function")
        spec[CALLABLE_PARAM[use]] = fn
    cls = BUILTINS[use]
    try:
        if use == "rewrite":
            return cls(spec.pop("fn"), **spec)
        return cls(**spec)
    except TypeError as exc:
        raise RowtrailError(f"{where}: {exc}") from None
    except StepError as exc:
        raise RowtrailError(f"{where}: {exc}") from None


def load_pipeline(path: str | Path) -> Pipeline:
    """Read a pipeline file (TOML, see the module docstring)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RowtrailError(f"no pipeline file {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RowtrailError(f"{path}: {exc}") from None
    unknown = sorted(set(doc) - {"step", "monitor"})
    if unknown:
        raise RowtrailError(f"{path}: unknown table(s) {', '.join(unknown)}; a pipeline file has [[step]] and [monitor]")
    specs = doc.get("step", [])
    steps = [build_step(s, path.parent.resolve(), f"{path}: step {i + 1}") for i, s in enumerate(specs)]
    try:
        return Pipeline(steps, check_monitor(doc.get("monitor")))
    except StepError as exc:
        raise RowtrailError(f"{path}: {exc}") from None


def from_definition(defn: dict[str, Any]) -> Step:
    """Rebuild a built-in step from its recorded definition (never one that runs a user function),
    and check that this rowtrail's implementation still gives the recorded step id."""
    use = defn.get("use")
    if defn.get("function") or use not in BUILTINS or use in ("rewrite",):
        raise StepError(
            f"step '{defn.get('name')}' runs a user function ({defn.get('function') or use}), which rowtrail never imports from the store; "
            "run 'rowtrail apply PIPELINE.toml' (or store.apply([...])) again, then commit"
        )
    params = {k: v for k, v in defn["params"].items()}
    cls = BUILTINS[use]
    if use == "upsample":
        params.pop("weight", None)
        params.pop("reason", None)
    step = cls(**params, name=defn["name"], version=defn["version"])
    if step.id != defn["step_id"]:
        raise StepError(f"step '{defn['name']}' ({use}) has changed in this rowtrail version (its code fingerprint differs); run 'rowtrail apply' again, then commit")
    return step
