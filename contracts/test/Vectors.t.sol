// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {stdStorage, StdStorage} from "forge-std/StdStorage.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {NanotollEscrow} from "../src/NanotollEscrow.sol";
import {TestStablecoin} from "./mocks/TestStablecoin.sol";

/// @notice The shared voucher vectors (tests/vectors/vouchers.json), checked against the contract.
/// @dev `NANOTOLL_VECTORS` points the test at another file (for instance a copy with one byte
/// changed, which must make this test fail). forge only reads files that foundry.toml's
/// fs_permissions allow: tests/vectors/ and the system temporary folder /tmp.
///
/// For every vector: set the chain id, place an escrow at `verifying_contract`, and check the
/// domain separator, struct hash, digest, the wire bytes and that the signature recovers to
/// `signer`; then open channel `channel_id` with `deposit` and `expiry`, move time to `now`, redeem
/// `wire`, and check that the payee received exactly `cumulative` when `redeemable`, else nothing.
contract VectorsTest is Test {
    using stdStorage for StdStorage;

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    struct Vector {
        string name;
        uint256 chainId;
        address verifyingContract;
        uint32 channelId;
        uint64 cumulative;
        address signer;
        bytes32 domainSeparator;
        bytes32 structHash;
        bytes32 digest;
        bytes signature;
        bytes wire;
        uint64 deposit;
        uint40 expiry;
        uint40 now_;
        bool redeemable;
    }

    function _path() internal view returns (string memory) {
        return vm.envOr("NANOTOLL_VECTORS", string("../tests/vectors/vouchers.json"));
    }

    function _key(uint256 i, string memory field) internal pure returns (string memory) {
        return string.concat(".vouchers[", vm.toString(i), "].", field);
    }

    function _load(string memory json, uint256 i) internal pure returns (Vector memory v) {
        v.name = vm.parseJsonString(json, _key(i, "name"));
        v.chainId = vm.parseJsonUint(json, _key(i, "chain_id"));
        v.verifyingContract = vm.parseJsonAddress(json, _key(i, "verifying_contract"));
        v.channelId = uint32(vm.parseJsonUint(json, _key(i, "channel_id")));
        v.cumulative = _u64(vm.parseJsonString(json, _key(i, "cumulative")));
        v.signer = vm.parseJsonAddress(json, _key(i, "signer"));
        v.domainSeparator = vm.parseJsonBytes32(json, _key(i, "domain_separator"));
        v.structHash = vm.parseJsonBytes32(json, _key(i, "struct_hash"));
        v.digest = vm.parseJsonBytes32(json, _key(i, "digest"));
        v.signature = vm.parseJsonBytes(json, _key(i, "signature"));
        v.wire = vm.parseJsonBytes(json, _key(i, "wire"));
        v.deposit = _u64(vm.parseJsonString(json, _key(i, "deposit")));
        v.expiry = uint40(vm.parseJsonUint(json, _key(i, "expiry")));
        v.now_ = uint40(vm.parseJsonUint(json, _key(i, "now")));
        v.redeemable = vm.parseJsonBool(json, _key(i, "redeemable"));
    }

    function _u64(string memory decimal) internal pure returns (uint64) {
        uint256 value = vm.parseUint(decimal);
        require(value <= type(uint64).max, "amount does not fit uint64");
        return uint64(value);
    }

    function test_vectors() public {
        string memory json = vm.readFile(_path());
        assertEq(vm.parseJsonUint(json, ".version"), 1, "vector file version");
        assertEq(vm.parseJsonString(json, ".domain.name"), "nanotoll", "domain name");
        assertEq(vm.parseJsonString(json, ".domain.version"), "1", "domain version");
        uint256 n;
        while (vm.keyExistsJson(json, string.concat(".vouchers[", vm.toString(n), "]"))) ++n;
        assertGe(n, 50, "at least 50 vectors");
        uint256 onChain;
        for (uint256 i; i < n; ++i) {
            Vector memory v = _load(json, i);
            uint256 snap = vm.snapshotState();
            if (_check(v)) ++onChain;
            vm.revertToState(snap);
        }
        emit log_named_uint("vectors checked", n);
        emit log_named_uint("of which redeemed on a contract at verifying_contract", onChain);
    }

    /// @return placed Whether the escrow could be placed at the vector's address.
    function _check(Vector memory v) internal returns (bool placed) {
        string memory name = v.name;
        vm.chainId(v.chainId);

        // Encoding checks that need no contract.
        assertEq(
            v.wire,
            abi.encodePacked(v.channelId, v.cumulative, v.signature),
            string.concat(name, ": wire = channelId | cumulative | signature")
        );
        assertEq(v.signature.length, 64, string.concat(name, ": signature length"));
        bytes32 structHash = keccak256(abi.encode(keccak256("Voucher(uint32 channelId,uint64 cumulativeAmount)"), v.channelId, v.cumulative));
        assertEq(structHash, v.structHash, string.concat(name, ": struct hash"));
        (bytes32 r, bytes32 vs) = _split(v.signature);
        assertEq(ECDSA.recover(v.digest, r, vs), v.signer, string.concat(name, ": signature recovers to signer"));

        // Addresses of precompiles (0x01..0x11 in Prague, 0x100 from Osaka) cannot hold our code:
        // calls to them run the precompile. Check the domain by the reference formula there.
        if (uint160(v.verifyingContract) <= 0x100) {
            bytes32 sep = keccak256(
                abi.encode(DOMAIN_TYPEHASH, keccak256("nanotoll"), keccak256("1"), v.chainId, v.verifyingContract)
            );
            assertEq(sep, v.domainSeparator, string.concat(name, ": domain separator (reference)"));
            assertEq(
                keccak256(abi.encodePacked(hex"1901", sep, structHash)),
                v.digest,
                string.concat(name, ": digest (reference)")
            );
            return false;
        }

        _checkOnChain(v);
        return true;
    }

    function _checkOnChain(Vector memory v) internal {
        string memory name = v.name;
        deployCodeTo("NanotollEscrow.sol:NanotollEscrow", v.verifyingContract);
        NanotollEscrow escrow = NanotollEscrow(v.verifyingContract);
        assertEq(escrow.domainSeparator(), v.domainSeparator, string.concat(name, ": domain separator"));
        assertEq(escrow.voucherDigest(v.channelId, v.cumulative), v.digest, string.concat(name, ": digest"));

        // Open the vector's channel: make `channel_id` the next id, fund it, then go to `now`.
        TestStablecoin usd = new TestStablecoin();
        address payer = makeAddr("vector payer");
        address payee = makeAddr("vector payee");
        usd.mint(payer, v.deposit);
        vm.prank(payer);
        usd.approve(address(escrow), v.deposit);
        stdstore.target(address(escrow)).sig("lastChannelId()").checked_write(uint256(v.channelId) - 1);
        vm.warp(v.now_ < v.expiry ? v.now_ : v.expiry - 1);
        vm.prank(payer);
        uint32 id = escrow.open(v.signer, payee, address(usd), v.deposit, v.expiry);
        assertEq(id, v.channelId, string.concat(name, ": channel id"));

        vm.warp(v.now_);
        uint256 paidOut = escrow.redeem(escrow.routeOf(payee, address(usd)), v.wire);
        _checkPaid(v, escrow, usd, payee, id, paidOut);
    }

    function _checkPaid(
        Vector memory v,
        NanotollEscrow escrow,
        TestStablecoin usd,
        address payee,
        uint32 id,
        uint256 paidOut
    ) internal {
        string memory name = v.name;
        uint256 expected = v.redeemable ? v.cumulative : 0;
        assertEq(paidOut, expected, string.concat(name, ": amount redeemed"));
        assertEq(usd.balanceOf(payee), expected, string.concat(name, ": payee balance"));
        (,,,,,, uint64 paid,,) = escrow.channel(id);
        assertEq(paid, expected, string.concat(name, ": channel paid"));

        // A second redemption of the same bytes never pays again.
        assertEq(escrow.redeem(escrow.routeOf(payee, address(usd)), v.wire), 0, string.concat(name, ": replay"));
    }

    function _split(bytes memory sig) internal pure returns (bytes32 r, bytes32 vs) {
        assembly ("memory-safe") {
            r := mload(add(sig, 0x20))
            vs := mload(add(sig, 0x40))
        }
    }
}
