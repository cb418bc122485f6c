"""The NER deployment: source, event and facility names in texts, batched across requests.

One :class:`~astroray.text.registry.NerFinder` per replica (the registered
``astroray-ner@champion``, else the rules when so configured).  Concurrent
requests are gathered by ``@serve.batch`` into one ``nlp.pipe`` call:
spaCy's per-call overhead is paid once per batch, not per request.  Bad
input comes back as a :class:`~astroray.ray.serve.http.UserError` (a 4xx at
the ingress); an empty text gives no names.
"""
from __future__ import annotations

import time

from ray import serve

from astroray.ray.serve.http import UserError, user_errors_as_values

__all__ = ["NerDeployment"]


@serve.deployment(name="ner", max_ongoing_requests=32)
class NerDeployment:
    """Names in texts through a configure-once finder; requests batched with ``@serve.batch``.

    Parameters
    ----------
    config : dict
        :class:`~astroray.ray.serve.schemas.NerServeConfig` as a dict.
    """

    def __init__(self, config: dict):
        from astroray.config import config_from_dict
        from astroray.ray.serve.schemas import NerServeConfig
        from astroray.text.registry import NerFinder, NerFinderConfig

        self.config = config_from_dict(NerServeConfig, config, source="serve args ner")
        self.finder = NerFinder(NerFinderConfig(model_uri=self.config.model_uri, tracking_uri=self.config.tracking_uri,
                                                fallback=self.config.fallback, gazetteer_dir=self.config.gazetteer_dir,
                                                batch_size=self.config.max_batch_size * 4))
        self._find_batch.set_max_batch_size(self.config.max_batch_size)
        self._find_batch.set_batch_wait_timeout_s(self.config.batch_wait_timeout_s)
        self._checked = time.monotonic()

    def _check_texts(self, texts) -> UserError | None:
        cfg = self.config
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            return UserError("texts must be a list of strings")
        if len(texts) > cfg.max_texts:
            return UserError(f"{len(texts)} texts in one request; at most {cfg.max_texts} (max_texts)", 413)
        for i, text in enumerate(texts):
            if len(text) > cfg.max_text_chars:
                return UserError(f"text {i} has {len(text):,} characters; at most {cfg.max_text_chars:,} "
                                 "(max_text_chars): split it", 413)
        return None

    def _maybe_reload(self) -> None:
        if self.config.reload_check_s and time.monotonic() - self._checked > self.config.reload_check_s:
            self._checked = time.monotonic()
            self.finder.reload_if_moved()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _find_batch(self, requests: list[list[str]]) -> list[list[list[dict]]]:
        # every text of every request in the batch through one nlp.pipe; rows go back by position
        flat = [{"doc_id": f"{i}:{j}", "text": t} for i, texts in enumerate(requests) for j, t in enumerate(texts)]
        rows = self.finder.run(flat)
        out = [[[] for _ in texts] for texts in requests]
        for row in rows:
            i, j = map(int, row.pop("doc_id").split(":"))
            out[i][j].append(row)
        return out

    @user_errors_as_values
    async def find(self, texts: list[str]) -> dict | UserError:
        """Names of each text: ``{"model": ..., "results": [[{text, label, start, end, normalised, source}]]}``."""
        bad = self._check_texts(texts)
        if bad is not None:
            return bad
        self._maybe_reload()
        results = await self._find_batch(list(texts)) if texts else []
        return {"model": self.finder.info["model"], "version": self.finder.version, "results": results}

    @user_errors_as_values
    async def html(self, text: str) -> str | UserError:
        """displaCy's entity view of one text as a whole HTML page (for people); the text is escaped."""
        bad = self._check_texts([text])
        if bad is not None:
            return bad
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # displaCy warns on a text without names: an empty view is the answer
            return self.finder.html(text, page=True)

    def model_info(self) -> dict:
        return {k: v for k, v in self.finder.info.items() if k != "metadata"}
