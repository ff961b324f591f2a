"""Adapters for training frameworks; each module imports its framework only when it is imported itself.

* ``steplog.integrations.lightning.SteplogLogger``: a PyTorch Lightning ``Logger``.
* ``steplog.integrations.transformers.SteplogCallback``: a Hugging Face ``TrainerCallback``.
* ``steplog.integrations.keras.SteplogCallback``: a Keras 3 ``Callback``.

docs/integrations.md has a copy-paste example for each.

Example:
    >>> import steplog.integrations, sys
    >>> "lightning" in sys.modules or "steplog.integrations.lightning" not in sys.modules
    True
"""
