"""Stages: configure once, then run many times.

A stage (photutils' finders, LSST ``pipe_base`` tasks) is built from one typed
config, does its expensive set-up once (FFT plans, kernels, a model), and is
then called per input: ``stage = Background(config); stage.run(image)``.
The same object serves plain code and tests, Ray Data (``map_batches`` builds
it in each actor from its config) and Ray Serve (a deployment wraps it).

:class:`Stage` holds what every stage repeats: validating the config (a config
object, a dict or ``None`` for the defaults), rebuilding from the config when
pickled (array modules, plans and models do not pickle; the config does), and
``stage(x)`` as ``stage.run(x)``.  :class:`StageTimer` collects the wall time
of named steps.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Generic, Iterator, TypeVar

from astroray.config import AstrorayConfig, config_from_dict

__all__ = ["Stage", "StageTimer"]

ConfigT = TypeVar("ConfigT", bound=AstrorayConfig)


class Stage(Generic[ConfigT]):
    """Base of astroray's configure-once stages.

    Subclasses name their config class in ``config_class``, build their state
    in :meth:`setup` and do the work in ``run``.

    Parameters
    ----------
    config : config object, dict or None
        A ``config_class`` instance, a dict validated as one, or ``None`` for
        the defaults.

    Raises
    ------
    ConfigError
        A dict that does not validate (the message names the key).
    TypeError
        A config of another class.
    """

    config_class: ClassVar[type[AstrorayConfig]]

    def __init__(self, config: ConfigT | dict | None = None):
        cls = self.config_class
        if config is None:
            config = cls()
        elif isinstance(config, dict):
            config = config_from_dict(cls, config, source=f"{type(self).__name__} config")
        elif not isinstance(config, cls):
            raise TypeError(f"{type(self).__name__} takes a {cls.__name__}, a dict or None; "
                            f"got {type(config).__name__}")
        self.config: ConfigT = config
        self.setup()

    def setup(self) -> None:
        """Build the stage's state from ``self.config`` (once)."""

    def run(self, *args, **kwargs):  # pragma: no cover - every stage overrides it
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.run(*args, **kwargs)

    def __reduce__(self):  # Ray ships stages between processes: rebuild from the config
        return (type(self), (self.config,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


class StageTimer:
    """Wall-clock milliseconds of named steps.

    Parameters
    ----------
    sync : callable, optional
        Called before each step's clock stops: on a GPU, the device's
        synchronisation, so a step is charged for its own kernels rather than
        their launches.

    Examples
    --------
    >>> timer = StageTimer()
    >>> with timer("difference"):
    ...     pass
    >>> sorted(timer.ms)
    ['difference']
    """

    def __init__(self, sync: Callable[[], Any] | None = None):
        self.ms: dict[str, float] = {}
        self._sync = sync

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._sync is not None:
                self._sync()
            self.ms[name] = self.ms.get(name, 0.0) + 1e3 * (time.perf_counter() - start)

    def total(self) -> float:
        """Sum of all steps, in ms."""
        return float(sum(self.ms.values()))
