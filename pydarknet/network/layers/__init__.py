"""The layers: one module per darknet layer type, each forward, backward and update.
May import: results, kernels, files (never the network that holds them).

One module per darknet layer type. Each layer class names the cfg sections it implements in `names`
(darknet's spellings, e.g. ("convolutional", "conv")); LAYER_TYPES collects them from every module here."""
import importlib
import pkgutil

from .base import Layer

# Layers darknet gives a cost (their mean is the network's cost in training).
COST_LAYER_TYPES = frozenset({"yolo", "softmax", "cost", "region", "detection", "logistic"})

LAYER_TYPES = {}
for _module in pkgutil.iter_modules(__path__):
    for _obj in vars(importlib.import_module(f"{__name__}.{_module.name}")).values():
        # type(), not isinstance(): that asks the training kernels' lazy modules for __class__, which loads them
        if issubclass(type(_obj), type) and issubclass(_obj, Layer) and _obj.__dict__.get("names"):
            LAYER_TYPES.update({name: _obj for name in _obj.names})
