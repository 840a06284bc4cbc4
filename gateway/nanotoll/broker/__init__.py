"""The project's MQTT broker made safe to expose: mosquitto with a TLS listener and the
dynamic-security plugin.

``pki`` makes the CA and the server certificate; ``rights`` says, as ACLs, what a
device, a gateway and an owner's tool may publish and subscribe; ``dynsec`` writes the
plugin's file and talks to its control topic; ``site`` lays out a broker's folder and
its config; ``cli`` is ``nanotoll broker init|run``.
"""
