// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EscrowBase} from "./Base.t.sol";
import {NanotollEscrow} from "../src/NanotollEscrow.sol";

/// @dev Redeem gas as a transaction would pay it: `vm.cool` makes the escrow's and the token's
/// storage cold again before each measured call, as at the start of a real transaction.
/// Execution gas only; add 21,000 and calldata for a transaction's gasUsed. The anvil figures
/// (`nanotoll bench gas`) are the reference; these guard against regressions.
contract GasTest is EscrowBase {
    uint256 internal constant EIP7825_TX_GAS_CAP = 16_777_216;

    function _openFleet(uint256 n) internal returns (uint32 first) {
        NanotollEscrow.OpenParams[] memory ps = new NanotollEscrow.OpenParams[](n);
        for (uint256 i; i < n; ++i) {
            ps[i] = NanotollEscrow.OpenParams(device, payee, 1_000_000, START + 30 * DAY);
        }
        vm.prank(payer);
        first = escrow.openMany(address(usd), ps);
    }

    /// @dev Vouchers for channels first, first + stride, ... (n of them), signed by `key`.
    function _batch(uint256 key, uint32 first, uint256 n, uint256 stride) internal view returns (bytes memory b) {
        b = new bytes(n * 76);
        for (uint256 i; i < n; ++i) {
            bytes memory v = _voucher(key, first + uint32(i * stride), uint64(1000 + i));
            for (uint256 j; j < 76; ++j) b[i * 76 + j] = v[j];
        }
    }

    function _measure(bytes memory batch) internal returns (uint256) {
        vm.cool(address(escrow));
        vm.cool(address(usd));
        escrow.redeem(_route(), batch);
        return vm.lastCallGas().gasTotalUsed;
    }

    function _calldataGas(bytes memory data) internal pure returns (uint256 g) {
        // redeem(uint32,bytes): selector + 2 head words + length word + data padded to 32 bytes.
        g = 4 * 16 + 3 * 32 * 4;
        for (uint256 i; i < data.length; ++i) g += data[i] == 0 ? 4 : 16;
        g += (32 - data.length % 32) % 32 * 4;
    }

    function test_gas_redeemSingleAndBatch100() public {
        uint32 first = _openFleet(102);
        escrow.redeem(_route(), _batch(deviceKey, first, 1, 1)); // the payee has been paid before
        uint256 single = _measure(_batch(deviceKey, first + 1, 1, 1));
        uint256 batch = _measure(_batch(deviceKey, first + 2, 100, 1));
        uint256 marginal = (batch - single) / 99;
        emit log_named_uint("redeem single, execution gas", single);
        emit log_named_uint("redeem batch of 100, execution gas", batch);
        emit log_named_uint("marginal execution gas per channel", marginal);
        // Target: 12,000 per channel including ~1,100 of calldata.
        assertLt(marginal, 10_500);
    }

    function test_gas_redeemBatch100Scattered() public {
        // Every other channel: no two items share a ledger slot (the pairing's worst case).
        uint32 first = _openFleet(202);
        escrow.redeem(_route(), _batch(deviceKey, first, 1, 1));
        uint256 single = _measure(_batch(deviceKey, first + 1, 1, 1));
        uint256 batch = _measure(_batch(deviceKey, first + 2, 100, 2));
        emit log_named_uint("marginal execution gas per channel, scattered", (batch - single) / 99);
    }

    /// MAX_REDEEM_BATCH items in the most expensive shapes the contract allows must fit the
    /// EIP-7825 cap with room to spare (21,000 + calldata + execution < 90% of the cap).
    function test_maxBatchFitsTransactionGasCap() public {
        uint256 n = escrow.MAX_REDEEM_BATCH();
        uint32 first = _openFleet(2 * n + 1);
        escrow.redeem(_route(), _batch(deviceKey, first, 1, 1));
        // Every item pays, each on its own ledger slot.
        bytes memory paying = _batch(deviceKey, first + 1, n, 2);
        uint256 payingGas = 21_000 + _calldataGas(paying) + _measure(paying);
        // Every item fails at the last check (foreign signer) and emits a skip event.
        bytes memory forged = _batch(0xBAD, first + 2, n, 2);
        uint256 forgedGas = 21_000 + _calldataGas(forged) + _measure(forged);
        emit log_named_uint("max batch, all paying, scattered: tx gas", payingGas);
        emit log_named_uint("max batch, all forged, scattered: tx gas", forgedGas);
        assertLt(payingGas, EIP7825_TX_GAS_CAP * 9 / 10);
        assertLt(forgedGas, EIP7825_TX_GAS_CAP * 9 / 10);
    }
}
