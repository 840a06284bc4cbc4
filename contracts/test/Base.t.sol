// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {NanotollEscrow} from "../src/NanotollEscrow.sol";
import {TestStablecoin} from "./mocks/TestStablecoin.sol";

/// @dev Shared fixture: an escrow, a 6-decimal stablecoin, a funded payer, a payee and helpers
/// that sign vouchers the way the device firmware does (EIP-712, EIP-2098 compact, low-s).
abstract contract EscrowBase is Test {
    NanotollEscrow internal escrow;
    TestStablecoin internal usd;

    address internal payer = makeAddr("payer");
    address internal payee = makeAddr("payee");
    uint256 internal deviceKey = 0xD371CE;
    address internal device;

    uint40 internal constant START = 1_767_225_600; // 2026-01-01T00:00:00Z
    uint40 internal constant DAY = 86_400;

    function setUp() public virtual {
        vm.warp(START);
        escrow = new NanotollEscrow();
        usd = new TestStablecoin();
        device = vm.addr(deviceKey);
        usd.mint(payer, 1e30);
        vm.prank(payer);
        usd.approve(address(escrow), type(uint256).max);
    }

    function _open(uint64 deposit) internal returns (uint32 id) {
        vm.prank(payer);
        id = escrow.open(device, payee, address(usd), deposit, START + 30 * DAY);
    }

    function _sign(uint256 key, uint32 channelId, uint64 cumulative) internal view returns (bytes32 r, bytes32 vs) {
        return vm.signCompact(key, escrow.voucherDigest(channelId, cumulative));
    }

    function _voucher(uint256 key, uint32 channelId, uint64 cumulative) internal view returns (bytes memory) {
        (bytes32 r, bytes32 vs) = _sign(key, channelId, cumulative);
        return abi.encodePacked(channelId, cumulative, r, vs);
    }

    function _route() internal view returns (uint32) {
        return escrow.routeOf(payee, address(usd));
    }

    function _paid(uint32 id) internal view returns (uint64 paid) {
        (,,,,,, paid,,) = escrow.channel(id);
    }

    function _deposit(uint32 id) internal view returns (uint64 deposit) {
        (,,,,, deposit,,,) = escrow.channel(id);
    }
}
