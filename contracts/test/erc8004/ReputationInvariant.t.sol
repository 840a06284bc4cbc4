// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {IdentityRegistry} from "../../src/erc8004/IdentityRegistry.sol";
import {ReputationRegistry} from "../../src/erc8004/ReputationRegistry.sol";

/// @dev Drives the reputation registry with feedback from four clients on two agents (any value,
/// decimals 0-18, three tags), revocations (first and repeated), responses and attempts by an
/// agent's owner to rate itself. Ghost books count given, live and per-tag feedback and responses.
contract ReputationHandler is Test {
    IdentityRegistry public immutable identity;
    ReputationRegistry public immutable reputation;

    address[2] internal agentOwners = [address(0xA6E1), address(0xA6E2)];
    uint256[2] public agentIds;
    address[4] internal clients = [address(0xC1), address(0xC2), address(0xC3), address(0xC4)];
    string[3] internal tags = ["", "starred", "uptime"];

    struct Entry {
        uint8 agent;
        uint8 client;
        uint8 tag;
        uint64 feedbackIndex;
        bool revoked;
    }

    Entry[] internal entries;
    mapping(uint256 agent => uint256) public givenTo;
    mapping(uint256 agent => uint256) public liveFor;
    mapping(uint256 agent => mapping(uint256 tag => uint256)) public liveTagged;
    mapping(uint256 agent => uint256) public responsesTo;
    bool public refusalBypassed;

    constructor(IdentityRegistry identity_, ReputationRegistry reputation_) {
        identity = identity_;
        reputation = reputation_;
        for (uint256 a; a < 2; ++a) {
            vm.prank(agentOwners[a]);
            agentIds[a] = identity.register("ipfs://agent");
        }
    }

    function clientList() external view returns (address[] memory list) {
        list = new address[](clients.length);
        for (uint256 i; i < clients.length; ++i) {
            list[i] = clients[i];
        }
    }

    function tag(uint256 i) external view returns (string memory) {
        return tags[i];
    }

    function give(uint256 agentSeed, uint256 clientSeed, int128 value, uint256 decimalsSeed, uint256 tagSeed) external {
        uint8 agent = uint8(agentSeed % 2);
        uint8 client = uint8(clientSeed % clients.length);
        uint8 tagIndex = uint8(tagSeed % tags.length);
        vm.prank(clients[client]);
        reputation.giveFeedback(
            agentIds[agent],
            value,
            uint8(bound(decimalsSeed, 0, 18)),
            tags[tagIndex],
            tags[(tagIndex + 1) % 3],
            "",
            "",
            0
        );
        entries.push(
            Entry({
                agent: agent,
                client: client,
                tag: tagIndex,
                feedbackIndex: reputation.getLastIndex(agentIds[agent], clients[client]),
                revoked: false
            })
        );
        ++givenTo[agent];
        ++liveFor[agent];
        ++liveTagged[agent][tagIndex];
    }

    function revoke(uint256 entrySeed) external {
        if (entries.length == 0) return;
        Entry storage entry = entries[entrySeed % entries.length];
        uint256 agentId = agentIds[entry.agent];
        vm.prank(clients[entry.client]);
        if (entry.revoked) {
            try reputation.revokeFeedback(agentId, entry.feedbackIndex) {
                refusalBypassed = true;
            } catch {}
            return;
        }
        reputation.revokeFeedback(agentId, entry.feedbackIndex);
        entry.revoked = true;
        --liveFor[entry.agent];
        --liveTagged[entry.agent][entry.tag];
    }

    function respond(uint256 entrySeed, uint256 responderSeed) external {
        if (entries.length == 0) return;
        Entry storage entry = entries[entrySeed % entries.length];
        vm.prank(address(uint160(0xE000 + responderSeed % 3)));
        reputation.appendResponse(agentIds[entry.agent], clients[entry.client], entry.feedbackIndex, "ipfs://r", 0);
        ++responsesTo[entry.agent];
    }

    function rateOwnAgent(uint256 agentSeed) external {
        uint256 agent = agentSeed % 2;
        vm.prank(agentOwners[agent]);
        try reputation.giveFeedback(agentIds[agent], 100, 0, "starred", "", "", "", 0) {
            refusalBypassed = true;
        } catch {}
    }
}

contract ReputationInvariantTest is Test {
    IdentityRegistry internal identity;
    ReputationRegistry internal reputation;
    ReputationHandler internal handler;

    function setUp() public {
        identity = new IdentityRegistry();
        reputation = new ReputationRegistry(address(identity));
        handler = new ReputationHandler(identity, reputation);
        targetContract(address(handler));
    }

    /// @dev One invariant function checks everything: forge runs a full campaign per invariant
    /// function, so splitting the checks would multiply the run time. The CI profile runs fewer
    /// campaigns here than its default, which is sized for the escrow's cheaper calls, to keep the
    /// CI suite's run time bounded.
    /// forge-config: ci.invariant.runs = 500
    function invariant_reputationBooks() public view {
        _summaryCountsLiveFeedback();
        _readsAgreeWithTheBooks();
        assertFalse(handler.refusalBypassed(), "a refused call went through");
    }

    /// @dev The summary counts exactly the non-revoked feedback, overall and per tag1.
    function _summaryCountsLiveFeedback() internal view {
        address[] memory clients = handler.clientList();
        for (uint256 a; a < 2; ++a) {
            uint256 agentId = handler.agentIds(a);
            (uint64 count,,) = reputation.getSummary(agentId, clients, "", "");
            assertEq(count, handler.liveFor(a));
            for (uint256 t = 1; t < 3; ++t) {
                (count,,) = reputation.getSummary(agentId, clients, handler.tag(t), "");
                assertEq(count, handler.liveTagged(a, t));
            }
        }
    }

    /// @dev Listing, numbering and responses agree with what was given.
    function _readsAgreeWithTheBooks() internal view {
        address[] memory clients = handler.clientList();
        for (uint256 a; a < 2; ++a) {
            uint256 agentId = handler.agentIds(a);
            (address[] memory all,,,,,,) = reputation.readAllFeedback(agentId, new address[](0), "", "", true);
            (address[] memory live,,,,,,) = reputation.readAllFeedback(agentId, new address[](0), "", "", false);
            assertEq(all.length, handler.givenTo(a));
            assertEq(live.length, handler.liveFor(a));
            uint256 numbered;
            for (uint256 c; c < clients.length; ++c) {
                numbered += reputation.getLastIndex(agentId, clients[c]);
            }
            assertEq(numbered, handler.givenTo(a));
            assertEq(reputation.getResponseCount(agentId, address(0), 0, new address[](0)), handler.responsesTo(a));
        }
    }
}
