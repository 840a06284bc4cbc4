// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Test, Vm} from "forge-std/Test.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IdentityRegistry} from "../../src/erc8004/IdentityRegistry.sol";
import {KeyedSmartWallet} from "./mocks/KeyedSmartWallet.sol";

/// @dev Shared fixture: a registry, an agent owner, an operator, a stranger and wallet keys, with
/// helpers that sign wallet proofs the way a wallet would (EIP-712 typed data).
abstract contract IdentityBase is Test {
    IdentityRegistry internal registry;

    address internal owner = makeAddr("owner");
    address internal operator = makeAddr("operator");
    address internal stranger = makeAddr("stranger");
    uint256 internal walletKey = 0xA11E7;
    address internal wallet;

    uint256 internal constant START = 1_767_225_600; // 2026-01-01T00:00:00Z

    function setUp() public virtual {
        vm.warp(START);
        registry = new IdentityRegistry();
        wallet = vm.addr(walletKey);
    }

    function _register() internal returns (uint256 agentId) {
        vm.prank(owner);
        agentId = registry.register("https://provider.example/agent.json");
    }

    function _proof(uint256 key, uint256 agentId, address newWallet, address agentOwner, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(key, registry.walletProofDigest(agentId, newWallet, agentOwner, deadline));
        return abi.encodePacked(r, s, v);
    }
}

contract IdentityRegisterTest is IdentityBase {
    function test_register_withoutUri_mintsFromOneAndSetsTheWallet() public {
        vm.expectEmit(true, true, true, true, address(registry));
        emit IERC721.Transfer(address(0), owner, 1);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(1, "agentWallet", "agentWallet", abi.encodePacked(owner));
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.Registered(1, "", owner);
        vm.prank(owner);
        uint256 agentId = registry.register();

        assertEq(agentId, 1);
        assertEq(registry.ownerOf(1), owner);
        assertEq(registry.tokenURI(1), "");
        assertEq(registry.getAgentWallet(1), owner);
        assertEq(registry.getMetadata(1, "agentWallet"), abi.encodePacked(owner));
        assertEq(registry.lastAgentId(), 1);
    }

    function test_register_withUri_assignsIncrementingIds() public {
        uint256 first = _register();
        vm.prank(stranger);
        uint256 second = registry.register("ipfs://bafy");
        assertEq(first, 1);
        assertEq(second, 2);
        assertEq(registry.tokenURI(1), "https://provider.example/agent.json");
        assertEq(registry.tokenURI(2), "ipfs://bafy");
        assertEq(registry.ownerOf(2), stranger);
        assertEq(registry.getAgentWallet(2), stranger);
        assertEq(registry.lastAgentId(), 2);
        assertEq(registry.balanceOf(owner), 1);
    }

    function test_register_withMetadata_storesEntriesAndEmitsInSpecOrder() public {
        IdentityRegistry.MetadataEntry[] memory entries = new IdentityRegistry.MetadataEntry[](3);
        entries[0] = IdentityRegistry.MetadataEntry("agentName", bytes("meter-data"));
        entries[1] = IdentityRegistry.MetadataEntry("broker", bytes("mqtt://broker:1883"));
        entries[2] = IdentityRegistry.MetadataEntry("agentName", bytes("renamed"));

        vm.recordLogs();
        vm.prank(owner);
        uint256 agentId = registry.register("data:application/json;base64,e30=", entries);
        Vm.Log[] memory logs = vm.getRecordedLogs();

        assertEq(registry.getMetadata(agentId, "agentName"), bytes("renamed"), "a repeated key keeps its last value");
        assertEq(registry.getMetadata(agentId, "broker"), bytes("mqtt://broker:1883"));
        assertEq(registry.getMetadata(agentId, "unset"), bytes(""));
        // Transfer, MetadataUpdate (ERC-4906, from the URI), agentWallet, three entries, Registered.
        assertEq(logs.length, 7);
        assertEq(logs[0].topics[0], IERC721.Transfer.selector);
        assertEq(logs[2].topics[0], IdentityRegistry.MetadataSet.selector);
        assertEq(logs[2].topics[2], keccak256("agentWallet"));
        assertEq(logs[3].topics[2], keccak256("agentName"));
        assertEq(logs[4].topics[2], keccak256("broker"));
        assertEq(logs[5].topics[2], keccak256("agentName"));
        assertEq(logs[6].topics[0], IdentityRegistry.Registered.selector);
    }

    function test_register_refusesTheReservedWalletKey() public {
        IdentityRegistry.MetadataEntry[] memory entries = new IdentityRegistry.MetadataEntry[](1);
        entries[0] = IdentityRegistry.MetadataEntry("agentWallet", abi.encodePacked(stranger));
        vm.prank(owner);
        vm.expectRevert(IdentityRegistry.ReservedMetadataKey.selector);
        registry.register("ipfs://x", entries);
        assertEq(registry.lastAgentId(), 0);
    }

    function test_supportsErc721AndMetadataUpdateInterfaces() public view {
        assertTrue(registry.supportsInterface(0x80ac58cd)); // ERC-721
        assertTrue(registry.supportsInterface(0x5b5e139f)); // ERC-721 metadata
        assertTrue(registry.supportsInterface(0x49064906)); // ERC-4906
        assertFalse(registry.supportsInterface(0xffffffff));
    }
}

contract IdentityUriAndMetadataTest is IdentityBase {
    function test_setAgentURI_byOwnerApprovedAndOperator() public {
        uint256 agentId = _register();

        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.URIUpdated(agentId, "ipfs://v2", owner);
        vm.prank(owner);
        registry.setAgentURI(agentId, "ipfs://v2");
        assertEq(registry.tokenURI(agentId), "ipfs://v2");

        vm.prank(owner);
        registry.approve(operator, agentId);
        vm.prank(operator);
        registry.setAgentURI(agentId, "ipfs://v3");
        assertEq(registry.tokenURI(agentId), "ipfs://v3");

        vm.startPrank(owner);
        registry.approve(address(0), agentId);
        registry.setApprovalForAll(stranger, true);
        vm.stopPrank();
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.URIUpdated(agentId, "", stranger);
        vm.prank(stranger);
        registry.setAgentURI(agentId, "");
        assertEq(registry.tokenURI(agentId), "");
    }

    function test_setAgentURI_refusesStrangersAndUnknownAgents() public {
        uint256 agentId = _register();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.NotAgentManager.selector, agentId, stranger));
        registry.setAgentURI(agentId, "ipfs://evil");

        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 7));
        registry.setAgentURI(7, "ipfs://x");
    }

    function test_setMetadata_storesOverwritesAndDeletes() public {
        uint256 agentId = _register();
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(agentId, "catalogTopic", "catalogTopic", bytes("nanotoll/catalog"));
        vm.prank(owner);
        registry.setMetadata(agentId, "catalogTopic", bytes("nanotoll/catalog"));
        assertEq(registry.getMetadata(agentId, "catalogTopic"), bytes("nanotoll/catalog"));

        vm.prank(owner);
        registry.approve(operator, agentId);
        vm.prank(operator);
        registry.setMetadata(agentId, "catalogTopic", "");
        assertEq(registry.getMetadata(agentId, "catalogTopic"), bytes(""));
    }

    function test_setMetadata_refusesReservedKeyStrangersAndUnknownAgents() public {
        uint256 agentId = _register();
        vm.prank(owner);
        vm.expectRevert(IdentityRegistry.ReservedMetadataKey.selector);
        registry.setMetadata(agentId, "agentWallet", abi.encodePacked(stranger));

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.NotAgentManager.selector, agentId, stranger));
        registry.setMetadata(agentId, "k", "v");

        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 9));
        registry.setMetadata(9, "k", "v");
    }

    function test_reads_refuseUnknownAgents() public {
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 1));
        registry.getMetadata(1, "k");
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 1));
        registry.getAgentWallet(1);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 1));
        registry.tokenURI(1);
    }

    function test_metadataSurvivesATransfer() public {
        uint256 agentId = _register();
        vm.prank(owner);
        registry.setMetadata(agentId, "k", "v");
        vm.prank(owner);
        registry.transferFrom(owner, stranger, agentId);
        assertEq(registry.getMetadata(agentId, "k"), bytes("v"));
        assertEq(registry.tokenURI(agentId), "https://provider.example/agent.json");
    }
}

contract IdentityWalletTest is IdentityBase {
    function test_walletProofDigest_isEip712OverTheSpecMessage() public view {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("ERC8004IdentityRegistry"),
                keccak256("1"),
                block.chainid,
                address(registry)
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)"),
                uint256(5),
                wallet,
                owner,
                START + 60
            )
        );
        assertEq(
            registry.walletProofDigest(5, wallet, owner, START + 60),
            keccak256(abi.encodePacked("\x19\x01", domain, structHash))
        );
        assertEq(
            registry.AGENT_WALLET_SET_TYPEHASH(),
            keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)")
        );
    }

    function test_setAgentWallet_eoaProof() public {
        uint256 agentId = _register();
        uint256 deadline = START + 300;
        bytes memory proof = _proof(walletKey, agentId, wallet, owner, deadline);

        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(agentId, "agentWallet", "agentWallet", abi.encodePacked(wallet));
        vm.prank(owner);
        registry.setAgentWallet(agentId, wallet, deadline, proof);
        assertEq(registry.getAgentWallet(agentId), wallet);
        assertEq(registry.getMetadata(agentId, "agentWallet"), abi.encodePacked(wallet));
    }

    function test_setAgentWallet_approvedCallerAndNoCompactSignatures() public {
        uint256 agentId = _register();
        vm.prank(owner);
        registry.setApprovalForAll(operator, true);

        // OpenZeppelin 5's ECDSA takes 65-byte r | s | v only: an EIP-2098 64-byte form is refused.
        (bytes32 r, bytes32 vs) = vm.signCompact(walletKey, registry.walletProofDigest(agentId, wallet, owner, START));
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, wallet));
        registry.setAgentWallet(agentId, wallet, START, abi.encodePacked(r, vs));

        bytes memory proof = _proof(walletKey, agentId, wallet, owner, START);
        vm.prank(operator);
        registry.setAgentWallet(agentId, wallet, START, proof);
        assertEq(registry.getAgentWallet(agentId), wallet);
    }

    function test_setAgentWallet_erc1271Wallet() public {
        uint256 agentId = _register();
        KeyedSmartWallet smart = new KeyedSmartWallet(vm.addr(walletKey));
        bytes memory proof = _proof(walletKey, agentId, address(smart), owner, START + 10);
        vm.prank(owner);
        registry.setAgentWallet(agentId, address(smart), START + 10, proof);
        assertEq(registry.getAgentWallet(agentId), address(smart));

        // The wallet's key signing for the wallet is fine; another key is not.
        bytes memory forged = _proof(0xBAD, agentId, address(smart), owner, START + 10);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, address(smart)));
        registry.setAgentWallet(agentId, address(smart), START + 10, forged);
    }

    function test_setAgentWallet_deadlineWindow() public {
        uint256 agentId = _register();
        vm.startPrank(owner);

        bytes memory stale = _proof(walletKey, agentId, wallet, owner, START - 1);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.WalletProofExpired.selector, START - 1));
        registry.setAgentWallet(agentId, wallet, START - 1, stale);

        bytes memory far = _proof(walletKey, agentId, wallet, owner, START + 301);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.WalletProofDeadlineTooFar.selector, START + 301));
        registry.setAgentWallet(agentId, wallet, START + 301, far);

        registry.setAgentWallet(agentId, wallet, START, _proof(walletKey, agentId, wallet, owner, START));
        registry.setAgentWallet(agentId, wallet, START + 300, _proof(walletKey, agentId, wallet, owner, START + 300));
        vm.stopPrank();
    }

    function test_setAgentWallet_refusesProofsForAnythingElse() public {
        uint256 agentId = _register();
        vm.prank(stranger);
        uint256 otherAgent = registry.register();
        uint256 deadline = START + 60;
        vm.startPrank(owner);

        bytes memory wrongSigner = _proof(0xBAD, agentId, wallet, owner, deadline);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, wallet));
        registry.setAgentWallet(agentId, wallet, deadline, wrongSigner);

        bytes memory otherAgentProof = _proof(walletKey, otherAgent, wallet, owner, deadline);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, wallet));
        registry.setAgentWallet(agentId, wallet, deadline, otherAgentProof);

        bytes memory otherOwnerProof = _proof(walletKey, agentId, wallet, stranger, deadline);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, wallet));
        registry.setAgentWallet(agentId, wallet, deadline, otherOwnerProof);

        bytes memory otherDeadline = _proof(walletKey, agentId, wallet, owner, deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, wallet));
        registry.setAgentWallet(agentId, wallet, deadline, otherDeadline);

        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, wallet));
        registry.setAgentWallet(agentId, wallet, deadline, hex"1234");

        vm.expectRevert(IdentityRegistry.ZeroWallet.selector);
        registry.setAgentWallet(agentId, address(0), deadline, "");
        vm.stopPrank();

        bytes memory good = _proof(walletKey, agentId, wallet, owner, deadline);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.NotAgentManager.selector, agentId, stranger));
        registry.setAgentWallet(agentId, wallet, deadline, good);

        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 99));
        registry.setAgentWallet(99, wallet, deadline, good);
        assertEq(registry.getAgentWallet(agentId), owner, "nothing changed");
    }

    function test_setAgentWallet_proofDoesNotCrossChains() public {
        uint256 agentId = _register();
        bytes memory proof = _proof(walletKey, agentId, wallet, owner, START + 60);
        vm.chainId(31_338);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, wallet));
        registry.setAgentWallet(agentId, wallet, START + 60, proof);
    }

    function test_transfer_clearsTheWalletAndOldProofsStopWorking() public {
        uint256 agentId = _register();
        uint256 deadline = START + 60;
        bytes memory proof = _proof(walletKey, agentId, wallet, owner, deadline);
        vm.prank(owner);
        registry.setAgentWallet(agentId, wallet, deadline, proof);

        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(agentId, "agentWallet", "agentWallet", "");
        vm.prank(owner);
        registry.safeTransferFrom(owner, stranger, agentId);
        assertEq(registry.getAgentWallet(agentId), address(0));
        assertEq(registry.getMetadata(agentId, "agentWallet"), bytes(""));

        // The proof named the previous owner: the new owner cannot reuse it.
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, wallet));
        registry.setAgentWallet(agentId, wallet, deadline, proof);

        bytes memory newOwnerProof = _proof(walletKey, agentId, wallet, stranger, deadline);
        vm.prank(stranger);
        registry.setAgentWallet(agentId, wallet, deadline, newOwnerProof);
        assertEq(registry.getAgentWallet(agentId), wallet);
    }

    function test_transfer_withoutWalletEmitsNoWalletEvent() public {
        uint256 agentId = _register();
        vm.prank(owner);
        registry.unsetAgentWallet(agentId);
        vm.recordLogs();
        vm.prank(owner);
        registry.transferFrom(owner, stranger, agentId);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1);
        assertEq(logs[0].topics[0], IERC721.Transfer.selector);
    }

    function test_unsetAgentWallet() public {
        uint256 agentId = _register();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.NotAgentManager.selector, agentId, stranger));
        registry.unsetAgentWallet(agentId);

        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(agentId, "agentWallet", "agentWallet", "");
        vm.prank(owner);
        registry.unsetAgentWallet(agentId);
        assertEq(registry.getAgentWallet(agentId), address(0));

        vm.recordLogs();
        vm.prank(owner);
        registry.unsetAgentWallet(agentId);
        assertEq(vm.getRecordedLogs().length, 0, "clearing an unset wallet changes nothing");
    }
}

/// @dev Under the CI profile each fuzz test runs 2,500 cases (forge-config lines), fewer than the
/// profile's default, to keep the CI suite's run time bounded.
contract IdentityFuzzTest is IdentityBase {
    /// forge-config: ci.fuzz.runs = 2500
    function testFuzz_walletProof_acceptedExactlyInsideTheWindow(uint256 key, uint256 deadline, uint256 agentSeed)
        public
    {
        key = bound(key, 1, 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140);
        deadline = bound(deadline, START - 1000, START + 1000);
        uint256 agentId = _register();
        if (agentSeed % 2 == 1) {
            vm.prank(stranger);
            agentId = registry.register();
        }
        address agentOwner = registry.ownerOf(agentId);
        address newWallet = vm.addr(key);
        bytes memory proof = _proof(key, agentId, newWallet, agentOwner, deadline);
        vm.prank(agentOwner);
        if (deadline < START) {
            vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.WalletProofExpired.selector, deadline));
        } else if (deadline > START + 300) {
            vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.WalletProofDeadlineTooFar.selector, deadline));
        }
        registry.setAgentWallet(agentId, newWallet, deadline, proof);
        address expected = deadline < START || deadline > START + 300 ? agentOwner : newWallet;
        assertEq(registry.getAgentWallet(agentId), expected);
    }

    /// forge-config: ci.fuzz.runs = 2500
    function testFuzz_walletProof_randomSignaturesNeverPass(bytes32 r, bytes32 s, uint8 v, address newWallet) public {
        vm.assume(newWallet != address(0) && newWallet.code.length == 0);
        uint256 agentId = _register();
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, newWallet));
        registry.setAgentWallet(agentId, newWallet, START, abi.encodePacked(r, s, v));
    }

    /// forge-config: ci.fuzz.runs = 2500
    function testFuzz_walletProof_otherKeysNeverPass(uint256 signerKey, uint256 walletKeySeed) public {
        signerKey = bound(signerKey, 1, 2 ** 128);
        uint256 newWalletKey = bound(walletKeySeed, 1, 2 ** 128);
        vm.assume(signerKey != newWalletKey);
        uint256 agentId = _register();
        address newWallet = vm.addr(newWalletKey);
        bytes memory proof = _proof(signerKey, agentId, newWallet, owner, START);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, newWallet));
        registry.setAgentWallet(agentId, newWallet, START, proof);
    }

    /// forge-config: ci.fuzz.runs = 2500
    function testFuzz_metadata_roundTrip(string calldata key, bytes calldata value) public {
        uint256 agentId = _register();
        vm.prank(owner);
        if (keccak256(bytes(key)) == keccak256("agentWallet")) {
            vm.expectRevert(IdentityRegistry.ReservedMetadataKey.selector);
            registry.setMetadata(agentId, key, value);
            return;
        }
        registry.setMetadata(agentId, key, value);
        assertEq(registry.getMetadata(agentId, key), value);
        assertEq(registry.getAgentWallet(agentId), owner, "metadata never moves the wallet");
    }
}
