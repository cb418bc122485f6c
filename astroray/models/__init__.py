"""Models: each a config, an ``nn.Module`` and a LightningModule (no Ray), plus the scorers that load them.

Submodules import torch; import them where a model is needed (``astroray.imaging``
never does: the image pipeline is handed a scorer).

* :mod:`~astroray.models.realbogus` -- U-Net real/bogus on difference-image stamps
* :mod:`~astroray.models.registry` -- model kinds by name, for the training backbone
* :mod:`~astroray.models.lightning_modules` -- the LightningModules Ray Train fits (apart, so that scoring
  never imports Lightning; the model modules still export them by name)
"""
