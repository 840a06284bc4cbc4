// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {IdentityRegistry} from "../../src/erc8004/IdentityRegistry.sol";
import {KeyedSmartWallet} from "./mocks/KeyedSmartWallet.sol";

/// @dev Drives the identity registry with registrations, transfers, approvals, genuine wallet
/// proofs (EOA and ERC-1271, sent by owners or approved operators), forged ones (wrong key, stale
/// owner, other agent, expired), unsets and time jumps. Ghost books say which wallet each agent
/// should have and for which owner it was proven.
contract IdentityHandler is Test {
    IdentityRegistry public immutable registry;
    KeyedSmartWallet public immutable smartWallet;

    uint256 public constant MAX_AGENTS = 8;
    address[3] internal owners = [address(0xA11CE), address(0xB0B), address(0xCA201)];
    address internal constant OPERATOR = address(0x0BE7);
    uint256[3] internal walletKeys = [uint256(0x3001), 0x3002, 0x3003];
    uint256 internal constant SMART_WALLET_KEY = 0x3004;

    uint256[] public agents;
    mapping(uint256 agentId => address) public expectedWallet;
    /// @dev The owner the current wallet was proven for (the minter for the initial wallet).
    mapping(uint256 agentId => address) public provenFor;
    bool public forgeryAccepted;

    constructor(IdentityRegistry registry_) {
        registry = registry_;
        smartWallet = new KeyedSmartWallet(vm.addr(SMART_WALLET_KEY));
    }

    function agentCount() external view returns (uint256) {
        return agents.length;
    }

    function register(uint256 ownerSeed) external {
        if (agents.length >= MAX_AGENTS) return;
        address owner = owners[ownerSeed % owners.length];
        vm.prank(owner);
        uint256 agentId = registry.register("ipfs://agent");
        agents.push(agentId);
        expectedWallet[agentId] = owner;
        provenFor[agentId] = owner;
    }

    function transfer(uint256 agentSeed, uint256 toSeed) external {
        if (agents.length == 0) return;
        uint256 agentId = agents[agentSeed % agents.length];
        address from = registry.ownerOf(agentId);
        vm.prank(from);
        registry.transferFrom(from, owners[toSeed % owners.length], agentId);
        expectedWallet[agentId] = address(0);
        provenFor[agentId] = address(0);
    }

    function approveOperator(uint256 agentSeed) external {
        if (agents.length == 0) return;
        uint256 agentId = agents[agentSeed % agents.length];
        vm.prank(registry.ownerOf(agentId));
        registry.approve(OPERATOR, agentId);
    }

    function setWallet(uint256 agentSeed, uint256 walletSeed, uint256 ttl, bool viaOperator) external {
        if (agents.length == 0) return;
        uint256 agentId = agents[agentSeed % agents.length];
        address owner = registry.ownerOf(agentId);
        (address wallet, uint256 key) = _wallet(walletSeed);
        uint256 deadline = block.timestamp + bound(ttl, 0, registry.MAX_WALLET_PROOF_TTL());
        bytes memory proof = _proof(key, agentId, wallet, owner, deadline);
        address caller = viaOperator && registry.getApproved(agentId) == OPERATOR ? OPERATOR : owner;
        vm.prank(caller);
        registry.setAgentWallet(agentId, wallet, deadline, proof);
        expectedWallet[agentId] = wallet;
        provenFor[agentId] = owner;
    }

    function forgeWallet(uint256 agentSeed, uint256 walletSeed, uint256 how) external {
        if (agents.length == 0) return;
        uint256 agentId = agents[agentSeed % agents.length];
        address owner = registry.ownerOf(agentId);
        (address wallet, uint256 key) = _wallet(walletSeed);
        uint256 deadline = block.timestamp + 60;
        bytes memory proof;
        how %= 4;
        if (how == 0) {
            proof = _proof(key + 100, agentId, wallet, owner, deadline); // a key that is not the wallet's
        } else if (how == 1) {
            address other = owners[(_indexOf(owner) + 1) % owners.length];
            proof = _proof(key, agentId, wallet, other, deadline); // proven for another owner
        } else if (how == 2) {
            proof = _proof(key, agentId + MAX_AGENTS, wallet, owner, deadline); // for another agent
        } else {
            deadline = block.timestamp - 1; // expired, though correctly signed
            proof = _proof(key, agentId, wallet, owner, deadline);
        }
        vm.prank(owner);
        try registry.setAgentWallet(agentId, wallet, deadline, proof) {
            forgeryAccepted = true;
        } catch {}
    }

    function unsetWallet(uint256 agentSeed) external {
        if (agents.length == 0) return;
        uint256 agentId = agents[agentSeed % agents.length];
        vm.prank(registry.ownerOf(agentId));
        registry.unsetAgentWallet(agentId);
        expectedWallet[agentId] = address(0);
        provenFor[agentId] = address(0);
    }

    function wait(uint256 seconds_) external {
        vm.warp(block.timestamp + bound(seconds_, 1, 1 days));
    }

    function _wallet(uint256 seed) internal view returns (address wallet, uint256 key) {
        uint256 pick = seed % (walletKeys.length + 1);
        if (pick == walletKeys.length) return (address(smartWallet), SMART_WALLET_KEY);
        key = walletKeys[pick];
        wallet = vm.addr(key);
    }

    function _proof(uint256 key, uint256 agentId, address wallet, address owner, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, registry.walletProofDigest(agentId, wallet, owner, deadline));
        return abi.encodePacked(r, s, v);
    }

    function _indexOf(address owner) internal view returns (uint256 i) {
        while (owners[i] != owner) ++i;
    }
}

contract IdentityInvariantTest is Test {
    IdentityRegistry internal registry;
    IdentityHandler internal handler;

    function setUp() public {
        vm.warp(1_767_225_600);
        registry = new IdentityRegistry();
        handler = new IdentityHandler(registry);
        targetContract(address(handler));
    }

    /// @dev One invariant function checks everything: forge runs a full campaign per invariant
    /// function, so splitting the checks would multiply the run time. The CI profile runs fewer
    /// campaigns here than its default, which is sized for the escrow's cheaper calls, to keep the
    /// CI suite's run time bounded.
    /// forge-config: ci.invariant.runs = 1000
    function invariant_identityBooks() public view {
        _walletUnsetOrProvenForTheCurrentOwner();
        assertFalse(handler.forgeryAccepted(), "a forged wallet proof was accepted");
        _agentsNumberedFromOne();
    }

    /// @dev An agent's wallet is unset, or it was proven (or minted) for the agent's current owner.
    function _walletUnsetOrProvenForTheCurrentOwner() internal view {
        for (uint256 i; i < handler.agentCount(); ++i) {
            uint256 agentId = handler.agents(i);
            address wallet = registry.getAgentWallet(agentId);
            assertEq(wallet, handler.expectedWallet(agentId));
            if (wallet != address(0)) {
                assertEq(handler.provenFor(agentId), registry.ownerOf(agentId));
            }
            assertEq(
                registry.getMetadata(agentId, "agentWallet"),
                wallet == address(0) ? bytes("") : abi.encodePacked(wallet)
            );
        }
    }

    function _agentsNumberedFromOne() internal view {
        uint256 count = handler.agentCount();
        assertEq(registry.lastAgentId(), count);
        for (uint256 i; i < count; ++i) {
            assertEq(handler.agents(i), i + 1);
        }
    }
}
