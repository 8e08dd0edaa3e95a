"""Metrics of a model state, before and after, and the floors they are read against.

Every module of this package is imported with it, so a module that registers a metric with a ``compute``
function (``metrics/registry.py``) joins every evaluation, report and comparison by existing: adding a metric
touches one file (``membership.py`` is the example).
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
