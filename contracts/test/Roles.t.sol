// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EscrowBase} from "./Base.t.sol";
import {NanotollEscrow} from "../src/NanotollEscrow.sol";

/// @dev Roles: a signature made for one EIP-712 type (receipt, catalog) never redeems as a
/// voucher, even when the channel's own signer made it over the same channel and amount.
/// The type hash in each struct hash is what keeps them apart.
contract RolesTest is EscrowBase {
    bytes32 internal constant CATALOG_TYPEHASH =
        keccak256("Catalog(uint64 seq,uint64 validFrom,uint64 validUntil,bytes32 productsHash)");
    bytes32 internal constant REQUEST_HASH = keccak256("request bytes");
    bytes32 internal constant DATA_HASH = keccak256("data bytes");

    function _item(uint32 id, uint64 cumulative, bytes32 digest) internal view returns (bytes memory) {
        (bytes32 r, bytes32 vs) = vm.signCompact(deviceKey, digest);
        return abi.encodePacked(id, cumulative, r, vs);
    }

    function _catalogDigest(uint64 seq, uint64 validFrom) internal view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(CATALOG_TYPEHASH, seq, validFrom, uint64(START + DAY), DATA_HASH));
        return keccak256(abi.encodePacked(hex"1901", escrow.domainSeparator(), structHash));
    }

    function _refused(bytes memory item, uint32 id, uint64 cumulative) internal {
        vm.expectEmit(address(escrow));
        emit NanotollEscrow.VoucherSkipped(id, 0, cumulative, NanotollEscrow.SkipReason.BadSignature);
        assertEq(escrow.redeem(_route(), item), 0);
        assertEq(_paid(id), 0);
    }

    function test_receiptSignatureIsNoVoucher() public {
        uint32 id = _open(1000);
        _refused(_item(id, 10, escrow.receiptDigest(id, 10, REQUEST_HASH, DATA_HASH)), id, 10);
    }

    function test_catalogSignatureIsNoVoucher() public {
        uint32 id = _open(1000);
        // The catalog's first two fields set to the channel and the amount: still refused.
        _refused(_item(id, 10, _catalogDigest(id, 10)), id, 10);
    }

    function test_theVoucherSignatureOfTheSameKeyRedeems() public {
        uint32 id = _open(1000);
        assertEq(escrow.redeem(_route(), _item(id, 10, escrow.voucherDigest(id, 10))), 10);
        assertEq(_paid(id), 10);
    }

    function testFuzz_otherTypesNeverRedeem(uint32 seed, uint64 cumulative, bytes32 requestHash) public {
        cumulative = uint64(bound(cumulative, 1, 1000));
        uint32 id = _open(1000);
        bytes32 digest = seed % 2 == 0
            ? escrow.receiptDigest(id, cumulative, requestHash, DATA_HASH)
            : _catalogDigest(id, cumulative);
        _refused(_item(id, cumulative, digest), id, cumulative);
    }
}
