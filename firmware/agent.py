# nanotoll device: the payment agent.
#
#   agent = Agent(wallet, client, store, policy, provider, channel)
#   await agent.start()
#   data = await agent.buy("weather", {"lat": 52520008, ...}, max_price=2000)
#   agent.receipt   -> the last verified receipt [channel, cumulative, req hash, data hash, sig]
#
# Request state machine (docs/protocol.md 4.1): the new cumulative amount and the
# request bytes are written to the state record BEFORE the voucher leaves the device;
# a request without an answer stays pending and is re-sent byte for byte (after a
# timeout, a reconnect or a reboot), so a retry is never a second charge.
#
# Only the provider's word moves the device: a response counts when its receipt or
# its error signature verifies against the provisioned provider for the request in
# flight; anything else on the response topic is counted and ignored. A verified
# catalog stays until a newer one verifies.

import asyncio
import gc
from time import ticks_ms, ticks_diff, ticks_add
from micropython import const
import wallet as W
import errors as E
from errors import (
    BudgetExhausted,
    PolicyDenied,
    PriceTooHigh,
    ProtocolError,
    ProviderError,
    StateError,
    Timeout,
)
from mqtt import MQTTError, MQTTTimeout
from store import forget_last_purchase, record_purchase

_MAX_REQUEST = const(512)
_MAX_RESPONSE = const(8192)
_MAX_CATALOG = const(2048)
_MAX_RID = const(0xFFFFFFFF)
_MAX_AMOUNT = const(0xFFFFFFFFFFFFFFFF)
_BUSY_WAIT_MS = const(500)
_CATALOG_ASK_MS = const(1000)  # first wait before asking the broker for the catalog again
_CATALOG_ASK_MAX_MS = const(8000)
_REFUSED_KEPT = const(16)  # forged responses to the request in flight remembered
_BLANK_VOUCHER = bytes(76)


def decode_response(payload):
    """A response message's bytes, decoded for Agent._on_response (CBORError if not CBOR)."""
    return W.loads(payload, _MAX_RESPONSE)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)  # true is no number here


def _is_uint(v):
    return _is_int(v) and v >= 0


def _is_name(v, longest):
    # [a-z][a-z0-9_]{0,longest-1} (docs/protocol.md 3.1), without the re module
    if not isinstance(v, str) or not 0 < len(v) <= longest or not "a" <= v[0] <= "z":
        return False
    for c in v:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "_"):
            return False
    return True


def _params_ok(params):
    # at most 16 keys; values integers, text, bytes, booleans or arrays of them
    if not isinstance(params, dict) or len(params) > 16:
        return False
    for key in params:
        if not _is_name(key, 16):
            return False
        value = params[key]
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if not isinstance(item, (int, bool, str, bytes, bytearray)):
                return False
    return True


class Catalog:
    def __init__(self, seq, valid_from, valid_until, prices):
        self.seq = seq
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.prices = prices  # {name: unit price}

    def valid_at(self, now):
        return now is None or self.valid_from <= now < self.valid_until


class Agent:
    def __init__(
        self,
        wallet,
        client,
        store,
        policy,
        provider,
        channel,
        clock=None,
        log=None,
        timeout_ms=15000,
        resend_ms=4000,
        retries=2,
        owner_policy=None,
        purchase_log=None,
    ):
        self.wallet = wallet
        self.client = client
        self.store = store
        self.policy = policy
        # owner_policy.OwnerPolicy when the config names the owner: signed policies on
        # t_policy replace `policy` (None: the provisioned policy is the only one)
        self.owner_policy = owner_policy
        self.policy_refusals = 0
        self.purchase_log = purchase_log  # purchase_log.PurchaseLog, or None: not kept
        self.provider = provider  # 20 bytes
        self.channel = channel
        self.clock = clock  # () -> unix seconds, or None when the clock is not set
        self.log = log
        self.timeout_ms = timeout_ms
        self.resend_ms = resend_ms
        self.retries = retries  # automatic re-signs after STALE_VOUCHER / PRICE_CHANGED
        prov = W.hexaddr(provider)
        dev = W.hexaddr(wallet.address)
        self.provider_hex = prov
        self.device_hex = dev
        self.t_catalog = "nt/1/%s/catalog" % prov
        self.t_req = "nt/1/%s/req/%s" % (prov, dev)
        self.t_resp = "nt/1/%s/resp/%s" % (prov, dev)
        self.t_status = "nt/1/%s/status/%s" % (prov, dev)
        self.t_policy = "nt/1/%s/policy/%s" % (prov, dev)
        self.catalog = None
        self._max_seq = -1  # highest catalog seq verified: an older one never comes back
        self._want_seq = 0  # the provider said (signed) this seq is current: look for it
        self._refresh = False
        self.bad_catalogs = 0
        self.bad_messages = 0
        self.bad_responses = 0  # undecodable messages on our response topic
        self.heap_errors = 0  # messages dropped for want of heap
        self.unverified = 0  # responses to our request whose signature did not verify
        self._unverified_why = ""
        self.receipt = None
        self.last_price = 0
        self.resyncs = 0
        self._catalog_event = asyncio.Event()
        self._response_event = asyncio.Event()
        self._waiting = -1
        self._request_hash = None  # of the request in flight, and its cumulative amount
        self._refused = []  # keys of the responses to it that did not verify
        self._cumulative = 0
        self._response = None
        self._lock = asyncio.Lock()
        self._pump_task = None

    # ------------------------------------------------------------------ life cycle

    @property
    def state(self):
        return self.store.state

    def _log(self, *args):
        if self.log:
            self.log(*args)

    def _now(self):
        return self.clock() if self.clock else None

    async def start(self, timeout_ms=None):
        """Connect, subscribe to the responses and the catalog, re-send a pending request."""
        if self.store.state is None and self.store.corrupt is None:
            self.store.load()
        if self.store.corrupt:
            self._log("agent: state record corrupt (%s): refusing to sign" % self.store.corrupt)
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump())
        await self.client.subscribe(self.t_resp, 1)
        await self.client.subscribe(self.t_catalog, 1)
        if self.owner_policy is not None:
            await self.client.subscribe(self.t_policy, 1)
        try:
            await self.client.start(timeout_ms or self.timeout_ms)
        except MQTTError as exc:
            why = self.client.last_error or exc
            if isinstance(why, MemoryError):
                raise MemoryError("broker not reachable, the heap ran short: %r" % (why,))
            raise Timeout("broker not reachable: %r" % (why,))
        status = b"state-corrupt" if self.store.corrupt else b"online"
        try:
            await self.client.publish(self.t_status, status, retain=True)
        except MQTTTimeout:
            pass
        if self.state is not None and self.state.pending:
            try:
                await self._finish_pending(timeout_ms or self.timeout_ms)
            except Timeout:
                self._log("agent: pending request still unanswered")

    async def stop(self):
        try:
            if self.client.isconnected():
                await self.client.publish(self.t_status, b"offline", retain=True, timeout_ms=2000)
        except Exception:
            pass
        await self.client.stop()
        if self._pump_task is not None:
            self._pump_task.cancel()
            self._pump_task = None

    # ------------------------------------------------------------------ inbound

    async def _pump(self):
        while True:
            topic, payload = await self.client.inbox.get()
            try:
                if topic == self.t_resp:
                    # Decoded, and the bytes let go, before the receipt is verified:
                    # verifying it is the heap's highest point of a purchase.
                    resp = decode_response(payload)
                    payload = None
                    self._on_response(resp)
                elif topic == self.t_catalog:
                    # Collected first: verifying a catalog is the heap's highest point
                    # while the agent starts, and catalogs come seldom.
                    gc.collect()
                    self._on_catalog(payload)
                elif topic == self.t_policy:
                    self._on_policy(payload)
            except Exception as exc:  # a bad message never stops the pump
                self.bad_messages += 1
                if isinstance(exc, MemoryError):
                    self.heap_errors += 1
                if topic == self.t_resp:
                    self.bad_responses += 1
                self._log("agent: dropped a message on", topic, repr(exc))
            # Not held while the next message is awaited (a purchase signs and writes
            # the state record meanwhile).
            payload = resp = None

    def _on_policy(self, payload):
        keeper = self.owner_policy
        if keeper is None or not payload or payload == keeper.raw:
            return  # the retained copy of the policy in force comes back on every connect
        st = self.state
        try:
            self.policy = keeper.apply(payload, st.cumulative if st is not None else 0)
        except ValueError as exc:  # owner_policy.PolicyRefused, or a failed flash write
            self.policy_refusals += 1
            self._log("agent: policy refused (%s): %s; seq %d stays" % (getattr(exc, "reason", "write"), exc, keeper.seq))
            return
        self._log("agent: policy seq", keeper.seq, "applied")

    def _on_catalog(self, payload):
        if not payload:
            return  # retained message cleared
        cat = W.loads(payload, _MAX_CATALOG)
        if not isinstance(cat, list) or len(cat) != 7:
            raise ValueError("catalog shape")
        version, provider, seq, vfrom, vuntil, products, sig = cat
        if not _is_int(version) or version != 1:
            raise ValueError("catalog version %r" % version)
        if not (_is_uint(seq) and _is_uint(vfrom) and _is_uint(vuntil)):
            raise ValueError("catalog fields")
        if seq < self._max_seq or (self.catalog is not None and seq <= self.catalog.seq):
            return  # each seq is read once; an older one never replaces a newer
        if provider != self.provider:
            self.bad_catalogs += 1
            raise ValueError("catalog of another provider")
        if not isinstance(products, list) or not 1 <= len(products) <= 32:
            raise ValueError("catalog products")
        prices = {}
        for item in products:
            if not isinstance(item, list) or len(item) != 3:
                raise ValueError("catalog product")
            name, price, desc = item
            if not _is_name(name, 32) or not isinstance(desc, str) or len(desc) > 64:
                raise ValueError("catalog product")
            if not _is_uint(price) or not 1 <= price <= _MAX_AMOUNT:
                raise ValueError("catalog price")
            prices[name] = price
        if not isinstance(sig, bytes) or len(sig) != 64:
            raise ValueError("catalog signature")
        products_hash = W.keccak256(W.dumps(products))
        try:
            signed = self.wallet.catalog_signed_by(self.provider, seq, vfrom, vuntil,
                                                   products_hash, sig)
        except (ValueError, TypeError):  # a MemoryError is not a bad signature
            signed = False
        if not signed:
            self.bad_catalogs += 1
            raise ValueError("catalog signature does not verify")
        self.catalog = Catalog(seq, vfrom, vuntil, prices)
        self._max_seq = seq
        self._log("agent: catalog seq", seq)
        self._catalog_event.set()

    def _on_response(self, resp):
        """A response, decoded (decode_response), to the request in flight or not."""
        if not isinstance(resp, list) or len(resp) != 4:
            raise ValueError("response shape")
        version, rid, code, body = resp
        if not _is_uint(rid) or not _is_uint(code):
            raise ValueError("response fields")
        if rid != self._waiting or self._response is not None:
            return  # a late duplicate, or the request is answered already
        if not _is_int(version) or version != 1:
            raise ValueError("response version %r" % version)
        if not isinstance(body, list):
            raise ValueError("response body")
        why = self._verify_ok(body) if code == E.OK else self._verify_error(code, body)
        if why:
            self.unverified += 1
            self._unverified_why = why
            self._log("agent: ignored a response to request", rid, "(%s)" % why)
            return
        self._response = (code, body)
        self._response_event.set()

    def _verify_ok(self, body):
        """"" when body is [data, receipt] with the provider's receipt for the request in
        flight, else why not."""
        if len(body) != 2:
            raise ValueError("response body")
        data, receipt = body
        if not isinstance(data, bytes):
            return "response data is not a byte string"
        if not isinstance(receipt, list) or len(receipt) != 5:
            return "receipt shape"
        ch, cum, rhash, dhash, sig = receipt
        if not (ch == self.channel and cum == self._cumulative and rhash == self._request_hash
                and isinstance(sig, bytes) and len(sig) == 64
                and dhash == W.keccak256(data)):
            return "receipt does not match the request"
        return self._verified(W.keccak256(W.dumps(receipt)), "receipt",
                              self.wallet.receipt_signed_by, self.provider, ch, cum, rhash,
                              dhash, sig)

    def _verify_error(self, code, body):
        """"" when body is [message, detail, channel, request hash, signature] signed by
        the provider for the request in flight, else why not."""
        if len(body) != 5:
            return "error body shape"
        _, detail, ch, rhash, sig = body
        if not (ch == self.channel or ch == 0) or rhash != self._request_hash:
            return "error does not answer the request"
        if not isinstance(sig, bytes) or len(sig) != 64:
            return "error signature shape"
        detail_hash = W.keccak256(W.dumps(detail))
        return self._verified(W.keccak256(W.dumps([code, detail_hash, ch, sig])), "error signature",
                              self.wallet.error_signed_by, self.provider, ch, rhash, code,
                              detail_hash, sig)

    def _verified(self, key, what, check, *args):
        # A flood of copies costs one verification per request: key is the hash of all
        # that decides the check (request hash aside, fixed for the request in flight),
        # hashed by the caller so that those bytes are not held through the check.
        if key in self._refused:
            return what + " refused before"
        try:
            ok = check(*args)
        except (ValueError, TypeError):  # a MemoryError is not a bad signature
            ok = False
        if ok:
            return ""
        if len(self._refused) >= _REFUSED_KEPT:
            self._refused.pop(0)
        self._refused.append(key)
        return what + " does not verify"

    # ------------------------------------------------------------------ purchase

    async def _ask_catalog(self, deadline):
        # SUBSCRIBE again: the broker re-sends the retained catalog
        try:
            await self.client.subscribe(self.t_catalog, 1, max(1, ticks_diff(deadline, ticks_ms())))
        except MQTTError:
            pass

    async def _wait_catalog(self, deadline, min_seq=0):
        """The catalog held, once it is valid and at least the seq wanted; until then the
        retained catalog is asked for again, with back-off. The catalog held is kept."""
        cat = self.catalog
        stale = cat is not None and cat.seq < max(min_seq, self._want_seq)
        pause = _CATALOG_ASK_MS
        # at once when the provider said there is newer, else after a first pause (the
        # retained catalog is on its way after a SUBSCRIBE)
        ask_at = ticks_ms() if self._refresh or stale else ticks_add(ticks_ms(), pause)
        self._refresh = False
        while True:
            want = max(min_seq, self._want_seq)
            cat = self.catalog
            if cat is not None and cat.seq >= want and cat.valid_at(self._now()):
                return cat
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                raise ProviderError("no valid signed catalog of seq %d or above" % want)
            if ticks_diff(ticks_ms(), ask_at) >= 0:
                await self._ask_catalog(deadline)
                pause = min(pause * 2, _CATALOG_ASK_MAX_MS)
                ask_at = ticks_add(ticks_ms(), pause)
            self._catalog_event.clear()
            try:
                await asyncio.wait_for_ms(self._catalog_event.wait(), min(left, 1000))
            except asyncio.TimeoutError:
                pass

    async def buy(self, product, params, max_price=None, timeout_ms=None):
        """Buy one item; return its data bytes. The verified receipt is in self.receipt.

        Short of heap it raises MemoryError, also when the heap ran out in the pump or
        the link and the purchase then failed for want of a response or a catalog."""
        deadline = ticks_add(ticks_ms(), timeout_ms or self.timeout_ms)
        async with self._lock:
            # Counted, not compared: MicroPython may raise one preallocated MemoryError.
            heap = self.heap_errors + self.client.heap_errors
            try:
                return await self._buy(product, params, max_price, deadline)
            except (Timeout, ProviderError) as exc:  # no response, or no catalog
                if self.heap_errors + self.client.heap_errors != heap:
                    raise MemoryError("%s: the heap ran short meanwhile" % exc)
                raise

    async def _buy(self, product, params, max_price, deadline):
        """buy(), under its lock."""
        if self.store.corrupt or self.state is None:
            raise StateError("state record corrupt (%s): resync first" % self.store.corrupt)
        if self.state.pending:
            await self._finish_pending(ticks_diff(deadline, ticks_ms()))
        min_seq = 0
        for attempt in range(self.retries + 1):
            cat = await self._wait_catalog(deadline, min_seq)
            price = cat.prices.get(product)
            if price is None:
                raise ProtocolError(E.UNKNOWN_PRODUCT, "%s is not in catalog %d" % (product, cat.seq))
            request = self._prepare(product, params, price, cat.seq, max_price)
            code, body = await self._exchange(request, deadline)
            if code == E.OK:
                return self._accept(request, body)
            self._log("agent: error", E.code_name(code), body[0] if body else "")
            if code == E.STALE_VOUCHER:
                self._fast_forward(body[1])
            elif code == E.PRICE_CHANGED:
                detail = body[1]
                min_seq = detail if _is_uint(detail) else cat.seq + 1
                self._want_seq = max(self._want_seq, min_seq)
            else:
                self._raise(code, body)
        raise ProtocolError(code, "still %s after %d attempts" % (E.code_name(code), attempt + 1))

    def _prepare(self, product, params, price, seq, max_price):
        """Check the policy, sign, and write the record: return the request bytes."""
        st = self.state
        # Never below a voucher already signed: an unanswered or refused higher one may
        # still reach the provider, so its amount is already counted as spent.
        cumulative = max(st.acked + price, st.cumulative)
        if cumulative > _MAX_AMOUNT:
            raise BudgetExhausted("cumulative amount would pass 2^64-1")
        increase = cumulative - st.cumulative
        now = self._now()
        self.policy.check(self.provider_hex, product, price, increase, st, now, max_price)
        rid = st.request_id % _MAX_RID + 1
        if not _params_ok(params):
            raise ProtocolError(E.BAD_PARAMS, "params outside docs/protocol.md 3.1")
        # Encode once with a blank voucher (same size): bad params or an oversized
        # request are refused before anything is signed.
        try:
            size = len(W.dumps([1, rid, product, params, price, seq, _BLANK_VOUCHER]))
        except (ValueError, TypeError) as exc:
            raise ProtocolError(E.BAD_PARAMS, "params do not encode: %s" % exc)
        if size > _MAX_REQUEST:
            raise ProtocolError(E.TOO_LARGE, "request of %d bytes is over %d" % (size, _MAX_REQUEST))
        voucher = self.wallet.sign_voucher(self.channel, cumulative)
        request = W.dumps([1, rid, product, params, price, seq, voucher])
        new = st.copy()
        new.cumulative = cumulative
        new.spent = st.spent + increase
        new.request_id = rid
        new.pending = request
        new.by_product[product] = new.by_product.get(product, 0) + increase
        if now is not None:
            record_purchase(new.history, now, increase)  # in place: st shares the list
        try:
            self.store.save(new)  # durable before the voucher leaves the device
        except BaseException:
            if now is not None:
                forget_last_purchase(new.history)  # st stays as it was
            raise
        self.last_price = price
        return request

    async def _exchange(self, request, deadline):
        """Publish the request (again, same bytes) until its response or the deadline."""
        rid = self._expect(request)
        bad = self.bad_responses
        heap = self.heap_errors
        unverified = self.unverified
        try:
            while True:
                left = ticks_diff(deadline, ticks_ms())
                if left <= 0:
                    # the request stays pending: it is re-sent, never signed again
                    if self.unverified != unverified:
                        raise ProviderError("%s (request %d)" % (self._unverified_why, rid))
                    if self.bad_responses != bad:
                        if self.heap_errors != heap:
                            raise MemoryError("no heap to read the response to request %d" % rid)
                        raise ProtocolError(E.MALFORMED, "undecodable response to request %d" % rid)
                    raise Timeout("no response to request %d" % rid)
                connects = self.client.connects
                if self._response is None:
                    try:
                        await self.client.publish(self.t_req, request, 1, False, left)
                    except MQTTTimeout:
                        raise Timeout("request %d not acknowledged by the broker" % rid)
                sent = ticks_ms()
                while self._response is None:
                    left = ticks_diff(deadline, ticks_ms())
                    if left <= 0 or ticks_diff(ticks_ms(), sent) >= self.resend_ms:
                        break
                    if self.client.connects != connects:
                        break  # reconnected: re-send the same bytes
                    self._response_event.clear()
                    try:
                        await asyncio.wait_for_ms(self._response_event.wait(), min(left, 200))
                    except asyncio.TimeoutError:
                        pass
                if self._response is None:
                    continue
                code, body = self._response
                if code != E.BUSY:
                    return code, body
                self._response = None
                await asyncio.sleep_ms(min(_BUSY_WAIT_MS, max(0, ticks_diff(deadline, ticks_ms()))))
        finally:
            self._waiting = -1

    def _expect(self, request):
        """Wait for the response to these request bytes from now on: return its id."""
        fields = W.loads(request, _MAX_REQUEST)
        self._request_hash = W.keccak256(request)
        self._cumulative = int.from_bytes(fields[6][4:12], "big")
        self._response = None
        self._response_event.clear()
        self._refused = []
        self._waiting = fields[1]
        return fields[1]

    def _accept(self, request, body):
        """A response whose receipt verified (_verify_ok): the purchase is done."""
        data, receipt = body
        cumulative = receipt[1]
        new = self.state.copy()
        new.pending = b""
        if cumulative > new.acked:
            new.acked = cumulative
        self.store.save(new)
        self.receipt = receipt
        if self.purchase_log is not None:
            self._record(request, receipt)
        return data

    def _record(self, request, receipt):
        """Add a purchase whose receipt verified to the log; the purchase stands either way."""
        fields = W.loads(request, _MAX_REQUEST)
        try:
            self.purchase_log.append(self._now(), self.provider, fields[2], fields[4],
                                     receipt[1], receipt[2], receipt[3], receipt[4])
        except (OSError, ValueError) as exc:
            self._log("agent: purchase log not written:", repr(exc))

    def _answered(self):
        """An error response: the voucher was refused, nothing charged; clear pending."""
        new = self.state.copy()
        new.pending = b""
        self.store.save(new)

    def _fast_forward(self, raw):
        """STALE_VOUCHER: check our own signature on the gateway's highest voucher."""
        self._answered()
        if not isinstance(raw, bytes) or len(raw) != 76:
            raise ProtocolError(E.STALE_VOUCHER, "detail is not a voucher")
        try:
            channel, cumulative = self.wallet.own_voucher(raw)
        except ValueError:
            channel = None
        if channel != self.channel:
            raise ProtocolError(E.STALE_VOUCHER, "detail voucher is not ours")
        st = self.state
        new = st.copy()
        if cumulative > new.cumulative:
            new.spent += cumulative - new.cumulative
            new.cumulative = cumulative
        if cumulative > new.acked:
            new.acked = cumulative
        self.store.save(new)
        self.resyncs += 1
        self._log("agent: fast-forwarded to", cumulative)

    def _raise(self, code, body):
        self._answered()
        message = body[0] if body and isinstance(body[0], str) else ""
        if code == E.OVERDRAFT:
            raise BudgetExhausted("gateway: " + message)
        if code == E.PROVIDER_ERROR:
            raise ProviderError("gateway: " + message)
        if code in (E.UNKNOWN_PRODUCT, E.UNDERPAID):
            self._refresh = True  # read the signed catalog again before the next purchase
        raise ProtocolError(code, message, body[1] if body else None)

    async def _finish_pending(self, timeout_ms):
        """Re-send the last unanswered request, byte for byte, and settle its answer."""
        request = self.state.pending
        deadline = ticks_add(ticks_ms(), max(timeout_ms, 1))
        code, body = await self._exchange(request, deadline)
        if code == E.OK:
            try:
                self._accept(request, body)
            except ProviderError as exc:
                self._log("agent: pending request:", repr(exc))
        elif code == E.STALE_VOUCHER:
            self._fast_forward(body[1])
        else:
            self._answered()

    async def resync(self, product=None, timeout_ms=None):
        """Recover from a corrupt record through the gateway's highest voucher.

        Signs a probe voucher of cumulative 1, which a gateway that accepted anything
        answers with STALE_VOUCHER carrying the channel's highest voucher; that voucher
        is checked for our own signature and becomes the new record.
        """
        deadline = ticks_add(ticks_ms(), timeout_ms or self.timeout_ms)
        async with self._lock:
            cat = await self._wait_catalog(deadline)
            if product is None:
                for product in cat.prices:
                    break
            price = cat.prices[product]
            fresh = __import__("store").State(self.channel)
            rid = (self.state.request_id if self.state else 0) % _MAX_RID + 1
            voucher = self.wallet.sign_voucher(self.channel, 1)
            request = W.dumps([1, rid, product, {}, price, cat.seq, voucher])
            fresh.cumulative = 1
            fresh.spent = 1
            fresh.request_id = rid
            fresh.pending = request  # a cut from here on re-sends the probe at boot
            self.store.replace_after_resync(fresh)
            code, body = await self._exchange(request, deadline)
            if code == E.STALE_VOUCHER:
                self._fast_forward(body[1])
            elif code == E.OK:
                self._accept(request, body)
            else:
                self._answered()
            return self.state.cumulative
