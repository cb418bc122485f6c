"""The name-finding pipeline in MLflow: logged with the spaCy flavour, loaded by alias, rules when none is there.

::

    from astroray.text.registry import NerFinder
    finder = NerFinder()                      # models:/astroray-ner@champion, else the rules
    finder.info["kind"]                        # "registered" or "rules"
    rows = finder.run(["GRB 221009A: Swift-XRT observations"])

:class:`NerFinder` is a configure-once stage: it loads the registered model
once (or builds the rules pipeline when no model is registered and
``fallback="rules"``) and hands documents to a
:class:`~astroray.text.extract.NameFinder`.  Ray Data actors, the Serve
deployment and plain code use the same object.  No Ray here.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import ConfigError
from astroray.stage import Stage

__all__ = ["NER_MODEL_NAME", "DEFAULT_NER_URI", "RULES_MODEL", "log_ner_model", "load_ner_model",
           "registered_ner_uri", "NerFinderConfig", "NerFinder"]

NER_MODEL_NAME = "astroray-ner"
"""The registered model name (``astroray.tracking.REGISTERED_MODELS["ner"]``)."""
DEFAULT_NER_URI = f"models:/{NER_MODEL_NAME}@champion"
RULES_MODEL = "rules"
"""``model_uri`` value for the rules pipeline (conventions, facility phrases, gazetteer), no statistical tagger."""


def log_ner_model(mlflow, nlp, *, name: str = "model", metadata: dict | None = None):
    """Log a spaCy pipeline to the active run with MLflow's spaCy flavour; returns MLflow's ``ModelInfo``.

    Requirements are given (spaCy's version) rather than inferred: inferring
    them loads the model in a subprocess, which costs seconds and adds nothing.
    astroray itself must be installed where the model is loaded (its tokenizer
    and components are registered as spaCy entry points).
    """
    import spacy

    return mlflow.spacy.log_model(nlp, name=name, pip_requirements=[f"spacy=={spacy.__version__}"],
                                  metadata=dict(metadata or {}))


def _store_exists(target: str) -> bool:
    """False for a local sqlite store whose file does not exist (asking it would create it)."""
    if target.startswith("sqlite:///"):
        path = target[len("sqlite:///"):]
        return path == ":memory:" or Path(path).is_file()
    return True


def registered_ner_uri(model_uri: str = DEFAULT_NER_URI, *, tracking_uri: str | None = None) -> str | None:
    """``models:/NAME/VERSION`` that ``model_uri`` (``models:/NAME@ALIAS``) points at now, or None when the store,
    the model or the alias does not exist.  Other URIs (``runs:/``, ``models:/NAME/VERSION``) come back as they are."""
    from astroray.tracking import alias_version, parse_model_uri, tracking_uri as resolve

    if not model_uri.startswith("models:/"):
        return model_uri
    name, alias = parse_model_uri(model_uri)
    if alias is None:
        return model_uri
    if not _store_exists(resolve(tracking_uri)):
        return None
    version = alias_version(name, alias=alias, uri=tracking_uri)
    return None if version is None else f"models:/{name}/{version}"


def load_ner_model(model_uri: str = DEFAULT_NER_URI, *, tracking_uri: str | None = None):
    """Load a logged NER pipeline (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN/model``).

    Returns ``(nlp, info)``: ``info`` holds ``uri``, ``name``, ``version``,
    ``run_id`` and the logged ``metadata``.  The alias is resolved once and
    the version read is pinned, whatever the alias does next.

    Raises
    ------
    ConfigError
        No such model, version or alias in the store (the message names the store).
    """
    import mlflow

    import astroray.text.pipeline  # noqa: F401  (registers the tokenizer and components for spacy.load)
    from astroray.tracking import load_logged_model, tracking_uri as resolve

    target = resolve(tracking_uri)
    if not _store_exists(target):
        raise ConfigError(f"cannot load {model_uri}: there is no MLflow store at {target} (train one with "
                          "jobs/train_ner.py, or use the rules)")
    return load_logged_model(model_uri, mlflow.spacy.load_model, uri=target)


class NerFinderConfig(AstrorayConfig):
    """Which pipeline a :class:`NerFinder` uses, and how it cuts documents.

    Attributes
    ----------
    model_uri : str
        ``models:/NAME@ALIAS`` (default the champion), ``models:/NAME/VERSION``,
        ``runs:/RUN/model``, a folder saved by ``nlp.to_disk``, or ``"rules"``.
    tracking_uri : str or None
        MLflow store (default ``$MLFLOW_TRACKING_URI``, else ``$ASTRORAY_HOME/mlflow.db``).
    fallback : {"rules", "error"}
        When ``model_uri`` is an alias that is not registered: build the rules
        pipeline here (``"rules"``) or raise :class:`~astroray.errors.ConfigError`.
    gazetteer_dir : str or None
        Gazetteer folder for the rules pipeline (a registered model carries its own).
    batch_size, max_chunk_chars : int
        Passed to :class:`~astroray.text.extract.NameFinder`.
    """

    model_uri: str = DEFAULT_NER_URI
    tracking_uri: str | None = None
    fallback: Literal["rules", "error"] = "rules"
    gazetteer_dir: str | None = None
    batch_size: int = Field(default=64, ge=1)
    max_chunk_chars: int = Field(default=100_000, ge=1_000, le=1_000_000)


class NerFinder(Stage[NerFinderConfig]):
    """Names in documents with the registered pipeline (loaded once) or the rules.

    ``info`` says which: ``kind`` (``"registered"``, ``"saved"`` or
    ``"rules"``), ``model`` (a line for people), and for a registered model
    its ``name``, ``version``, ``run_id``.
    """

    config_class = NerFinderConfig

    def setup(self) -> None:
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        from astroray.text.extract import NameFinder

        nlp, info = self._pipeline()
        finder = NameFinder(nlp, batch_size=self.config.batch_size, max_chunk_chars=self.config.max_chunk_chars)
        with self._lock:  # a reload swaps the finder and its description together
            self.finder, self.info = finder, info

    def _pipeline(self):
        from astroray.text.pipeline import NerConfig, build_pipeline, load_pipeline

        cfg = self.config
        uri = cfg.model_uri
        if uri != RULES_MODEL and "://" not in uri and ":/" not in uri:
            path = Path(uri)
            if not (path / "config.cfg").is_file():
                raise ConfigError(f"model {uri!r} is neither a registry/run URI nor a saved spaCy pipeline folder")
            return load_pipeline(path), {"kind": "saved", "model": f"saved pipeline {path}", "uri": uri}
        pinned = None if uri == RULES_MODEL else registered_ner_uri(uri, tracking_uri=cfg.tracking_uri)
        if pinned is None:
            if uri != RULES_MODEL and cfg.fallback == "error":
                raise ConfigError(f"{uri} is not registered in the MLflow store; train one with jobs/train_ner.py")
            gaz = cfg.gazetteer_dir
            nlp = build_pipeline(NerConfig(model=False), gazetteer_dir=gaz)
            why = "model_uri: rules" if uri == RULES_MODEL else f"{uri} is not registered"
            return nlp, {"kind": "rules", "uri": RULES_MODEL,
                         "model": f"rules+blank pipeline built here ({why}; gazetteer: {gaz or 'none'})"}
        nlp, info = load_ner_model(pinned, tracking_uri=cfg.tracking_uri)
        info.update(kind="registered", uri=uri,
                    model=f"{uri} -> {info['resolved']}" if pinned != uri else str(uri))
        return nlp, info

    @property
    def version(self) -> int | None:
        return self.info.get("version")

    def reload_if_moved(self) -> bool:
        """Reload when the configured alias now points at another version (or was registered since); True if it did."""
        from astroray.tracking import parse_model_uri

        uri = self.config.model_uri
        if not uri.startswith("models:/") or parse_model_uri(uri)[1] is None:
            return False
        pinned = registered_ner_uri(uri, tracking_uri=self.config.tracking_uri)
        if pinned is None or pinned == self.info.get("resolved"):
            return False
        self._load()
        return True

    def run(self, documents) -> list[dict]:
        """Rows of :data:`~astroray.text.extract.NAME_ROW_FIELDS` (see :meth:`NameFinder.run`)."""
        with self._lock:
            finder = self.finder
        return finder.run(documents)

    def html(self, document, *, page: bool = False) -> str:
        """displaCy's entity view of one document (see :meth:`NameFinder.html`)."""
        with self._lock:
            finder = self.finder
        return finder.html(document, page=page)
