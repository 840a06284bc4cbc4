// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {NanotollEscrow} from "../src/NanotollEscrow.sol";

/// @notice The owner-signed policy vectors (tests/vectors/policies.json) against Solidity's own
/// EIP-712 encoding: the policy never goes on-chain, but it is signed in the escrow's domain, so
/// the escrow placed at `verifying_contract` must give the vector's domain separator, and
/// `abi.encode` of the fields must give its digest, which must recover to `owner`.
/// @dev `NANOTOLL_POLICY_VECTORS` points the test at another file (a mutated copy in /tmp).
contract PolicyVectorsTest is Test {
    bytes32 internal constant POLICY_TYPEHASH = keccak256(
        "Policy(uint32 channelId,uint64 seq,uint64 deposit,uint64 budget,uint64 expiry,"
        "uint64 expiryMargin,uint64 maxUnitPrice,uint64 perHour,uint32 perMinute,"
        "bytes32 providersHash,bytes32 capsHash)"
    );

    string[9] internal _names =
        ["channelId", "seq", "deposit", "budget", "expiry", "expiryMargin", "maxUnitPrice", "perHour", "perMinute"];

    function _path() internal view returns (string memory) {
        return vm.envOr("NANOTOLL_POLICY_VECTORS", string("../tests/vectors/policies.json"));
    }

    function _at(uint256 i, string memory field) internal pure returns (string memory) {
        return string.concat(".policies[", vm.toString(i), "].", field);
    }

    function test_policyVectors() public {
        string memory json = vm.readFile(_path());
        assertEq(
            keccak256(bytes(vm.parseJsonString(json, ".type"))),
            POLICY_TYPEHASH,
            "the vectors' Policy type is the one hashed here"
        );
        uint256 n;
        while (vm.keyExistsJson(json, string.concat(".policies[", vm.toString(n), "]"))) ++n;
        assertGe(n, 8, "at least 8 policies");
        for (uint256 i; i < n; ++i) {
            uint256 snap = vm.snapshotState();
            _check(json, i);
            vm.revertToState(snap);
        }
    }

    function _structHash(string memory json, uint256 i) internal view returns (bytes32) {
        bytes memory encoded = abi.encode(POLICY_TYPEHASH);
        for (uint256 k; k < 9; ++k) {
            uint256 value = vm.parseUint(vm.parseJsonString(json, _at(i, string.concat("fields.", _names[k]))));
            // channelId and perMinute are uint32, the rest uint64: abi.encode pads each to a word.
            assertLe(value, k == 0 || k == 8 ? type(uint32).max : type(uint64).max, "field in range");
            encoded = bytes.concat(encoded, abi.encode(value));
        }
        encoded = bytes.concat(
            encoded,
            abi.encode(vm.parseJsonBytes32(json, _at(i, "providers_hash")), vm.parseJsonBytes32(json, _at(i, "caps_hash")))
        );
        return keccak256(encoded);
    }

    function _check(string memory json, uint256 i) internal {
        string memory name = vm.parseJsonString(json, _at(i, "name"));
        vm.chainId(vm.parseJsonUint(json, _at(i, "chain_id")));
        address at = vm.parseJsonAddress(json, _at(i, "verifying_contract"));
        deployCodeTo("NanotollEscrow.sol:NanotollEscrow", at);
        bytes32 separator = NanotollEscrow(at).domainSeparator();
        assertEq(separator, vm.parseJsonBytes32(json, _at(i, "domain_separator")), string.concat(name, ": domain"));

        bytes32 digest = keccak256(abi.encodePacked(hex"1901", separator, _structHash(json, i)));
        assertEq(digest, vm.parseJsonBytes32(json, _at(i, "digest")), string.concat(name, ": digest"));

        bytes memory signature = vm.parseJsonBytes(json, _at(i, "signature"));
        assertEq(signature.length, 64, string.concat(name, ": signature length"));
        bytes32 r;
        bytes32 vs;
        assembly ("memory-safe") {
            r := mload(add(signature, 0x20))
            vs := mload(add(signature, 0x40))
        }
        assertEq(
            ECDSA.recover(digest, r, vs),
            vm.parseJsonAddress(json, _at(i, "owner")),
            string.concat(name, ": signature recovers to the owner")
        );
    }
}
