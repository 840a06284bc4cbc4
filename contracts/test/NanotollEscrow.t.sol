// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Vm} from "forge-std/Vm.sol";
import {stdStorage, StdStorage} from "forge-std/StdStorage.sol";
import {EscrowBase} from "./Base.t.sol";
import {NanotollEscrow} from "../src/NanotollEscrow.sol";
import {TestStablecoin} from "./mocks/TestStablecoin.sol";
import {NoReturnToken} from "./mocks/NoReturnToken.sol";
import {FeeOnTransferToken} from "./mocks/FeeOnTransferToken.sol";
import {ReentrantToken} from "./mocks/ReentrantToken.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

contract OpenTest is EscrowBase {
    using stdStorage for StdStorage;

    function test_open_storesTheChannelAndEmits() public {
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.RouteCreated(1, payee, address(usd));
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.ChannelOpened(1, payer, device, 1, 5_000_000, START + 30 * DAY);
        uint32 id = _open(5_000_000);
        assertEq(id, 1);
        (
            address p,
            address s,
            address pe,
            address t,
            uint32 route,
            uint64 deposit,
            uint64 paid,
            uint40 expiry,
            bool closed
        ) = escrow.channel(id);
        assertEq(p, payer);
        assertEq(s, device);
        assertEq(pe, payee);
        assertEq(t, address(usd));
        assertEq(route, 1);
        assertEq(deposit, 5_000_000);
        assertEq(paid, 0);
        assertEq(expiry, START + 30 * DAY);
        assertFalse(closed);
        assertEq(usd.balanceOf(address(escrow)), 5_000_000);
        assertEq(escrow.lastChannelId(), 1);
    }

    function test_open_assignsSequentialIdsAndReusesRoutes() public {
        assertEq(_open(1), 1);
        assertEq(_open(2), 2);
        assertEq(_open(3), 3);
        assertEq(escrow.lastRouteId(), 1);
        (address pe, address t) = escrow.routeInfo(1);
        assertEq(pe, payee);
        assertEq(t, address(usd));
    }

    function test_open_rejectsBadArguments() public {
        vm.startPrank(payer);
        vm.expectRevert(NanotollEscrow.ZeroAddress.selector);
        escrow.open(address(0), payee, address(usd), 1, START + 1);
        vm.expectRevert(NanotollEscrow.ZeroAddress.selector);
        escrow.open(device, address(0), address(usd), 1, START + 1);
        vm.expectRevert(NanotollEscrow.ZeroAddress.selector);
        escrow.open(device, payee, address(0), 1, START + 1);
        vm.expectRevert(NanotollEscrow.ZeroAmount.selector);
        escrow.open(device, payee, address(usd), 0, START + 1);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.ExpiryNotInFuture.selector, START, START));
        escrow.open(device, payee, address(usd), 1, START);
        vm.stopPrank();
    }

    function test_open_failsWithoutAllowance() public {
        vm.prank(payer);
        usd.approve(address(escrow), 0);
        vm.prank(payer);
        vm.expectRevert();
        escrow.open(device, payee, address(usd), 1, START + 1);
    }

    function test_open_refusesAnEoaAsToken() public {
        vm.prank(payer);
        vm.expectRevert();
        escrow.open(device, payee, makeAddr("not a token"), 1, START + 1);
    }

    function test_open_channelIdsExhausted() public {
        stdstore.target(address(escrow)).sig("lastChannelId()").checked_write(uint256(type(uint32).max) - 1);
        assertEq(_open(1), type(uint32).max);
        vm.prank(payer);
        vm.expectRevert(NanotollEscrow.ChannelIdsExhausted.selector);
        escrow.open(device, payee, address(usd), 1, START + 1);
    }

    function test_openWithPermit() public {
        (address owner, uint256 ownerKey) = makeAddrAndKey("permit payer");
        usd.mint(owner, 1_000_000);
        (uint8 v, bytes32 r, bytes32 s) = _permit(owner, ownerKey, 1_000_000, START + 1 hours);
        vm.prank(owner);
        uint32 id = escrow.openWithPermit(device, payee, address(usd), 1_000_000, START + DAY, START + 1 hours, v, r, s);
        assertEq(_deposit(id), 1_000_000);
        assertEq(usd.balanceOf(owner), 0);
    }

    function test_openWithPermit_survivesAFrontRunPermit() public {
        (address owner, uint256 ownerKey) = makeAddrAndKey("permit payer");
        usd.mint(owner, 1_000_000);
        (uint8 v, bytes32 r, bytes32 s) = _permit(owner, ownerKey, 1_000_000, START + 1 hours);
        // Someone submits the permit first: the nonce is used, the allowance is in place.
        usd.permit(owner, address(escrow), 1_000_000, START + 1 hours, v, r, s);
        vm.prank(owner);
        uint32 id = escrow.openWithPermit(device, payee, address(usd), 1_000_000, START + DAY, START + 1 hours, v, r, s);
        assertEq(_deposit(id), 1_000_000);
    }

    function test_openWithPermit_badPermitReverts() public {
        (address owner, uint256 ownerKey) = makeAddrAndKey("permit payer");
        usd.mint(owner, 1_000_000);
        (uint8 v, bytes32 r, bytes32 s) = _permit(owner, ownerKey, 999_999, START + 1 hours);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.PermitFailed.selector, address(usd)));
        escrow.openWithPermit(device, payee, address(usd), 1_000_000, START + DAY, START + 1 hours, v, r, s);
    }

    function _permit(address owner, uint256 key, uint256 value, uint256 deadline)
        internal
        view
        returns (uint8, bytes32, bytes32)
    {
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                owner,
                address(escrow),
                value,
                usd.nonces(owner),
                deadline
            )
        );
        return vm.sign(key, keccak256(abi.encodePacked(hex"1901", usd.DOMAIN_SEPARATOR(), structHash)));
    }

    function test_openMany_consecutiveIdsOneTransfer() public {
        address payee2 = makeAddr("payee2");
        NanotollEscrow.OpenParams[] memory ps = new NanotollEscrow.OpenParams[](3);
        ps[0] = NanotollEscrow.OpenParams(device, payee, 100, START + DAY);
        ps[1] = NanotollEscrow.OpenParams(makeAddr("d2"), payee2, 200, START + 2 * DAY);
        ps[2] = NanotollEscrow.OpenParams(makeAddr("d3"), payee2, 300, START + 3 * DAY);
        _open(1); // id 1 taken first
        vm.expectCall(address(usd), abi.encodeCall(IERC20.transferFrom, (payer, address(escrow), 600)), 1);
        vm.prank(payer);
        uint32 first = escrow.openMany(address(usd), ps);
        assertEq(first, 2);
        assertEq(escrow.lastChannelId(), 4);
        assertEq(_deposit(3), 200);
        (,,,, uint32 route2,,,,) = escrow.channel(3);
        (,,,, uint32 route3,,, uint40 expiry3,) = escrow.channel(4);
        assertEq(route2, route3);
        assertEq(route2, escrow.routeOf(payee2, address(usd)));
        assertEq(expiry3, START + 3 * DAY);
        assertEq(usd.balanceOf(address(escrow)), 601);
    }

    function test_openMany_rejectsEmptyAndBadItems() public {
        NanotollEscrow.OpenParams[] memory none;
        vm.prank(payer);
        vm.expectRevert(NanotollEscrow.ZeroAmount.selector);
        escrow.openMany(address(usd), none);
        NanotollEscrow.OpenParams[] memory ps = new NanotollEscrow.OpenParams[](2);
        ps[0] = NanotollEscrow.OpenParams(device, payee, 100, START + DAY);
        ps[1] = NanotollEscrow.OpenParams(address(0), payee, 100, START + DAY);
        vm.prank(payer);
        vm.expectRevert(NanotollEscrow.ZeroAddress.selector);
        escrow.openMany(address(usd), ps);
    }
}

contract FundingTest is EscrowBase {
    function test_topUp() public {
        uint32 id = _open(100);
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.ChannelToppedUp(id, 50, 150);
        vm.prank(payer);
        escrow.topUp(id, 50);
        assertEq(_deposit(id), 150);
        assertEq(usd.balanceOf(address(escrow)), 150);
    }

    function test_topUp_onlyPayerOpenChannelNoOverflow() public {
        uint32 id = _open(100);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.NotPayer.selector, id, payee));
        vm.prank(payee);
        escrow.topUp(id, 1);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.UnknownChannel.selector, 99));
        vm.prank(payer);
        escrow.topUp(99, 1);
        vm.expectRevert(NanotollEscrow.ZeroAmount.selector);
        vm.prank(payer);
        escrow.topUp(id, 0);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.DepositOverflow.selector, uint256(type(uint64).max) + 100));
        vm.prank(payer);
        escrow.topUp(id, type(uint64).max);
    }

    function test_topUp_leavesTheNeighbourAlone() public {
        uint32 a = _open(100); // id 1: high half of ledger word 0
        uint32 b = _open(200); // id 2: low half of ledger word 1
        uint32 c = _open(300); // id 3: high half of ledger word 1
        vm.prank(payer);
        escrow.topUp(b, 7);
        assertEq(_deposit(a), 100);
        assertEq(_deposit(b), 207);
        assertEq(_deposit(c), 300);
        escrow.redeem(_route(), _voucher(deviceKey, c, 250));
        assertEq(_paid(b), 0);
        assertEq(_paid(c), 250);
        assertEq(_deposit(b), 207);
        assertEq(_deposit(c), 300);
    }

    function test_extendExpiry() public {
        uint32 id = _open(100);
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.ExpiryExtended(id, START + 60 * DAY);
        vm.prank(payer);
        escrow.extendExpiry(id, START + 60 * DAY);
        (,,,,,,, uint40 expiry,) = escrow.channel(id);
        assertEq(expiry, START + 60 * DAY);
        vm.expectRevert(
            abi.encodeWithSelector(NanotollEscrow.ExpiryNotExtended.selector, START + 60 * DAY, START + 60 * DAY)
        );
        vm.prank(payer);
        escrow.extendExpiry(id, START + 60 * DAY);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.NotPayer.selector, id, payee));
        vm.prank(payee);
        escrow.extendExpiry(id, START + 90 * DAY);
    }

    function test_extendExpiry_revivesALapsedChannel() public {
        uint32 id = _open(100);
        vm.warp(START + 31 * DAY);
        bytes memory v = _voucher(deviceKey, id, 10);
        assertEq(escrow.redeem(_route(), v), 0);
        vm.prank(payer);
        escrow.extendExpiry(id, START + 40 * DAY);
        assertEq(escrow.redeem(_route(), v), 10);
    }
}

contract RedeemTest is EscrowBase {
    event Transfer(address indexed from, address indexed to, uint256 value);

    function test_redeem_paysTheDifferenceAndEmits() public {
        uint32 id = _open(1_000_000);
        uint32 route = _route();
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.Redeemed(route, payee, 400, abi.encodePacked(id, uint64(400), uint64(400)));
        assertEq(escrow.redeem(route, _voucher(deviceKey, id, 400)), 400);
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.Redeemed(route, payee, 600, abi.encodePacked(id, uint64(1000), uint64(600)));
        assertEq(escrow.redeem(route, _voucher(deviceKey, id, 1000)), 600);
        assertEq(usd.balanceOf(payee), 1000);
        assertEq(_paid(id), 1000);
        assertEq(usd.balanceOf(address(escrow)), 999_000);
    }

    function test_redeem_oneTransferPerBatch() public {
        uint32 a = _open(1000);
        uint32 b = _open(1000);
        uint32 c = _open(1000);
        bytes memory batch = bytes.concat(
            _voucher(deviceKey, a, 10), _voucher(deviceKey, b, 20), _voucher(deviceKey, c, 30), _voucher(deviceKey, a, 15)
        );
        vm.expectCall(address(usd), abi.encodeCall(IERC20.transfer, (payee, 65)), 1);
        vm.recordLogs();
        assertEq(escrow.redeem(_route(), batch), 65); // 10 + 20 + 30 + (15 - 10)
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 transfers;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == Transfer.selector) ++transfers;
        }
        assertEq(transfers, 1);
        assertEq(_paid(a), 15);
    }

    function test_redeem_anyoneMaySubmitThePayeeIsPaid() public {
        uint32 id = _open(1000);
        address relayer = makeAddr("relayer");
        vm.prank(relayer);
        escrow.redeem(_route(), _voucher(deviceKey, id, 99));
        assertEq(usd.balanceOf(payee), 99);
        assertEq(usd.balanceOf(relayer), 0);
    }

    function _expectSkip(uint32 id, uint256 index, uint64 cumulative, NanotollEscrow.SkipReason reason) internal {
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.VoucherSkipped(id, index, cumulative, reason);
    }

    function test_redeem_skipsStaleWithoutReverting() public {
        uint32 id = _open(1000);
        escrow.redeem(_route(), _voucher(deviceKey, id, 500));
        _expectSkip(id, 0, 300, NanotollEscrow.SkipReason.Stale);
        _expectSkip(id, 1, 500, NanotollEscrow.SkipReason.Stale);
        bytes memory batch =
            bytes.concat(_voucher(deviceKey, id, 300), _voucher(deviceKey, id, 500), _voucher(deviceKey, id, 501));
        assertEq(escrow.redeem(_route(), batch), 1);
    }

    function test_redeem_skipsOverDeposit() public {
        uint32 id = _open(1000);
        _expectSkip(id, 0, 1001, NanotollEscrow.SkipReason.OverDeposit);
        assertEq(escrow.redeem(_route(), _voucher(deviceKey, id, 1001)), 0);
        assertEq(escrow.redeem(_route(), _voucher(deviceKey, id, 1000)), 1000);
    }

    function test_redeem_skipsExpiredAtExactlyExpiry() public {
        uint32 id = _open(1000);
        vm.warp(START + 30 * DAY - 1);
        assertEq(escrow.redeem(_route(), _voucher(deviceKey, id, 1)), 1);
        vm.warp(START + 30 * DAY);
        _expectSkip(id, 0, 2, NanotollEscrow.SkipReason.Expired);
        assertEq(escrow.redeem(_route(), _voucher(deviceKey, id, 2)), 0);
    }

    function test_redeem_skipsUnknownChannelAndWrongRoute() public {
        uint32 id = _open(1000);
        address other = makeAddr("other payee");
        vm.prank(payer);
        uint32 foreign = escrow.open(device, other, address(usd), 1000, START + DAY);
        _expectSkip(777, 0, 1, NanotollEscrow.SkipReason.UnknownChannel);
        _expectSkip(foreign, 1, 1, NanotollEscrow.SkipReason.WrongRoute);
        bytes memory batch =
            bytes.concat(_voucher(deviceKey, 777, 1), _voucher(deviceKey, foreign, 1), _voucher(deviceKey, id, 1));
        assertEq(escrow.redeem(_route(), batch), 1);
        assertEq(_paid(foreign), 0);
    }

    function test_redeem_skipsForeignSigner() public {
        uint32 id = _open(1000);
        _expectSkip(id, 0, 10, NanotollEscrow.SkipReason.BadSignature);
        assertEq(escrow.redeem(_route(), _voucher(0xBAD, id, 10)), 0);
    }

    function test_redeem_rejectsHighS() public {
        uint32 id = _open(1000);
        (bytes32 r, bytes32 vs) = _sign(deviceKey, id, 10);
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        uint256 s = uint256(vs) & ((1 << 255) - 1);
        uint256 parity = uint256(vs) >> 255;
        // The same signature in its high-s form: s' = n - s with the parity flipped. ecrecover
        // would accept it; OpenZeppelin's ECDSA and the contract must not.
        uint256 highS = n - s;
        assertGt(highS, n / 2);
        bytes32 vsHigh = bytes32(((1 - parity) << 255) | highS);
        // s' >= 2^255 cannot be represented in vs at all; when it fits, it must be refused.
        if (highS < (1 << 255)) {
            _expectSkip(id, 0, 10, NanotollEscrow.SkipReason.BadSignature);
            assertEq(escrow.redeem(_route(), abi.encodePacked(id, uint64(10), r, vsHigh)), 0);
        }
        assertEq(escrow.redeem(_route(), abi.encodePacked(id, uint64(10), r, vs)), 10);
    }

    function test_redeem_rejectsGarbageSignatures() public {
        uint32 id = _open(1000);
        bytes memory batch = bytes.concat(
            abi.encodePacked(id, uint64(1), bytes32(0), bytes32(0)),
            abi.encodePacked(id, uint64(1), bytes32(uint256(1)), bytes32(uint256(1))),
            abi.encodePacked(id, uint64(1), bytes32(type(uint256).max), bytes32(uint256(5)))
        );
        assertEq(escrow.redeem(_route(), batch), 0);
    }

    function test_replay_otherChainId() public {
        uint32 id = _open(1000);
        bytes memory v = _voucher(deviceKey, id, 10);
        bytes32 before = escrow.domainSeparator();
        vm.chainId(8453);
        assertTrue(escrow.domainSeparator() != before, "separator rebuilt for the new chain id");
        assertEq(
            escrow.domainSeparator(),
            keccak256(
                abi.encode(
                    keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                    keccak256("nanotoll"),
                    keccak256("1"),
                    uint256(8453),
                    address(escrow)
                )
            )
        );
        _expectSkip(id, 0, 10, NanotollEscrow.SkipReason.BadSignature);
        assertEq(escrow.redeem(_route(), v), 0);
    }

    function test_replay_otherContract() public {
        uint32 id = _open(1000);
        bytes memory v = _voucher(deviceKey, id, 10); // signed for `escrow`
        NanotollEscrow twin = new NanotollEscrow();
        vm.prank(payer);
        usd.approve(address(twin), type(uint256).max);
        vm.prank(payer);
        uint32 twinId = twin.open(device, payee, address(usd), 1000, START + DAY);
        assertEq(twinId, id);
        assertEq(twin.redeem(twin.routeOf(payee, address(usd)), v), 0);
        assertEq(escrow.redeem(_route(), v), 10);
    }

    function test_replay_otherChannel() public {
        uint32 a = _open(1000);
        uint32 b = _open(1000); // same device key, same payee
        (bytes32 r, bytes32 vs) = _sign(deviceKey, a, 10);
        _expectSkip(b, 0, 10, NanotollEscrow.SkipReason.BadSignature);
        assertEq(escrow.redeem(_route(), abi.encodePacked(b, uint64(10), r, vs)), 0);
        assertEq(escrow.redeem(_route(), abi.encodePacked(a, uint64(10), r, vs)), 10);
        // And the amount is bound too.
        assertEq(escrow.redeem(_route(), abi.encodePacked(a, uint64(11), r, vs)), 0);
    }

    function test_replay_lowerAfterHigher() public {
        uint32 id = _open(1000);
        bytes memory low = _voucher(deviceKey, id, 100);
        bytes memory high = _voucher(deviceKey, id, 200);
        assertEq(escrow.redeem(_route(), high), 200);
        assertEq(escrow.redeem(_route(), low), 0);
        assertEq(escrow.redeem(_route(), high), 0);
        assertEq(_paid(id), 200);
    }

    function test_redeem_malformedBatchesRevert() public {
        uint32 id = _open(1000);
        bytes memory v = _voucher(deviceKey, id, 1);
        uint32 route = _route();
        vm.expectRevert(NanotollEscrow.EmptyBatch.selector);
        escrow.redeem(route, "");
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.MalformedBatch.selector, 77));
        escrow.redeem(route, bytes.concat(v, hex"00"));
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.UnknownRoute.selector, 9));
        escrow.redeem(9, v);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.BatchTooLarge.selector, 1001, 1000));
        escrow.redeem(route, new bytes(76 * 1001));
    }

    function test_redeem_afterReclaimPaysNothing() public {
        uint32 id = _open(1000);
        vm.warp(START + 30 * DAY);
        vm.prank(payer);
        escrow.reclaim(id);
        _expectSkip(id, 0, 5, NanotollEscrow.SkipReason.Expired);
        assertEq(escrow.redeem(_route(), _voucher(deviceKey, id, 5)), 0);
    }

    function test_views() public view {
        assertEq(escrow.maxRedeemBatch(), escrow.MAX_REDEEM_BATCH());
        assertEq(escrow.VOUCHER_BYTES(), 76);
        assertEq(
            escrow.VOUCHER_TYPEHASH(), keccak256("Voucher(uint32 channelId,uint64 cumulativeAmount)")
        );
        bytes32 req = keccak256("request");
        bytes32 data = keccak256("data");
        assertEq(
            escrow.receiptDigest(3, 42, req, data),
            keccak256(
                abi.encodePacked(
                    hex"1901",
                    escrow.domainSeparator(),
                    keccak256(
                        abi.encode(
                            keccak256(
                                "Receipt(uint32 channelId,uint64 cumulativeAmount,bytes32 requestHash,bytes32 dataHash)"
                            ),
                            uint256(3),
                            uint256(42),
                            req,
                            data
                        )
                    )
                )
            )
        );
        (,,,,, uint64 deposit,,,) = escrow.channel(12345);
        assertEq(deposit, 0);
    }
}

contract ReclaimTest is EscrowBase {
    function test_reclaim_refundsTheRestAndCloses() public {
        uint32 id = _open(1000);
        escrow.redeem(_route(), _voucher(deviceKey, id, 300));
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.NotExpired.selector, id, START + 30 * DAY));
        vm.prank(payer);
        escrow.reclaim(id);
        vm.warp(START + 30 * DAY);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.NotPayer.selector, id, payee));
        vm.prank(payee);
        escrow.reclaim(id);
        uint256 before = usd.balanceOf(payer);
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.ChannelReclaimed(id, payer, 700);
        vm.prank(payer);
        assertEq(escrow.reclaim(id), 700);
        assertEq(usd.balanceOf(payer) - before, 700);
        (,,,,, uint64 deposit, uint64 paid,, bool closed) = escrow.channel(id);
        assertTrue(closed);
        assertEq(paid + 700, deposit);
        assertEq(usd.balanceOf(address(escrow)), 0);

        vm.startPrank(payer);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.ChannelClosed.selector, id));
        escrow.reclaim(id);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.ChannelClosed.selector, id));
        escrow.topUp(id, 1);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.ChannelClosed.selector, id));
        escrow.extendExpiry(id, START + 90 * DAY);
        vm.stopPrank();
    }

    function test_reclaim_fullyPaidChannelRefundsZero() public {
        uint32 id = _open(1000);
        escrow.redeem(_route(), _voucher(deviceKey, id, 1000));
        vm.warp(START + 30 * DAY);
        vm.prank(payer);
        assertEq(escrow.reclaim(id), 0);
    }

    function test_reclaim_unknownChannel() public {
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.UnknownChannel.selector, 5));
        escrow.reclaim(5);
    }
}

contract AwkwardTokenTest is EscrowBase {
    function test_noReturnValueToken_worksEndToEnd() public {
        NoReturnToken t = new NoReturnToken();
        t.mint(payer, 1000);
        vm.startPrank(payer);
        t.approve(address(escrow), 1000);
        uint32 id = escrow.open(device, payee, address(t), 1000, START + DAY);
        vm.stopPrank();
        uint32 route = escrow.routeOf(payee, address(t));
        assertEq(escrow.redeem(route, _voucher(deviceKey, id, 400)), 400);
        assertEq(t.balanceOf(payee), 400);
        vm.warp(START + DAY);
        vm.prank(payer);
        assertEq(escrow.reclaim(id), 600);
        assertEq(t.balanceOf(payer), 600);
        assertEq(t.balanceOf(address(escrow)), 0);
    }

    function test_feeOnTransferToken_refusedAtOpenAndTopUp() public {
        FeeOnTransferToken t = new FeeOnTransferToken();
        t.mint(payer, 10_000);
        vm.startPrank(payer);
        t.approve(address(escrow), type(uint256).max);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.UnsupportedToken.selector, address(t), 1000, 990));
        escrow.open(device, payee, address(t), 1000, START + DAY);
        NanotollEscrow.OpenParams[] memory ps = new NanotollEscrow.OpenParams[](1);
        ps[0] = NanotollEscrow.OpenParams(device, payee, 1000, START + DAY);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.UnsupportedToken.selector, address(t), 1000, 990));
        escrow.openMany(address(t), ps);
        vm.stopPrank();
        assertEq(t.balanceOf(address(escrow)), 0);
    }
}

contract ReentrancyTest is EscrowBase {
    function test_tokenCannotReenterDuringRedeem() public {
        ReentrantToken t = new ReentrantToken();
        t.mint(payer, 2000);
        vm.startPrank(payer);
        t.approve(address(escrow), 2000);
        uint32 a = escrow.open(device, payee, address(t), 1000, START + DAY);
        uint32 b = escrow.open(device, payee, address(t), 1000, START + DAY);
        vm.stopPrank();
        uint32 route = escrow.routeOf(payee, address(t));
        // During the payout transfer the token tries to redeem again (another voucher).
        t.arm(address(escrow), abi.encodeCall(NanotollEscrow.redeem, (route, _voucher(deviceKey, b, 500))));
        bytes memory va = _voucher(deviceKey, a, 400);
        vm.expectRevert(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        escrow.redeem(route, va);
        assertEq(_paid(a), 0);
        // Disarmed, the same vouchers pay normally.
        t.arm(address(0), "");
        assertEq(escrow.redeem(route, bytes.concat(_voucher(deviceKey, a, 400), _voucher(deviceKey, b, 500))), 900);
    }

    function test_tokenCannotReenterDuringReclaim() public {
        ReentrantToken t = new ReentrantToken();
        t.mint(payer, 1000);
        vm.startPrank(payer);
        t.approve(address(escrow), 1000);
        uint32 id = escrow.open(device, payee, address(t), 1000, START + DAY);
        vm.stopPrank();
        vm.warp(START + DAY);
        t.arm(address(escrow), abi.encodeCall(NanotollEscrow.reclaim, (id)));
        vm.prank(payer);
        vm.expectRevert(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        escrow.reclaim(id);
    }
}

contract FuzzTest is EscrowBase {
    function testFuzz_redeemSequence(uint64 deposit, uint64 a, uint64 b) public {
        deposit = uint64(bound(deposit, 1, type(uint64).max));
        uint32 id = _open(deposit);
        uint64 paid;
        uint64[2] memory xs = [a, b];
        for (uint256 i; i < 2; ++i) {
            uint64 c = xs[i];
            uint256 got = escrow.redeem(_route(), _voucher(deviceKey, id, c));
            uint256 want = (c > paid && c <= deposit) ? c - paid : 0;
            assertEq(got, want);
            if (want != 0) paid = c;
            assertEq(_paid(id), paid);
            assertLe(_paid(id), _deposit(id));
        }
        assertEq(usd.balanceOf(payee), paid);
        assertEq(usd.balanceOf(address(escrow)), deposit - paid);
    }

    function testFuzz_digestMatchesReference(uint32 id, uint64 cumulative, uint64 chainId) public {
        chainId = uint64(bound(chainId, 1, type(uint64).max));
        vm.chainId(chainId);
        bytes32 sep = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("nanotoll"),
                keccak256("1"),
                uint256(chainId),
                address(escrow)
            )
        );
        assertEq(escrow.domainSeparator(), sep);
        bytes32 structHash =
            keccak256(abi.encode(keccak256("Voucher(uint32 channelId,uint64 cumulativeAmount)"), id, cumulative));
        assertEq(escrow.voucherDigest(id, cumulative), keccak256(abi.encodePacked(hex"1901", sep, structHash)));
    }

    function testFuzz_neighboursIndependent(uint64 d1, uint64 d2, uint64 c1, uint64 c2, uint64 top) public {
        d1 = uint64(bound(d1, 1, type(uint64).max / 2));
        d2 = uint64(bound(d2, 1, type(uint64).max / 2));
        top = uint64(bound(top, 1, type(uint64).max / 2));
        _open(1); // id 1, so the next two share ledger word 1
        uint32 x = _open(d1);
        uint32 y = _open(d2);
        assertEq(x >> 1, y >> 1);
        escrow.redeem(_route(), bytes.concat(_voucher(deviceKey, x, c1), _voucher(deviceKey, y, c2)));
        uint64 px = (c1 > 0 && c1 <= d1) ? c1 : 0;
        uint64 py = (c2 > 0 && c2 <= d2) ? c2 : 0;
        assertEq(_paid(x), px);
        assertEq(_paid(y), py);
        vm.prank(payer);
        escrow.topUp(x, top);
        assertEq(_deposit(x), d1 + top);
        assertEq(_deposit(y), d2);
        assertEq(_paid(x), px);
        assertEq(_paid(y), py);
    }

    function testFuzz_randomBytesNeverPay(bytes32 r, bytes32 vs, uint64 c) public {
        uint32 id = _open(type(uint64).max);
        (bytes32 goodR, bytes32 goodVs) = _sign(deviceKey, id, c);
        vm.assume(r != goodR || vs != goodVs);
        assertEq(escrow.redeem(_route(), abi.encodePacked(id, c, r, vs)), 0);
    }
}
