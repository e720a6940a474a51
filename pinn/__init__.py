"""pinn: physics-informed neural networks on exact automatic-differentiation operators.

The library (this package) never imports Hydra; ``train.py`` composes the configuration and
hands plain objects to :class:`pinn.trainer.Trainer`.
"""

__version__ = "0.1.0"
