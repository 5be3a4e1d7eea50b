"""Token prices and the cost of a call: :mod:`costar.pricing`, where the model layer has always found them.

The table lives below the project file (``costar.config`` parses ``prices:`` in costar.yaml with it);
this module keeps ``costar.models.pricing`` working for code that imports it from here.
"""

from costar.pricing import BUILTIN, BUILTIN_PRICES, FREE_PROVIDERS, Price, PriceError, PriceTable, load_price_table

__all__ = ["BUILTIN", "BUILTIN_PRICES", "FREE_PROVIDERS", "Price", "PriceError", "PriceTable", "load_price_table"]
