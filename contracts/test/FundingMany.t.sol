// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EscrowBase} from "./Base.t.sol";
import {NanotollEscrow} from "../src/NanotollEscrow.sol";
import {TestStablecoin} from "./mocks/TestStablecoin.sol";

/// @dev `topUpMany` and `extendMany`: a fleet's owner funding or extending many channels at once,
/// all or nothing.
contract FundingManyTest is EscrowBase {
    uint256 internal constant EIP7825_TX_GAS_CAP = 16_777_216;

    function _openFleet(uint256 n, uint64 deposit) internal returns (uint32[] memory ids) {
        NanotollEscrow.OpenParams[] memory ps = new NanotollEscrow.OpenParams[](n);
        for (uint256 i; i < n; ++i) {
            ps[i] = NanotollEscrow.OpenParams(device, payee, deposit, START + 30 * DAY);
        }
        vm.prank(payer);
        uint32 first = escrow.openMany(address(usd), ps);
        ids = new uint32[](n);
        for (uint256 i; i < n; ++i) {
            ids[i] = first + uint32(i);
        }
    }

    function _same(uint256 n, uint64 amount) internal pure returns (uint64[] memory amounts) {
        amounts = new uint64[](n);
        for (uint256 i; i < n; ++i) {
            amounts[i] = amount;
        }
    }

    function _expiry(uint32 id) internal view returns (uint40 expiry) {
        (,,,,,,, expiry,) = escrow.channel(id);
    }

    function test_topUpMany_fundsEachChannelWithOneTransfer() public {
        uint32[] memory ids = _openFleet(3, 100);
        uint64[] memory amounts = new uint64[](3);
        amounts[0] = 5;
        amounts[1] = 7;
        amounts[2] = 11;
        uint256 payerBefore = usd.balanceOf(payer);
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.ChannelToppedUp(ids[0], 5, 105);
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.ChannelToppedUp(ids[1], 7, 107);
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.ChannelToppedUp(ids[2], 11, 111);
        vm.expectCall(address(usd), abi.encodeCall(usd.transferFrom, (payer, address(escrow), 23)), 1);
        vm.prank(payer);
        escrow.topUpMany(ids, amounts);
        assertEq(_deposit(ids[0]), 105);
        assertEq(_deposit(ids[1]), 107);
        assertEq(_deposit(ids[2]), 111);
        assertEq(payerBefore - usd.balanceOf(payer), 23);
        assertEq(usd.balanceOf(address(escrow)), 323);
    }

    function test_topUpMany_acrossPayeesOfOneToken() public {
        uint32 a = _open(100);
        vm.prank(payer);
        uint32 b = escrow.open(device, makeAddr("other payee"), address(usd), 100, START + DAY);
        uint32[] memory ids = new uint32[](2);
        ids[0] = a;
        ids[1] = b;
        vm.prank(payer);
        escrow.topUpMany(ids, _same(2, 1));
        assertEq(_deposit(a), 101);
        assertEq(_deposit(b), 101);
    }

    function test_topUpMany_refusesMixedTokensAndChangesNothing() public {
        TestStablecoin other = new TestStablecoin();
        other.mint(payer, 1e18);
        vm.startPrank(payer);
        other.approve(address(escrow), type(uint256).max);
        uint32 a = escrow.open(device, payee, address(usd), 100, START + DAY);
        uint32 b = escrow.open(device, payee, address(other), 100, START + DAY);
        uint32[] memory ids = new uint32[](2);
        ids[0] = a;
        ids[1] = b;
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.MixedTokens.selector, b, address(other), address(usd)));
        escrow.topUpMany(ids, _same(2, 1));
        vm.stopPrank();
        assertEq(_deposit(a), 100);
        assertEq(_deposit(b), 100);
    }

    function test_topUpMany_refusesBadBatchesAndChangesNothing() public {
        uint32[] memory ids = _openFleet(2, 100);
        vm.startPrank(payer);
        vm.expectRevert(NanotollEscrow.EmptyBatch.selector);
        escrow.topUpMany(new uint32[](0), new uint64[](0));
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.LengthMismatch.selector, 2, 1));
        escrow.topUpMany(ids, _same(1, 1));
        uint256 tooMany = escrow.MAX_FUNDING_BATCH() + 1;
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.BatchTooLarge.selector, tooMany, tooMany - 1));
        escrow.topUpMany(new uint32[](tooMany), new uint64[](tooMany));
        uint64[] memory amounts = _same(2, 1);
        amounts[1] = 0;
        vm.expectRevert(NanotollEscrow.ZeroAmount.selector);
        escrow.topUpMany(ids, amounts);
        uint32[] memory unknown = new uint32[](2);
        unknown[0] = ids[0];
        unknown[1] = 99;
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.UnknownChannel.selector, 99));
        escrow.topUpMany(unknown, _same(2, 1));
        vm.stopPrank();
        assertEq(_deposit(ids[0]), 100);
        assertEq(_deposit(ids[1]), 100);
    }

    function test_topUpMany_onlyThePayerOfEveryChannel() public {
        uint32[] memory ids = _openFleet(2, 100);
        address stranger = makeAddr("stranger");
        usd.mint(stranger, 1e18);
        vm.startPrank(stranger);
        usd.approve(address(escrow), type(uint256).max);
        uint32 own = escrow.open(device, payee, address(usd), 100, START + DAY);
        uint32[] memory mixed = new uint32[](2);
        mixed[0] = own;
        mixed[1] = ids[1];
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.NotPayer.selector, ids[1], stranger));
        escrow.topUpMany(mixed, _same(2, 1));
        vm.stopPrank();
        assertEq(_deposit(own), 100);
    }

    function test_topUpMany_refusesAReclaimedChannel() public {
        uint32[] memory ids = _openFleet(2, 100);
        vm.warp(START + 30 * DAY);
        vm.prank(payer);
        escrow.reclaim(ids[1]);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.ChannelClosed.selector, ids[1]));
        vm.prank(payer);
        escrow.topUpMany(ids, _same(2, 1));
        assertEq(_deposit(ids[0]), 100);
    }

    function test_topUpMany_withoutAllowanceChangesNothing() public {
        uint32[] memory ids = _openFleet(2, 100);
        vm.prank(payer);
        usd.approve(address(escrow), 1);
        vm.expectRevert();
        vm.prank(payer);
        escrow.topUpMany(ids, _same(2, 1));
        assertEq(_deposit(ids[0]), 100);
    }

    function test_extendMany_movesEveryExpiry() public {
        uint32[] memory ids = _openFleet(3, 100);
        uint40 later = START + 60 * DAY;
        for (uint256 i; i < 3; ++i) {
            vm.expectEmit(address(escrow));
            emit NanotollEscrow.ExpiryExtended(ids[i], later);
        }
        vm.prank(payer);
        escrow.extendMany(ids, later);
        for (uint256 i; i < 3; ++i) {
            assertEq(_expiry(ids[i]), later);
        }
    }

    function test_extendMany_oneChannelAlreadyLaterChangesNothing() public {
        uint32[] memory ids = _openFleet(2, 100);
        vm.startPrank(payer);
        escrow.extendExpiry(ids[1], START + 90 * DAY);
        vm.expectRevert(
            abi.encodeWithSelector(NanotollEscrow.ExpiryNotExtended.selector, START + 90 * DAY, START + 60 * DAY)
        );
        escrow.extendMany(ids, START + 60 * DAY);
        vm.stopPrank();
        assertEq(_expiry(ids[0]), START + 30 * DAY);
    }

    function test_extendMany_refusesBadBatchesStrangersAndReclaimed() public {
        uint32[] memory ids = _openFleet(2, 100);
        vm.expectRevert(NanotollEscrow.EmptyBatch.selector);
        vm.prank(payer);
        escrow.extendMany(new uint32[](0), START + 60 * DAY);
        uint256 tooMany = escrow.MAX_FUNDING_BATCH() + 1;
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.BatchTooLarge.selector, tooMany, tooMany - 1));
        vm.prank(payer);
        escrow.extendMany(new uint32[](tooMany), START + 60 * DAY);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.NotPayer.selector, ids[0], payee));
        vm.prank(payee);
        escrow.extendMany(ids, START + 60 * DAY);
        vm.warp(START + 30 * DAY);
        vm.prank(payer);
        escrow.reclaim(ids[0]);
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.ChannelClosed.selector, ids[0]));
        vm.prank(payer);
        escrow.extendMany(ids, START + 60 * DAY);
        assertEq(_expiry(ids[1]), START + 30 * DAY);
    }

    function test_extendMany_revivesLapsedChannelsForRedeem() public {
        uint32[] memory ids = _openFleet(2, 100);
        vm.warp(START + 31 * DAY);
        bytes memory v = _voucher(deviceKey, ids[1], 10);
        assertEq(escrow.redeem(_route(), v), 0);
        vm.prank(payer);
        escrow.extendMany(ids, START + 40 * DAY);
        assertEq(escrow.redeem(_route(), v), 10);
    }

    function test_fundingBatchesFitTransactionGasCap() public {
        uint256 n = escrow.MAX_FUNDING_BATCH();
        uint32[] memory ids = _openFleet(n, 100);
        vm.cool(address(escrow));
        vm.cool(address(usd));
        vm.prank(payer);
        escrow.topUpMany(ids, _same(n, 1));
        uint256 topUpGas = vm.lastCallGas().gasTotalUsed;
        vm.cool(address(escrow));
        vm.prank(payer);
        escrow.extendMany(ids, START + 60 * DAY);
        uint256 extendGas = vm.lastCallGas().gasTotalUsed;
        emit log_named_uint("topUpMany of 1,000, execution gas", topUpGas);
        emit log_named_uint("extendMany of 1,000, execution gas", extendGas);
        // Calldata adds at most 32 * 16 gas a channel (two words) and 21,000 a transaction.
        assertLt(topUpGas + 21_000 + n * 2 * 32 * 16, EIP7825_TX_GAS_CAP * 9 / 10);
        assertLt(extendGas + 21_000 + n * 32 * 16, EIP7825_TX_GAS_CAP * 9 / 10);
    }

    function testFuzz_topUpManyAddsExactly(uint64 d, uint64 a, uint64 b, uint64 c) public {
        d = uint64(bound(d, 1, type(uint64).max / 4));
        uint64[] memory amounts = new uint64[](3);
        amounts[0] = uint64(bound(a, 1, type(uint64).max / 4));
        amounts[1] = uint64(bound(b, 1, type(uint64).max / 4));
        amounts[2] = uint64(bound(c, 1, type(uint64).max / 4));
        uint32[] memory ids = _openFleet(3, d);
        uint256 escrowBefore = usd.balanceOf(address(escrow));
        vm.prank(payer);
        escrow.topUpMany(ids, amounts);
        uint256 sum;
        for (uint256 i; i < 3; ++i) {
            assertEq(_deposit(ids[i]), uint256(d) + amounts[i]);
            assertEq(_paid(ids[i]), 0);
            sum += amounts[i];
        }
        assertEq(usd.balanceOf(address(escrow)) - escrowBefore, sum);
    }

    function testFuzz_topUpManyOverflowChangesNothing(uint64 d, uint64 a) public {
        d = uint64(bound(d, 1, type(uint64).max - 1));
        a = uint64(bound(a, type(uint64).max - d + 1, type(uint64).max));
        uint32[] memory ids = _openFleet(2, d);
        uint64[] memory amounts = new uint64[](2);
        amounts[0] = 1;
        amounts[1] = a;
        vm.expectRevert(abi.encodeWithSelector(NanotollEscrow.DepositOverflow.selector, uint256(d) + a));
        vm.prank(payer);
        escrow.topUpMany(ids, amounts);
        assertEq(_deposit(ids[0]), d);
    }
}
