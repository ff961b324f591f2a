"""pytest: collect the doctests of an adapter only where its framework is installed (CI installs them all)."""

import importlib.util
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # keras.py's doctest: CI has torch, not TensorFlow

collect_ignore = [f"{module}.py" for module, package in
                  (("lightning", "lightning"), ("transformers", "transformers"), ("keras", "keras"))
                  if importlib.util.find_spec(package) is None]
