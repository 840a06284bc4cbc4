# Power-cut fault injection for the payment agent (MicroPython, run by
# tests/firmware/test_agent_powercut.py). The agent's state lives on littlefs (VfsLfs2) on a
# RAM block device that "loses power" at a chosen flash operation (program or erase):
# from then on every flash operation fails, the running purchase dies, and the
# device "reboots": the file system is mounted again from the same bytes and a new
# agent resumes from its record. The provider is in-process (firmware crypto for
# its catalog and receipt signatures) and keeps its state across the cut.
#
# For every flash operation of a run of purchases (each one a separate run, cut
# there, rebooted, and run to the end) it proves: spent never exceeds the budget; no
# voucher is signed below one already sent; after the reboot the record verifies,
# and once the purchases are done the device's and the provider's amounts agree.
#
# The second run adds the owner's signed policy: the device spends its provisioned
# budget, the owner's policy seq 2 (a larger budget) arrives retained, is applied, and
# the device buys up to the new budget. Cut at every flash operation of that run, the
# device boots with the provisioned policy or policy 2, never anything else, and has
# never spent above the budget of the policy in force.

import sys
import json
import asyncio
import vfs
import os

import cbor
import eip712
import secp256k1
from keccak import keccak256
from mqtt import Inbox
from store import Store
from policy import Policy
from agent import Agent
import wallet as W
import errors
import owner_policy as OP

CHAIN = 31337
ESCROW = b"\x95\xc6\x2b\x7b\xca\x32\x87\x5b\xad\x11\x94\xeb\x8c\x6a\x15\x82\x77\x36\x6f\xd9"
PROVIDER_KEY = b"\x11" * 32
DEVICE_KEY = b"\x22" * 32
CHANNEL = 9
PRICE = 1500
BUDGET = 5 * PRICE
SEP = eip712.domain_separator(CHAIN, ESCROW)
PROVIDER = secp256k1.address(PROVIDER_KEY)


class PowerCut(BaseException):
    pass


_CUT = PowerCut()  # preallocated: finalisers of dead files run with the heap locked


class RamFlash:
    """A block device for littlefs whose power fails at flash operation number `cut`."""

    def __init__(self, blocks=64, size=512, copy=None):
        self.size = size
        self.blocks = blocks
        self.data = bytearray(copy.data) if copy else bytearray(blocks * size)
        self.ops = 0
        self.cut = 0  # 0: never
        self.dead = False

    def _op(self):
        """True when the operation may reach the flash; raises once, at the cut."""
        if self.dead:
            return False  # power is off: code still unwinding writes nothing
        self.ops += 1
        if self.cut and self.ops >= self.cut:
            self.dead = True
            raise _CUT
        return True

    def readblocks(self, block, buf, offset=0):
        a = block * self.size + offset
        buf[:] = self.data[a : a + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        if self._op():
            a = block * self.size + (offset or 0)
            self.data[a : a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.size
        if op == 6 and self._op():  # erase
            a = arg * self.size
            self.data[a : a + self.size] = b"\xff" * self.size
        return 0


class Provider:
    """The gateway's rules of docs/protocol.md 4.3-4.4 that matter here, in memory."""

    def __init__(self):
        self.highest = 0
        self.voucher = b""
        self.request_hash = b""
        self.response = b""
        self.charged = 0
        self.sent = []  # cumulative of every voucher received, in order
        self.replays = 0  # requests answered again from the stored response
        products = [["weather", PRICE, "nowcast"]]
        digest = eip712.catalog_digest(SEP, 1, 0, 2**40, keccak256(cbor.dumps(products)))
        sig = secp256k1.sign(PROVIDER_KEY, digest)
        self.catalog = cbor.dumps([1, PROVIDER, 1, 0, 2**40, products, sig])

    def error(self, rid, code, message, detail, rhash):
        # signed, as the device acts on no other error (docs/protocol.md 3.2)
        digest = eip712.error_digest(SEP, CHANNEL, rhash, code, keccak256(cbor.dumps(detail)))
        sig = secp256k1.sign(PROVIDER_KEY, digest)
        return cbor.dumps([1, rid, code, [message, detail, CHANNEL, rhash, sig]])

    def handle(self, raw):
        req = cbor.loads(raw, 512)
        rid, voucher = req[1], req[6]
        cum = int.from_bytes(voucher[4:12], "big")
        self.sent.append(cum)
        rhash = keccak256(raw)
        if cum == self.highest and rhash == self.request_hash:
            self.replays += 1
            return self.response
        if cum <= self.highest:
            return self.error(rid, 16, "stale", self.voucher, rhash)
        if cum - self.highest < PRICE:
            return self.error(rid, 14, "underpaid", None, rhash)
        data = b"weather %d" % cum
        dhash = keccak256(data)
        sig = secp256k1.sign(PROVIDER_KEY, eip712.receipt_digest(SEP, CHANNEL, cum, rhash, dhash))
        self.response = cbor.dumps([1, rid, 0, [data, [CHANNEL, cum, rhash, dhash, sig]]])
        self.charged += cum - self.highest
        self.highest = cum
        self.voucher = voucher
        self.request_hash = rhash
        return self.response


class Link:
    """Stands in for the MQTT client: requests go straight to the provider."""

    def __init__(self, provider):
        self.provider = provider
        self.inbox = Inbox(16)
        self.connects = 0
        self.retransmits = 0
        self.heap_errors = 0  # as the MQTT client counts them
        self.resp_topic = None

    async def subscribe(self, topic, qos=1, timeout_ms=None):
        if topic.endswith("/catalog"):
            self.inbox.put((topic, self.provider.catalog))
        else:
            self.resp_topic = topic

    async def start(self, timeout_ms=None):
        self.connects += 1

    def isconnected(self):
        return True

    async def publish(self, topic, payload, qos=1, retain=False, timeout_ms=None):
        if "/req/" in topic:
            self.inbox.put((self.resp_topic, self.provider.handle(payload)))
        return 1

    async def stop(self):
        pass


class Watch:
    """Wraps the wallet: every voucher signed is checked against those already sent."""

    def __init__(self, wallet, provider, faults):
        self.w = wallet
        self.provider = provider
        self.faults = faults
        self.address = wallet.address

    def sign_voucher(self, channel, cumulative):
        if self.provider.sent and cumulative < max(self.provider.sent):
            self.faults.append("signed %d below sent %d" % (cumulative, max(self.provider.sent)))
        return self.w.sign_voucher(channel, cumulative)

    def __getattr__(self, name):
        return getattr(self.w, name)


WALLET = W.Wallet(DEVICE_KEY, CHAIN, ESCROW)
POLICY = Policy({"deposit": 10 * BUDGET, "budget": BUDGET})


def mount(flash, fresh=False):
    try:
        vfs.umount("/flash")
    except OSError:
        pass
    if fresh:
        vfs.VfsLfs2.mkfs(flash)
    vfs.mount(vfs.VfsLfs2(flash), "/flash")


async def session(flash, provider, faults, purchases):
    """Boot: resume from the record, then buy up to `purchases` times."""
    store = Store("/flash", CHANNEL)
    store.load()
    if store.corrupt:
        faults.append("corrupt record after a cut: " + store.corrupt)
        return "corrupt"
    agent = Agent(Watch(WALLET, provider, faults), Link(provider), store, POLICY, PROVIDER,
                  CHANNEL, timeout_ms=2000, resend_ms=500)
    await agent.start()
    result = "ok"
    for _ in range(purchases):
        try:
            await agent.buy("weather", {"n": 1})
        except errors.BudgetExhausted:
            result = "budget"
            break
        st = store.state
        if st.spent > BUDGET:
            faults.append("spent %d above budget" % st.spent)
    await agent.stop()
    return result


def boot(flash, provider, faults, purchases):
    asyncio.new_event_loop()  # a reboot: no task of the dead run survives
    mount(flash)
    return asyncio.run(session(flash, provider, faults, purchases))


def snapshot(provider):
    p = Provider()
    for name in ("highest", "voucher", "request_hash", "response", "charged", "replays"):
        setattr(p, name, getattr(provider, name))
    p.sent = list(provider.sent)
    return p


def main():
    faults = []
    # flash operations of a whole run (five purchases, then the budget stops it),
    # counted once on a fresh file system
    probe = RamFlash()
    mount(probe, fresh=True)
    start = probe.ops
    boot(probe, Provider(), faults, 10)
    total = probe.ops - start
    cuts = 0
    resent = 0
    replays = 0
    results = {}
    for cut in range(1, total + 2):
        flash = RamFlash()
        mount(flash, fresh=True)
        prov = Provider()
        flash.cut = flash.ops + cut
        try:
            boot(flash, prov, faults, 10)
            outcome = "no cut"
        except BaseException as exc:
            # after the cut, code still unwinding may fail otherwise (a file close that
            # finds littlefs half-written raises OSError): all of it is the power cut
            if not flash.dead:
                raise
            outcome = "cut"
            cuts += 1
        # reboot on the bytes the cut left; the dead device object never writes again
        flash = RamFlash(copy=flash)
        mount(flash)
        left = Store("/flash", CHANNEL).load()
        if left is not None and left.pending:
            resent += 1
        end = boot(flash, prov, faults, 10)
        store = Store("/flash", CHANNEL)
        st = store.load()
        if st is None or st.pending:
            faults.append("cut %d: record %r pending %r" % (cut, store.corrupt, st and st.pending))
            continue
        if st.spent > BUDGET or prov.charged > BUDGET:
            faults.append("cut %d: spent %d charged %d" % (cut, st.spent, prov.charged))
        if not (st.acked == st.cumulative == prov.highest == prov.charged == BUDGET):
            faults.append(
                "cut %d: device cum %d acked %d, provider %d charged %d"
                % (cut, st.cumulative, st.acked, prov.highest, prov.charged)
            )
        if end != "budget":
            faults.append("cut %d: ended %s" % (cut, end))
        results[outcome] = results.get(outcome, 0) + 1
        replays += prov.replays
    print(
        json.dumps(
            {
                "flash_ops_per_run": total,
                "purchases_per_run": BUDGET // PRICE,
                "cut_points": cuts,
                "outcomes": results,
                "rebooted_with_pending_request": resent,
                "answered_again_from_the_ledger": replays,
                "faults": faults,
            }
        )
    )


OWNER_KEY = b"\x33" * 32
OWNER = secp256k1.address(OWNER_KEY)
BUDGET2 = 8 * PRICE
NOW = 1767225600  # a signed policy always has an expiry, so the device needs a clock


def signed_policy(seq, deposit, budget):
    ints = (CHANNEL, seq, deposit, budget, 2**40, 0, 0, 0, 0)
    sig = secp256k1.sign(OWNER_KEY, OP.digest(SEP, (ints, [], [], [], b"")))
    return cbor.dumps([1] + list(ints) + [[], [], [], sig])


POLICY2 = signed_policy(2, 10 * BUDGET, BUDGET2)


class PolicyLink(Link):
    """Link, and the broker's retained policy delivered on subscribing to its topic."""

    def __init__(self, provider, retained):
        super().__init__(provider)
        self.retained = retained

    async def subscribe(self, topic, qos=1, timeout_ms=None):
        if "/policy/" in topic:
            if self.retained:
                self.inbox.put((topic, self.retained))
            return
        await Link.subscribe(self, topic, qos, timeout_ms)


async def policy_session(provider, faults, retained, seen):
    """Boot with the owner's keeper; buy until the policy in force stops it."""
    store = Store("/flash", CHANNEL)
    store.load()
    if store.corrupt:
        faults.append("corrupt record after a cut: " + store.corrupt)
        return
    keeper = OP.OwnerPolicy("/flash", OWNER, CHANNEL, SEP)
    keeper.load(store.state.cumulative)
    seen[keeper.seq] = seen.get(keeper.seq, 0) + 1
    budget = BUDGET2 if keeper.seq == 2 else BUDGET
    if keeper.seq not in (0, 2) or (keeper.seq == 2 and keeper.policy.budget != BUDGET2):
        faults.append("booted with policy seq %d" % keeper.seq)
    if store.state.spent > budget:
        faults.append("spent %d above the budget %d in force" % (store.state.spent, budget))
    agent = Agent(Watch(WALLET, provider, faults), PolicyLink(provider, retained), store,
                  keeper.policy or POLICY, PROVIDER, CHANNEL, clock=lambda: NOW,
                  timeout_ms=2000, resend_ms=500, owner_policy=keeper)
    await agent.start()
    for _ in range(50):  # the retained policy is in the inbox behind the catalog
        if retained is None or keeper.seq == 2:
            break
        await asyncio.sleep_ms(1)
    for _ in range(10):
        try:
            await agent.buy("weather", {"n": 1})
        except errors.BudgetExhausted:
            break
        if store.state.spent > agent.policy.budget:
            faults.append("spent %d above budget %d" % (store.state.spent, agent.policy.budget))
    await agent.stop()


def policy_run(flash, provider, faults, seen):
    """Spend the provisioned budget, then receive policy 2 and spend that."""
    for retained in (None, POLICY2):
        asyncio.new_event_loop()
        mount(flash)
        asyncio.run(policy_session(provider, faults, retained, seen))


def policy_main():
    faults = []
    seen = {}
    probe = RamFlash()
    mount(probe, fresh=True)
    start = probe.ops
    policy_run(probe, Provider(), faults, seen)
    total = probe.ops - start
    cuts = 0
    uncut = []
    for cut in range(1, total + 2):
        flash = RamFlash()
        mount(flash, fresh=True)
        prov = Provider()
        flash.cut = flash.ops + cut
        try:
            policy_run(flash, prov, faults, seen)
        except BaseException:
            if not flash.dead:
                raise
        # a cut inside an unmount is not raised to us, but the flash is dead all the same
        if flash.dead:
            cuts += 1
        else:
            uncut.append(cut)
        # reboot on what the cut left, the policy retained: run to the end
        flash = RamFlash(copy=flash)
        mount(flash)
        asyncio.new_event_loop()
        asyncio.run(policy_session(prov, faults, POLICY2, seen))
        st = Store("/flash", CHANNEL).load()
        keeper = OP.OwnerPolicy("/flash", OWNER, CHANNEL, SEP)
        keeper.load(st.cumulative if st else 0)
        if st is None or keeper.seq != 2 or not (st.spent == st.cumulative == prov.charged == BUDGET2):
            faults.append("cut %d: seq %d, device %r, provider charged %d"
                          % (cut, keeper.seq, st and (st.spent, st.cumulative), prov.charged))
    print(json.dumps({"policy_flash_ops_per_run": total, "policy_cut_points": cuts,
                      "booted_with_seq": seen, "policy_uncut": uncut, "policy_faults": faults}))


main()
policy_main()
