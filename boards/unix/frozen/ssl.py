# ssl for nanotoll's build of the unix port, frozen into it by boards/unix/manifest.py.
#
# Debian's MicroPython source has no micropython-lib, whose ssl.py the other ports
# freeze; this module gives the same names over the built-in tls module, as far as
# mqtt.broker_tls() and asyncio.open_connection(ssl=...) use them.

import tls
from tls import CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED  # noqa: F401  (re-exported)
from tls import MBEDTLS_VERSION, PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER  # noqa: F401


class SSLContext:
    """CPython's SSLContext names over tls.SSLContext (a native type whose attributes a
    Python subclass would shadow rather than set, hence a wrapper)."""

    def __init__(self, protocol):
        self._tls = tls.SSLContext(protocol)

    @property
    def verify_mode(self):
        return self._tls.verify_mode

    @verify_mode.setter
    def verify_mode(self, mode):
        self._tls.verify_mode = mode

    def load_verify_locations(self, cafile=None, cadata=None):
        """Trust the CA certificate in ``cadata`` or the file ``cafile``, in DER
        (this mbedTLS binding parses no PEM there)."""
        if cafile is not None:
            with open(cafile, "rb") as f:
                cadata = f.read()
        if not cadata:
            raise ValueError("load_verify_locations: no CA given (cafile or cadata)")
        self._tls.load_verify_locations(cadata)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    server_hostname=None):
        return self._tls.wrap_socket(sock, server_side=server_side,
                                     do_handshake_on_connect=do_handshake_on_connect,
                                     server_hostname=server_hostname)
