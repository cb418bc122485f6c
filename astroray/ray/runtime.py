"""Starting or joining Ray, the same way for every astroray job.

:func:`ensure_ray` joins the cluster a job runs on (``ray job submit`` sets
``RAY_ADDRESS``) or starts a local Ray for the embedded default.  A local Ray
started here keeps Ray's token authentication on, with a token that lives in
this process's environment for this run only (inherited by the Ray processes
it starts): no token file is written under the home folder and Ray prints no
notice about it.  Set ``RAY_AUTH_MODE`` yourself to choose otherwise.
"""
from __future__ import annotations

import os
import secrets

__all__ = ["ensure_ray", "started_here", "actor_restarts", "quiet_ray_data_progress"]

_STARTED_HERE = False


def ensure_ray(**init_kwargs):
    """Ray, initialised: the cluster at ``$RAY_ADDRESS`` (or ``address=``), else a new local one.

    ``init_kwargs`` go to :func:`ray.init` (``num_cpus``, ``runtime_env``,
    ...); by default the dashboard is off and worker output is not echoed.
    Returns the ``ray`` module.
    """
    import ray

    global _STARTED_HERE
    if ray.is_initialized():
        return ray
    init_kwargs.setdefault("include_dashboard", False)
    init_kwargs.setdefault("log_to_driver", False)
    joining = bool(init_kwargs.get("address") or os.environ.get("RAY_ADDRESS"))
    if not joining:
        # Two logical CPUs beyond the cores: training workers that take every core would otherwise leave
        # none for the Ray Data tasks that feed them, and wait for their data forever.
        init_kwargs.setdefault("num_cpus", (os.cpu_count() or 1) + 2)
        # Serve's proxies (started by this Ray's raylet, with this environment) refuse overload themselves
        from astroray.ray.serve.proxy import CALLBACK_ENV, CALLBACK_PATH

        os.environ.setdefault(CALLBACK_ENV, CALLBACK_PATH)
    if not joining and "RAY_AUTH_MODE" not in os.environ:
        # An ephemeral token for this local cluster: authentication stays on, nothing is written to ~/.ray.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
        # Ray's C++ side read its settings at import: let it see the mode and the token
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    ray.init(**init_kwargs)
    _STARTED_HERE = not joining
    return ray


def started_here() -> bool:
    """Whether this process started the (single-node, local) Ray it uses."""
    return _STARTED_HERE


def actor_restarts(setting: int | None = None) -> int:
    """``max_restarts`` for map actors: ``setting``, or -1 (restart, and retry their tasks) on a cluster
    that can lose nodes, 0 on a local Ray started here.

    Ray Data keeps a map actor's constructor arguments in the object store, and
    Ray logs an ERROR line for every such actor that may restart (ray#53727):
    noise on a laptop, where there is no node to lose.
    """
    if setting is not None:
        return int(setting)
    return 0 if started_here() else -1


def quiet_ray_data_progress() -> None:
    """Turn off Ray Data's own progress bars (jobs show one of their own), without Ray's notice saying so."""
    import ray
    from ray.util.debug import log_once

    log_once("ray_data_progress_manager_disabled")  # claims the notice's one showing
    ray.data.DataContext.get_current().enable_progress_bars = False
