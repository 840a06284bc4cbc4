"""Fleet simulation: many devices running the real firmware against real gateways.

``nanotoll fleet run`` brings up anvil with the escrow, mosquitto and G gateway processes
on one shared subscription, lets N devices make their own keys under MicroPython's unix
port, opens their channels with ``openMany`` (one payer funding the fleet), and runs the
devices: several agents per MicroPython process (``boards/unix/fleet.py``), each with its
own key, state record, policy and MQTT session. After the run it settles and checks the
devices' own records against the ledger and the chain. ``nanotoll fleet report`` turns
the run directory into an HTML page with plots.

Modules: :mod:`.options` (validation before anything starts), :mod:`.devices` (the
MicroPython processes), :mod:`.runner` (bring-up, run, chaos, settlement),
:mod:`.check` (devices vs ledger vs chain), :mod:`.report` (HTML and PNG), :mod:`.cli`;
with ``--net-faults`` the devices reach the broker through :mod:`.faultproxy`, which cuts
the streams into packets (:mod:`.mqtt_frames`) and applies :mod:`.netfaults` to them.
"""

from __future__ import annotations

from .options import FleetError, FleetOptions

__all__ = ["FleetError", "FleetOptions"]
