"""``OptunaSampler``: any Optuna sampler (TPE, CMA-ES, GP, NSGA-II, ...) searching a
nasflow space through Optuna's ask/tell interface.

Optuna needs to be installed (``pip install optuna``); it is imported when the strategy is
first used.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import types
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from nasflow._kernel import INTERRUPTED, TrialState
from nasflow.exceptions import SampleValidationError
from nasflow.space import Sample, sample_hash
from nasflow.strategy._base import (
    FrozenTrial,
    Strategy,
    StrategyContext,
    rng_from_state,
    rng_state,
)
from nasflow.strategy._optuna_codec import Codec
from nasflow.strategy._sampling import draw_unseen, steady_proposals

if TYPE_CHECKING:
    import optuna

__all__ = ["OptunaSampler"]

_log = logging.getLogger("nasflow.strategy")

_HASH = "nasflow_hash"
"""User attribute linking an Optuna trial to the nasflow sample it stands for."""
_CONSTRAINT = "nasflow"
"""Constraint key set (> 0) on an Optuna trial whose sample violates a space constraint."""


def import_optuna() -> Any:
    """``optuna``, or an ImportError saying how to get it."""
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(
            "this strategy runs on Optuna, which is not installed: pip install optuna"
        ) from exc
    return optuna


class OptunaSampler(Strategy):
    """Any Optuna sampler as a nasflow strategy, e.g.
    ``OptunaSampler(optuna.samplers.NSGAIISampler(seed=0))``.

    The study is created with the experiment's direction(s), one per objective, so
    ``minimize`` is honoured and multi-objective samplers (TPE, NSGA-II) get every
    objective. Several trials are asked at once when the experiment runs several.

    **Mapping.** Each label becomes an Optuna parameter named after it, suggested
    define-by-run in space order and only when active given the earlier choices.
    ``Categorical`` → ``suggest_categorical`` (by index when a value is not a plain
    ``None``/bool/int/float/str, or two values compare equal); ``Numerical`` →
    ``suggest_float`` (``log``), a quantized one → ``suggest_int`` over the multiples of
    ``quantize`` (``log`` kept); ``CategoricalMultiple`` → one categorical over all subsets
    when there are at most 64, else one ``[0, 1]`` score per candidate (``label:i``) of
    which the top ``n_chosen`` (or those above 0.5, at least one) are taken.

    **What Optuna is told.** SUCCEEDED → the final metric(s); EARLY_STOPPED → PRUNED (the
    scheduler judged it bad; TPE ranks pruned trials below completed ones); FAILED,
    TIMEOUT, CANCELED → FAIL (ignored by the samplers). A trial cut off by a stopping
    experiment is told when it has run again after a resume.

    **Never a wasted trial.** A proposal that violates a space constraint is told PRUNED
    with an Optuna constraint value of 1 (infeasible) and not submitted. With ``dedup``, a
    proposal equal to a submitted sample is not submitted either: it is told that trial's
    outcome (at once, or when it ends). After ``patience`` such proposals in a row a random
    unseen sample is enqueued instead; the search ends once none is left.

    **Resume.** ``state_dict`` is plain JSON: every trial of the study (parameters,
    distributions, values, attributes) and the state of every random generator the sampler
    holds. Nothing of Optuna's is pickled (samplers hold locks, and their internals change
    between releases): a restored strategy builds its sampler afresh -- from ``factory``
    when given (``OptunaSampler(factory=lambda: NSGAIISampler(seed=0))``), else it is the
    sampler the strategy was built with -- sets those generators, replays the trials, and
    continues exactly where it stopped.
    """

    def __init__(
        self,
        sampler: optuna.samplers.BaseSampler | None = None,
        *,
        factory: Callable[[], optuna.samplers.BaseSampler] | None = None,
        dedup: bool = True,
        patience: int = 20,
        seed: int | None = None,
    ) -> None:
        if sampler is not None and factory is not None:
            raise TypeError("OptunaSampler takes a sampler or a factory, not both")
        if factory is not None and not callable(factory):
            raise TypeError(f"factory must be a callable returning a sampler, not {factory!r}")
        self.factory = factory
        """Builds the sampler (``None``: the sampler given, or one a subclass builds)."""
        self.sampler = sampler
        """The Optuna sampler (``None`` until built for the space)."""
        self.dedup = dedup
        self.patience = patience
        self.seed = seed
        self.study: optuna.Study | None = None
        """The Optuna study, once the search has started (read it, don't tell it)."""
        self._rng = random.Random(seed)  # for the random unseen fallback
        self._loaded: dict[str, Any] | None = None
        self._codec: Codec | None = None
        self._pending: dict[str, list[int]] = {}  # hash -> numbers of trials awaiting it
        self._done: dict[str, tuple[Any, list[float] | None]] = {}  # hash -> outcome
        self._frozen: dict[int, dict[str, Any]] = {}  # finished trials, serialised once
        self._sampler_rngs: dict[str, Any] | None = None  # restored into the next sampler

    # --- the loop -----------------------------------------------------------------------

    async def run(self, ctx: StrategyContext) -> None:
        study = self._start(ctx)
        async for number, sample in steady_proposals(ctx, self._tell, self._propose,
                                                     dedup=self.dedup, name=repr(self)):
            try:
                await ctx.submit(sample)
            except BaseException:
                if not ctx.seen(sample):  # never became a trial: do not leave it RUNNING
                    self._pending.pop(sample_hash(sample), None)
                    study.tell(number, state=_optuna().trial.TrialState.FAIL)
                raise

    def _start(self, ctx: StrategyContext) -> optuna.Study:
        lib = import_optuna()
        self._codec = Codec(ctx.space)
        if self.sampler is None:
            self.sampler = self.factory() if self.factory is not None \
                else self._build_sampler(ctx)
        if self._sampler_rngs is not None:
            restore_rngs(self.sampler, self._sampler_rngs)
            self._sampler_rngs = None
        directions = list(ctx.objective.directions.values())
        with _quiet():  # "A new study created in memory ..."
            study: optuna.Study = lib.create_study(sampler=self.sampler, directions=directions)
        self.study = study
        if self._loaded is not None:
            self._replay(study, self._loaded["trials"])
            self._loaded = None
        # what was proposed and told so far, from the study itself
        states = lib.trial.TrialState
        for t in study.get_trials(deepcopy=False):
            h = t.user_attrs.get(_HASH)
            if h is None:
                continue
            if t.state is states.RUNNING:
                if ctx.seen(self._codec.decode(t.params)):
                    self._pending.setdefault(h, []).append(t.number)
                else:  # asked, then lost before it was submitted
                    study.tell(t.number, state=states.FAIL)
            elif t.state in (states.COMPLETE, states.PRUNED, states.FAIL):
                self._done.setdefault(h, (t.state, t.values))
        return study

    def _build_sampler(self, ctx: StrategyContext) -> optuna.samplers.BaseSampler:
        raise TypeError("OptunaSampler needs a sampler, e.g. optuna.samplers.NSGAIISampler()")

    # --- proposing ----------------------------------------------------------------------

    def _propose(self, ctx: StrategyContext) -> tuple[int, Sample] | None:
        study, codec = self.study, self._codec
        assert study is not None and codec is not None
        states = _optuna().trial.TrialState
        for _ in range(self.patience):
            trial = self._ask(ctx, study)
            try:
                sample = ctx.space.canonicalize(codec.suggest(trial))
            except SampleValidationError as exc:
                if not exc.constraint:
                    raise
                trial.set_constraint(_CONSTRAINT, 1.0)
                study.tell(trial, state=states.PRUNED)
                continue
            h = sample_hash(sample)
            trial.set_user_attr(_HASH, h)
            if not self.dedup or not ctx.seen(sample):
                self._pending.setdefault(h, []).append(trial.number)
                return trial.number, sample
            known = self._done.get(h)
            if known is None:  # equal to a running trial: told when that one ends
                self._pending.setdefault(h, []).append(trial.number)
            else:
                study.tell(trial, values=known[1], state=known[0])
        # the sampler keeps proposing what was tried: enqueue a random unseen sample
        seen = ctx.seen if self.dedup else (lambda s: False)
        unseen = draw_unseen(ctx.space, self._rng, seen)
        if unseen is None:
            return None
        h = sample_hash(unseen)
        study.enqueue_trial(codec.encode(unseen), user_attrs={_HASH: h})
        trial = self._ask(ctx, study)
        sample = ctx.space.canonicalize(codec.suggest(trial))
        self._pending.setdefault(h, []).append(trial.number)
        return trial.number, sample

    def _ask(self, ctx: StrategyContext, study: optuna.Study) -> optuna.Trial:
        try:
            return study.ask()
        except ValueError as exc:
            if ctx.objective.multi:
                raise ValueError(
                    f"{type(self.sampler).__name__} could not propose a trial for the "
                    f"objectives {ctx.objective.directions} ({exc}); it may not support "
                    "several objectives: use TPE or optuna.samplers.NSGAIISampler"
                ) from exc
            raise

    # --- telling ------------------------------------------------------------------------

    def _tell(self, ctx: StrategyContext, record: FrozenTrial) -> None:
        study, codec = self.study, self._codec
        assert study is not None and codec is not None
        if record.state is TrialState.CANCELED and record.error is not None \
                and record.error.type == INTERRUPTED:
            return  # it runs again when the experiment is resumed; told then
        state, values = self._outcome(ctx, record)
        self._done.setdefault(record.hash, (state, values))
        numbers = self._pending.pop(record.hash, [])
        for number in numbers:
            study.tell(number, values=values, state=state)
        if not numbers:  # a trial this strategy did not propose: learn from it all the same
            optuna = _optuna()
            study.add_trial(optuna.trial.create_trial(
                state=state, values=values, params=codec.encode(record.sample),
                distributions=codec.distributions(record.sample),
                user_attrs={_HASH: record.hash},
            ))

    @staticmethod
    def _outcome(ctx: StrategyContext, record: FrozenTrial) -> tuple[Any, list[float] | None]:
        states = _optuna().trial.TrialState
        if record.state is TrialState.SUCCEEDED and record.metric is not None:
            if ctx.objective.multi and isinstance(record.metrics, dict):
                return states.COMPLETE, [float(record.metrics[n]) for n in ctx.objective.directions]
            return states.COMPLETE, [float(record.metric)]
        if record.state is TrialState.EARLY_STOPPED:
            return states.PRUNED, None
        return states.FAIL, None

    # --- state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        if self.study is None:
            return dict(self._loaded) if self._loaded is not None else {}
        # snapshots come often: a finished trial never changes, so it is serialised once
        frozen, trials = self._frozen, []
        for t in self.study.get_trials(deepcopy=False):
            data = frozen.get(t.number)
            if data is None:
                data = _freeze(t)
                if t.state.is_finished():
                    frozen[t.number] = data
            trials.append(data)
        return {"trials": trials, "sampler_rngs": rng_states(self.sampler),
                "rng": rng_state(self._rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self._loaded = dict(state)
        self.study = None
        self._pending, self._done, self._frozen = {}, {}, {}
        # the sampler is built afresh (from the factory, or it is the one given), then
        # gets the generators' states; an older snapshot's pickled sampler is ignored
        if self.factory is not None:
            self.sampler = None
        self._sampler_rngs = state.get("sampler_rngs")
        if state.get("rng") is not None:
            self._rng = rng_from_state(state["rng"])

    def __getstate__(self) -> dict[str, Any]:
        # pickled (e.g. with the experiment) as plain data: the study as its trials, and a
        # sampler built by a factory is rebuilt by it rather than pickled
        state = self.__dict__.copy()
        if self.study is not None:
            state["_loaded"] = self.state_dict()
            state["_sampler_rngs"] = state["_loaded"]["sampler_rngs"]
        if self.factory is not None:
            state["sampler"] = None
        state.update(study=None, _codec=None, _pending={}, _done={}, _frozen={})
        return state

    @staticmethod
    def _replay(study: optuna.Study, trials: list[dict[str, Any]]) -> None:
        optuna = _optuna()
        from optuna.distributions import json_to_distribution

        for t in trials:
            study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState[t["state"]],
                values=t["values"],
                params=t["params"],
                distributions={k: json_to_distribution(d) for k, d in t["distributions"].items()},
                user_attrs=t["user_attrs"],
                system_attrs=t["system_attrs"],
                intermediate_values={int(k): v for k, v in t["intermediate"]},
            ))

    def __repr__(self) -> str:
        return f"OptunaSampler({type(self.sampler).__name__}, dedup={self.dedup})"


def _optuna() -> Any:
    import optuna

    return optuna


def _freeze(t: Any) -> dict[str, Any]:
    from optuna.distributions import distribution_to_json

    return {
        "state": t.state.name,
        "values": t.values,
        "params": t.params,
        "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
        "user_attrs": t.user_attrs,
        "system_attrs": t.system_attrs,
        "intermediate": [[k, v] for k, v in t.intermediate_values.items()],
    }


_NOT_STATE = (type, types.FunctionType, types.MethodType, types.ModuleType, functools.partial)
"""What the generator walk does not look into: code, not a sampler's state."""


def _generators(obj: Any) -> Iterator[tuple[str, Any, Any]]:
    """``(path, owner, attribute)`` of every attribute of ``obj``'s instance graph that
    holds a random generator (or ``None`` where a lazy one has not been made yet), in a
    fixed order; an object reached twice (a generator two parts share) is visited once."""
    import numpy as np

    seen: set[int] = set()

    def walk(o: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
        if id(o) in seen or isinstance(o, _NOT_STATE):
            return
        seen.add(id(o))
        attrs = getattr(o, "__dict__", None)
        if not isinstance(attrs, dict):
            return
        for name in sorted(attrs):
            value = attrs[name]
            if isinstance(value, np.random.RandomState | np.random.Generator | random.Random):
                if id(value) not in seen:
                    seen.add(id(value))
                    yield f"{path}.{name}", o, name
            elif value is None and name == "_rng":
                yield f"{path}.{name}", o, name  # optuna's LazyRandomState, not yet made
            elif hasattr(value, "__dict__"):
                yield from walk(value, f"{path}.{name}")

    yield from walk(obj, "")


def rng_states(sampler: Any) -> dict[str, Any]:
    """The state of every random generator in ``sampler``, as JSON-able data."""
    import numpy as np

    out: dict[str, Any] = {}
    for path, owner, name in _generators(sampler):
        g = getattr(owner, name)
        if isinstance(g, np.random.RandomState):
            kind, keys, pos, has_gauss, gauss = g.get_state(legacy=True)
            out[path] = ["numpy.RandomState", kind, cast(Any, keys).tolist(), pos, has_gauss,
                         gauss]
        elif isinstance(g, np.random.Generator):
            # PCG64's state holds 128-bit integers, which JSON libraries refuse: as text
            out[path] = ["numpy.Generator", _stringify(g.bit_generator.state)]
        elif isinstance(g, random.Random):
            out[path] = ["random.Random", rng_state(g)]
    return out


def restore_rngs(sampler: Any, states: dict[str, Any]) -> None:
    """Put the generators saved by ``rng_states`` back into a freshly built sampler of the
    same kind; a generator the fresh sampler lacks is left alone (a warning says so)."""
    import numpy as np

    found = {path: (owner, name) for path, owner, name in _generators(sampler)}
    for path, saved in states.items():
        if path not in found:
            _log.warning("the resumed sampler %r has no random generator at %s; its draws "
                         "may differ from the uninterrupted search", sampler, path)
            continue
        owner, name = found[path]
        kind = saved[0]
        if kind == "numpy.RandomState":
            g = getattr(owner, name)
            if not isinstance(g, np.random.RandomState):
                g = np.random.RandomState()
                setattr(owner, name, g)
            g.set_state((saved[1], np.asarray(saved[2], dtype=np.uint32), *saved[3:]))
        elif kind == "numpy.Generator":
            getattr(owner, name).bit_generator.state = _unstringify(saved[1])
        elif kind == "random.Random":
            setattr(owner, name, rng_from_state(saved[1]))


def _stringify(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _stringify(v) for k, v in state.items()}
    if isinstance(state, int) and not isinstance(state, bool) and abs(state) >= 2**63:
        return {"int": str(state)}
    return state


def _unstringify(state: Any) -> Any:
    if isinstance(state, dict):
        if set(state) == {"int"}:
            return int(state["int"])
        return {k: _unstringify(v) for k, v in state.items()}
    return state


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's INFO logs and experimental warnings, silenced for one call."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", _optuna().exceptions.ExperimentalWarning)
            yield
    finally:
        logger.setLevel(level)
