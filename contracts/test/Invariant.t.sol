// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {NanotollEscrow} from "../src/NanotollEscrow.sol";
import {TestStablecoin} from "./mocks/TestStablecoin.sol";

/// @dev Drives the escrow with random opens, top-ups, extensions (one channel or up to three of
/// one payer at once), redeem batches (valid,
/// stale, forged, over-deposit, wrong route), reclaims and time jumps, and keeps ghost books.
contract EscrowHandler is Test {
    NanotollEscrow public immutable escrow;
    TestStablecoin public immutable usd;

    uint256 public constant MAX_CHANNELS = 12;
    address[3] internal payers = [address(0xA11CE), address(0xB0B), address(0xCA201)];
    address[2] internal payees = [address(0xD00D), address(0xFEED)];
    uint256[4] internal keys = [uint256(0x1001), 0x1002, 0x1003, 0x1004];

    uint32[] public ids;
    mapping(uint32 => uint256) public keyOf;
    mapping(uint32 => uint256) public funded; // open deposit + top-ups
    mapping(uint32 => uint256) public refunded;
    mapping(uint32 => uint64) public paidSeen; // highest paid observed so far

    uint256 public totalFunded;
    uint256 public totalPaidOut;
    uint256 public totalRefunded;
    bool public paidDecreased;
    uint256 public calls;

    constructor(NanotollEscrow escrow_, TestStablecoin usd_) {
        escrow = escrow_;
        usd = usd_;
        for (uint256 i; i < payers.length; ++i) {
            usd.mint(payers[i], type(uint128).max);
            vm.prank(payers[i]);
            usd.approve(address(escrow), type(uint256).max);
        }
    }

    function channelCount() external view returns (uint256) {
        return ids.length;
    }

    function _after() internal {
        ++calls;
        for (uint256 i; i < ids.length; ++i) {
            (,,,,,, uint64 paid,,) = escrow.channel(ids[i]);
            if (paid < paidSeen[ids[i]]) paidDecreased = true;
            paidSeen[ids[i]] = paid;
        }
    }

    function _pick(uint256 seed) internal view returns (uint32) {
        return ids[seed % ids.length];
    }

    function open(uint256 who, uint256 to, uint256 key, uint64 deposit, uint32 ttl) external {
        if (ids.length >= MAX_CHANNELS) return;
        address payer = payers[who % payers.length];
        deposit = uint64(bound(deposit, 1, type(uint64).max / 4));
        uint40 expiry = uint40(block.timestamp + bound(ttl, 1, 60 days));
        vm.prank(payer);
        uint32 id = escrow.open(vm.addr(keys[key % keys.length]), payees[to % payees.length], address(usd), deposit, expiry);
        ids.push(id);
        keyOf[id] = keys[key % keys.length];
        funded[id] = deposit;
        totalFunded += deposit;
        _after();
    }

    function openMany(uint256 who, uint256 to, uint8 count, uint64 deposit, uint32 ttl) external {
        uint256 n = bound(count, 1, 4);
        if (ids.length + n > MAX_CHANNELS) return;
        address payer = payers[who % payers.length];
        to %= 4;
        NanotollEscrow.OpenParams[] memory ps = new NanotollEscrow.OpenParams[](n);
        deposit = uint64(bound(deposit, 1, type(uint64).max / 16));
        for (uint256 i; i < n; ++i) {
            ps[i] = NanotollEscrow.OpenParams(
                vm.addr(keys[(to + i) % keys.length]),
                payees[(to + i) % payees.length],
                deposit,
                uint40(block.timestamp + bound(ttl, 1, 60 days))
            );
        }
        vm.prank(payer);
        uint32 first = escrow.openMany(address(usd), ps);
        for (uint256 i; i < n; ++i) {
            uint32 id = first + uint32(i);
            ids.push(id);
            keyOf[id] = keys[(to + i) % keys.length];
            funded[id] = deposit;
            totalFunded += deposit;
        }
        _after();
    }

    function topUp(uint256 seed, uint64 amount) external {
        if (ids.length == 0) return;
        uint32 id = _pick(seed);
        (address payer,,,,, uint64 deposit,,, bool closed) = escrow.channel(id);
        if (closed) return;
        uint256 room = type(uint64).max - deposit;
        if (room == 0) return;
        amount = uint64(bound(amount, 1, room));
        vm.prank(payer);
        escrow.topUp(id, amount);
        funded[id] += amount;
        totalFunded += amount;
        _after();
    }

    function extend(uint256 seed, uint32 more) external {
        if (ids.length == 0) return;
        uint32 id = _pick(seed);
        (address payer,,,,,,, uint40 expiry, bool closed) = escrow.channel(id);
        if (closed) return;
        vm.prank(payer);
        escrow.extendExpiry(id, expiry + uint40(bound(more, 1, 30 days)));
        _after();
    }

    /// @dev Up to three open channels of the payer of channel `seed`, from `seed` on.
    function _samePayer(uint256 seed) internal view returns (uint32[] memory picked, address payer) {
        payer = address(0);
        uint32[] memory found = new uint32[](3);
        uint256 n;
        for (uint256 i; i < ids.length && n < 3; ++i) {
            uint32 id = ids[(seed % ids.length + i) % ids.length];
            (address p,,,,,,,, bool closed) = escrow.channel(id);
            if (closed || (payer != address(0) && p != payer)) continue;
            payer = p;
            found[n++] = id;
        }
        picked = new uint32[](n);
        for (uint256 i; i < n; ++i) picked[i] = found[i];
    }

    function topUpMany(uint256 seed, uint64 amount) external {
        if (ids.length == 0) return;
        (uint32[] memory picked, address payer) = _samePayer(seed);
        if (picked.length == 0) return;
        uint256 room = type(uint64).max;
        for (uint256 i; i < picked.length; ++i) {
            (,,,,, uint64 deposit,,,) = escrow.channel(picked[i]);
            if (type(uint64).max - deposit < room) room = type(uint64).max - deposit;
        }
        if (room == 0) return;
        amount = uint64(bound(amount, 1, room));
        uint64[] memory amounts = new uint64[](picked.length);
        for (uint256 i; i < picked.length; ++i) amounts[i] = amount;
        vm.prank(payer);
        escrow.topUpMany(picked, amounts);
        for (uint256 i; i < picked.length; ++i) funded[picked[i]] += amount;
        totalFunded += uint256(amount) * picked.length;
        _after();
    }

    function extendMany(uint256 seed, uint32 more) external {
        if (ids.length == 0) return;
        (uint32[] memory picked, address payer) = _samePayer(seed);
        if (picked.length == 0) return;
        uint40 latest;
        for (uint256 i; i < picked.length; ++i) {
            (,,,,,,, uint40 expiry,) = escrow.channel(picked[i]);
            if (expiry > latest) latest = expiry;
        }
        vm.prank(payer);
        escrow.extendMany(picked, latest + uint40(bound(more, 1, 30 days)));
        _after();
    }

    /// @param kinds one byte per item (4 items): 0-4 a fresh valid voucher, 5 stale, 6 forged signer,
    /// 7 over the deposit, 8 another channel's signature, 9 unknown channel.
    function redeem(uint256 to, uint256 seed, bytes4 kinds, uint64 step) external {
        if (ids.length == 0) return;
        address payee = payees[to % payees.length];
        uint32 route = escrow.routeOf(payee, address(usd));
        if (route == 0) return;
        bytes memory batch;
        for (uint256 i; i < 4; ++i) {
            uint32 id = _pick(seed >> (i * 8));
            uint8 kind = uint8(kinds[i]) % 10;
            (,,,,, uint64 deposit, uint64 paid,,) = escrow.channel(id);
            uint64 c;
            uint256 key = keyOf[id];
            if (kind <= 4) {
                uint256 room = deposit - paid;
                c = room == 0 ? paid : paid + uint64(bound(step, 1, room));
            } else if (kind == 5) {
                c = paid;
            } else if (kind == 6) {
                c = paid + 1;
                key = 0xBAD;
            } else if (kind == 7) {
                if (deposit == type(uint64).max) continue;
                c = deposit + 1;
            } else if (kind == 8) {
                c = paid + 1;
                (bytes32 r8, bytes32 vs8) = vm.signCompact(key, escrow.voucherDigest(id ^ 1, c));
                batch = bytes.concat(batch, abi.encodePacked(id, c, r8, vs8));
                continue;
            } else {
                id = 0xFFFFFF;
                c = 1;
            }
            (bytes32 r, bytes32 vs) = vm.signCompact(key, escrow.voucherDigest(id, c));
            batch = bytes.concat(batch, abi.encodePacked(id, c, r, vs));
        }
        if (batch.length == 0) return;
        uint256 before = usd.balanceOf(payee);
        uint256 paidOut = escrow.redeem(route, batch);
        assertEq(usd.balanceOf(payee) - before, paidOut);
        totalPaidOut += paidOut;
        _after();
    }

    function reclaim(uint256 seed) external {
        if (ids.length == 0) return;
        uint32 id = _pick(seed);
        (address payer,,,,,,, uint40 expiry, bool closed) = escrow.channel(id);
        if (closed) return;
        if (block.timestamp < expiry) vm.warp(expiry);
        uint256 before = usd.balanceOf(payer);
        vm.prank(payer);
        uint64 refund = escrow.reclaim(id);
        assertEq(usd.balanceOf(payer) - before, refund);
        refunded[id] = refund;
        totalRefunded += refund;
        _after();
    }

    function warp(uint32 seconds_) external {
        vm.warp(block.timestamp + bound(seconds_, 1, 20 days));
        _after();
    }
}

/// @notice Escrow invariants over random call sequences (`[invariant]` runs/depth in foundry.toml).
contract InvariantTest is Test {
    NanotollEscrow internal escrow;
    TestStablecoin internal usd;
    EscrowHandler internal handler;

    function setUp() public {
        vm.warp(1_767_225_600);
        escrow = new NanotollEscrow();
        usd = new TestStablecoin();
        handler = new EscrowHandler(escrow, usd);
        targetContract(address(handler));
    }

    /// One campaign checks all four properties (each invariant function would otherwise run
    /// its own campaign of `runs` sequences):
    /// - tokens held = deposits − paid out − refunded (= the sum of what open channels hold);
    /// - per channel paid ≤ deposit, and deposit = what was funded;
    /// - paid never decreases (the handler compares every channel after every call);
    /// - after reclaim, payee paid + payer refund = deposit.
    function invariant_escrowBooks() public view {
        uint256 held = usd.balanceOf(address(escrow));
        assertEq(held, handler.totalFunded() - handler.totalPaidOut() - handler.totalRefunded(), "held");
        assertFalse(handler.paidDecreased(), "paid decreased");
        uint256 owed;
        for (uint256 i; i < handler.channelCount(); ++i) {
            uint32 id = handler.ids(i);
            (,,,,, uint64 deposit, uint64 paid,, bool closed) = escrow.channel(id);
            assertLe(paid, deposit, "paid above deposit");
            assertEq(deposit, handler.funded(id), "deposit differs from funding");
            if (closed) assertEq(uint256(paid) + handler.refunded(id), deposit, "paid + refund != deposit");
            else owed += deposit - paid;
        }
        assertEq(held, owed, "held != sum over open channels");
    }
}
