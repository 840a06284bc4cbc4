"""A nanotoll product plugin selling the airport weather observation nearest a position.

Install it beside the gateway (``pip install examples/metar-nowcast``) and sell it with::

    [[catalog.products]]
    name = "metar"
    kind = "metar"          # the entry point this package registers in nanotoll.products
    price = 900             # optional: the plugin's own price otherwise
    options = { file = "/srv/metar/observations.txt" }   # optional: the shipped file otherwise
"""

from .metar import Observation, parse_metar
from .plugin import MetarNowcast

__all__ = ["MetarNowcast", "Observation", "parse_metar"]
