// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EscrowBase} from "./Base.t.sol";
import {NanotollEscrow} from "../src/NanotollEscrow.sol";

/// @dev Gas figures for the snapshot; run `forge snapshot` to refresh .gas-snapshot.
contract GasTest is EscrowBase {
    uint256[] internal keys;

    function _openFleet(uint256 n) internal returns (uint32 first) {
        NanotollEscrow.OpenParams[] memory ps = new NanotollEscrow.OpenParams[](n);
        for (uint256 i; i < n; ++i) {
            uint256 k = uint256(keccak256(abi.encode("device", i))) % 1e70 + 1;
            keys.push(k);
            ps[i] = NanotollEscrow.OpenParams(vm.addr(k), payee, 1_000_000, START + 30 * DAY);
        }
        vm.prank(payer);
        first = escrow.openMany(address(usd), ps);
    }

    function _batch(uint32 first, uint256 n) internal view returns (bytes memory b) {
        for (uint256 i; i < n; ++i) {
            b = bytes.concat(b, _voucher(keys[i], first + uint32(i), uint64(1000 + i)));
        }
    }

    function test_gas_redeem_batch() public {
        uint32 first = _openFleet(102);
        // Warm-up: the payee has been paid before (its token balance slot is non-zero).
        uint32 route = _route();
        escrow.redeem(route, _batch(first, 1));
        bytes memory one = bytes.concat(_voucher(keys[1], first + 1, 500));
        bytes memory hundred;
        for (uint256 i = 2; i < 102; ++i) {
            hundred = bytes.concat(hundred, _voucher(keys[i], first + uint32(i), uint64(1000 + i)));
        }
        vm.cool(address(escrow));
        vm.cool(address(usd));
        escrow.redeem(route, one);
        uint256 single = vm.lastCallGas().gasTotalUsed;
        vm.cool(address(escrow));
        vm.cool(address(usd));
        escrow.redeem(route, hundred);
        uint256 batch = vm.lastCallGas().gasTotalUsed;
        emit log_named_uint("single (execution)", single);
        emit log_named_uint("batch100 (execution)", batch);
        emit log_named_uint("marginal", (batch - single) / 99);
    }
}
