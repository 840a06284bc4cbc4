"""The operator's live page on the gateway's web listener (the one serving ``/metrics``).

``source`` gathers what the page shows into one JSON document: this process's figures
(from its :class:`~nanotoll.gateway.metrics.Metrics`, through :mod:`nanotoll.figures`,
as the fleet report computes them) and the shared ledger's (channels with unredeemed
amounts, settlements with state and gas), and the health of broker, chain node and
ledger. ``pages`` maps the listener's paths to the page, its script, the uPlot files and
the JSON API. docs/operator.md documents the API.
"""
