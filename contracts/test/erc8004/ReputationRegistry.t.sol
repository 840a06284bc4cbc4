// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {IdentityRegistry} from "../../src/erc8004/IdentityRegistry.sol";
import {ReputationRegistry} from "../../src/erc8004/ReputationRegistry.sol";

/// @dev Shared fixture: an identity registry with one agent (a provider), a reputation registry
/// bound to it, and clients that rate the agent.
abstract contract ReputationBase is Test {
    IdentityRegistry internal identity;
    ReputationRegistry internal reputation;

    address internal provider = makeAddr("provider");
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");
    address internal carol = makeAddr("carol");
    uint256 internal agentId;

    function setUp() public virtual {
        identity = new IdentityRegistry();
        reputation = new ReputationRegistry(address(identity));
        vm.prank(provider);
        agentId = identity.register("https://provider.example/agent.json");
    }

    function _rate(address client, int128 value, uint8 decimals, string memory tag1, string memory tag2) internal {
        vm.prank(client);
        reputation.giveFeedback(agentId, value, decimals, tag1, tag2, "", "", bytes32(0));
    }

    function _clients(address a) internal pure returns (address[] memory list) {
        list = new address[](1);
        list[0] = a;
    }

    function _clients(address a, address b) internal pure returns (address[] memory list) {
        list = new address[](2);
        (list[0], list[1]) = (a, b);
    }

    function _clients(address a, address b, address c) internal pure returns (address[] memory list) {
        list = new address[](3);
        (list[0], list[1], list[2]) = (a, b, c);
    }
}

contract ReputationGiveTest is ReputationBase {
    function test_constructor_bindsTheIdentityRegistry() public {
        assertEq(reputation.getIdentityRegistry(), address(identity));
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.IdentityRegistryNotContract.selector, alice));
        new ReputationRegistry(alice);
    }

    function test_giveFeedback_storesEmitsAndNumbersPerClient() public {
        vm.expectEmit(true, true, true, true, address(reputation));
        emit ReputationRegistry.NewFeedback(
            agentId,
            alice,
            1,
            87,
            0,
            "starred",
            "starred",
            "meter",
            "mqtt://broker/catalog",
            "ipfs://fb",
            bytes32(uint256(7))
        );
        vm.prank(alice);
        reputation.giveFeedback(
            agentId, 87, 0, "starred", "meter", "mqtt://broker/catalog", "ipfs://fb", bytes32(uint256(7))
        );

        _rate(alice, 9977, 2, "uptime", "");
        _rate(bob, -32, 1, "tradingYield", "week");

        assertEq(reputation.getLastIndex(agentId, alice), 2);
        assertEq(reputation.getLastIndex(agentId, bob), 1);
        assertEq(reputation.getLastIndex(agentId, carol), 0);
        address[] memory clients = reputation.getClients(agentId);
        assertEq(clients.length, 2);
        assertEq(clients[0], alice);
        assertEq(clients[1], bob);

        (int128 value, uint8 decimals, string memory tag1, string memory tag2, bool revoked) =
            reputation.readFeedback(agentId, alice, 2);
        assertEq(value, 9977);
        assertEq(decimals, 2);
        assertEq(tag1, "uptime");
        assertEq(tag2, "");
        assertFalse(revoked);
        (value,,, tag2,) = reputation.readFeedback(agentId, bob, 1);
        assertEq(value, -32);
        assertEq(tag2, "week");
    }

    function test_giveFeedback_indexedTagIsTheTagHash() public {
        vm.recordLogs();
        _rate(alice, 1, 0, "reachable", "");
        assertEq(vm.getRecordedLogs()[0].topics[3], keccak256("reachable"));
    }

    function test_giveFeedback_refusesBadDecimalsAndUnknownAgents() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.InvalidValueDecimals.selector, 19));
        reputation.giveFeedback(agentId, 1, 19, "", "", "", "", bytes32(0));

        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.UnknownAgent.selector, 2));
        reputation.giveFeedback(2, 1, 0, "", "", "", "", bytes32(0));

        _rate(alice, 1, 18, "", "");
        assertEq(reputation.getLastIndex(agentId, alice), 1);
    }

    function test_giveFeedback_refusesTheOwnerAndItsOperators() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.SelfFeedback.selector, agentId, provider));
        reputation.giveFeedback(agentId, 100, 0, "", "", "", "", bytes32(0));

        vm.prank(provider);
        identity.approve(alice, agentId);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.SelfFeedback.selector, agentId, alice));
        reputation.giveFeedback(agentId, 100, 0, "", "", "", "", bytes32(0));

        vm.prank(provider);
        identity.setApprovalForAll(bob, true);
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.SelfFeedback.selector, agentId, bob));
        reputation.giveFeedback(agentId, 100, 0, "", "", "", "", bytes32(0));
    }

    function test_giveFeedback_followsOwnershipAcrossATransfer() public {
        vm.prank(provider);
        identity.transferFrom(provider, carol, agentId);
        _rate(provider, 10, 0, "", "");
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.SelfFeedback.selector, agentId, carol));
        reputation.giveFeedback(agentId, 100, 0, "", "", "", "", bytes32(0));
    }
}

contract ReputationRevokeAndRespondTest is ReputationBase {
    function test_revokeFeedback_marksItAndEmits() public {
        _rate(alice, 50, 0, "starred", "");
        vm.expectEmit(true, true, true, true, address(reputation));
        emit ReputationRegistry.FeedbackRevoked(agentId, alice, 1);
        vm.prank(alice);
        reputation.revokeFeedback(agentId, 1);
        (,,,, bool revoked) = reputation.readFeedback(agentId, alice, 1);
        assertTrue(revoked);
        assertEq(reputation.getLastIndex(agentId, alice), 1, "revoking keeps the numbering");
    }

    function test_revokeFeedback_refusesUnknownRepeatedAndForeign() public {
        _rate(alice, 50, 0, "", "");
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.UnknownFeedback.selector, agentId, alice, 0));
        reputation.revokeFeedback(agentId, 0);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.UnknownFeedback.selector, agentId, alice, 2));
        reputation.revokeFeedback(agentId, 2);
        reputation.revokeFeedback(agentId, 1);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.FeedbackAlreadyRevoked.selector, agentId, alice, 1));
        reputation.revokeFeedback(agentId, 1);
        vm.stopPrank();

        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.UnknownFeedback.selector, agentId, bob, 1));
        reputation.revokeFeedback(agentId, 1);
    }

    function test_appendResponse_countsAndEmits() public {
        _rate(alice, 10, 0, "", "");
        _rate(alice, 20, 0, "", "");
        _rate(bob, 30, 0, "", "");

        vm.expectEmit(true, true, true, true, address(reputation));
        emit ReputationRegistry.ResponseAppended(agentId, alice, 1, provider, "ipfs://refund", bytes32(0));
        vm.prank(provider);
        reputation.appendResponse(agentId, alice, 1, "ipfs://refund", bytes32(0));
        vm.prank(provider);
        reputation.appendResponse(agentId, alice, 1, "ipfs://refund-2", bytes32(0));
        vm.prank(carol);
        reputation.appendResponse(agentId, alice, 2, "https://spam.example/flag", keccak256("flag"));
        vm.prank(carol);
        reputation.appendResponse(agentId, bob, 1, "https://spam.example/flag", keccak256("flag"));

        address[] memory anyone = new address[](0);
        assertEq(reputation.getResponseCount(agentId, address(0), 0, anyone), 4);
        assertEq(reputation.getResponseCount(agentId, alice, 0, anyone), 3);
        assertEq(reputation.getResponseCount(agentId, alice, 1, anyone), 2);
        assertEq(reputation.getResponseCount(agentId, alice, 3, anyone), 0);
        assertEq(reputation.getResponseCount(agentId, address(0), 1, anyone), 3);
        assertEq(reputation.getResponseCount(agentId, address(0), 0, _clients(carol)), 2);
        assertEq(reputation.getResponseCount(agentId, alice, 0, _clients(provider)), 2);
        assertEq(reputation.getResponseCount(agentId, alice, 2, _clients(provider)), 0);
        assertEq(reputation.getResponseCount(agentId, address(0), 0, _clients(provider, carol)), 4);
        assertEq(reputation.getResponseCount(agentId + 1, address(0), 0, anyone), 0);
    }

    function test_appendResponse_refusesEmptyUriAndUnknownFeedback() public {
        _rate(alice, 10, 0, "", "");
        vm.expectRevert(ReputationRegistry.EmptyResponseURI.selector);
        reputation.appendResponse(agentId, alice, 1, "", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.UnknownFeedback.selector, agentId, alice, 2));
        reputation.appendResponse(agentId, alice, 2, "ipfs://r", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.UnknownFeedback.selector, agentId, bob, 1));
        reputation.appendResponse(agentId, bob, 1, "ipfs://r", bytes32(0));

        vm.prank(alice);
        reputation.revokeFeedback(agentId, 1);
        reputation.appendResponse(agentId, alice, 1, "ipfs://r", bytes32(0));
        assertEq(
            reputation.getResponseCount(agentId, alice, 1, new address[](0)), 1, "revoked feedback can be answered"
        );
    }
}

contract ReputationReadTest is ReputationBase {
    function _seed() internal {
        _rate(alice, 80, 0, "starred", "meter");
        _rate(alice, 9950, 2, "uptime", "");
        _rate(bob, 60, 0, "starred", "");
        _rate(bob, 100, 0, "starred", "meter");
        _rate(carol, 0, 0, "starred", "meter");
        vm.prank(bob);
        reputation.revokeFeedback(agentId, 2);
    }

    function test_readFeedback_refusesUnknownIndexes() public {
        _seed();
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.UnknownFeedback.selector, agentId, alice, 0));
        reputation.readFeedback(agentId, alice, 0);
        vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.UnknownFeedback.selector, agentId, alice, 3));
        reputation.readFeedback(agentId, alice, 3);
    }

    function test_readAllFeedback_filters() public {
        _seed();
        (address[] memory clients, uint64[] memory indexes, int128[] memory values,,,, bool[] memory revoked) =
            reputation.readAllFeedback(agentId, new address[](0), "", "", false);
        assertEq(clients.length, 4, "revoked omitted");
        assertEq(clients[0], alice);
        assertEq(indexes[1], 2);
        assertEq(values[1], 9950);
        assertEq(clients[2], bob);
        assertEq(clients[3], carol);
        assertFalse(revoked[2]);

        (clients, indexes,,,,, revoked) = reputation.readAllFeedback(agentId, new address[](0), "", "", true);
        assertEq(clients.length, 5);
        assertEq(clients[3], bob);
        assertEq(indexes[3], 2);
        assertTrue(revoked[3]);

        string[] memory tag1s;
        string[] memory tag2s;
        uint8[] memory decimals;
        (clients,, values, decimals, tag1s, tag2s,) =
            reputation.readAllFeedback(agentId, _clients(carol, alice, carol), "starred", "meter", true);
        assertEq(clients.length, 2, "client order as given, repeats once");
        assertEq(clients[0], carol);
        assertEq(clients[1], alice);
        assertEq(values[1], 80);
        assertEq(decimals[1], 0);
        assertEq(tag1s[0], "starred");
        assertEq(tag2s[0], "meter");

        (clients,,,,,,) = reputation.readAllFeedback(agentId, _clients(bob), "", "meter", true);
        assertEq(clients.length, 1);
        (clients,,,,,,) = reputation.readAllFeedback(agentId, _clients(bob), "", "meter", false);
        assertEq(clients.length, 0);
        (clients,,,,,,) = reputation.readAllFeedback(agentId + 1, new address[](0), "", "", true);
        assertEq(clients.length, 0);
    }

    function test_getSummary_needsClients() public {
        _seed();
        vm.expectRevert(ReputationRegistry.ClientAddressesRequired.selector);
        reputation.getSummary(agentId, new address[](0), "", "");
    }

    function test_getSummary_meanOfNonRevokedWithFilters() public {
        _seed();
        (uint64 count, int128 value, uint8 decimals) =
            reputation.getSummary(agentId, _clients(alice, bob, carol), "starred", "");
        assertEq(count, 3);
        assertEq(value, 46, "(80 + 60 + 0) / 3, truncated");
        assertEq(decimals, 0);

        (count, value, decimals) = reputation.getSummary(agentId, _clients(alice, bob, carol), "starred", "meter");
        assertEq(count, 2);
        assertEq(value, 40);

        (count, value, decimals) = reputation.getSummary(agentId, _clients(alice, alice), "", "");
        assertEq(count, 2, "a repeated client counts once");
        // 80.00 and 99.50 at the larger decimals: (8000 + 9950) / 2.
        assertEq(value, 8975);
        assertEq(decimals, 2);

        (count, value, decimals) = reputation.getSummary(agentId, _clients(carol), "uptime", "");
        assertEq(count, 0);
        assertEq(value, 0);
        assertEq(decimals, 0);
    }

    function test_getSummary_truncatesTowardZeroForNegatives() public {
        _rate(alice, -1, 0, "", "");
        _rate(bob, -2, 0, "", "");
        (, int128 value,) = reputation.getSummary(agentId, _clients(alice, bob), "", "");
        assertEq(value, -1, "-1.5 truncates to -1");
    }

    function test_getSummary_dropsDecimalsOnlyWhenTheMeanWouldOverflow() public {
        _rate(alice, type(int128).max, 0, "", "");
        _rate(bob, 1, 18, "", "");
        (uint64 count, int128 value, uint8 decimals) = reputation.getSummary(agentId, _clients(alice, bob), "", "");
        assertEq(count, 2);
        // Exact mean: (2^127 - 1 + 1e-18) / 2 ≈ 8.5e37. With 18 decimals it would need ~8.5e55, far
        // beyond int128, so decimals drop to 0.
        assertEq(decimals, 0);
        assertEq(value, type(int128).max / 2);

        _rate(carol, type(int128).min, 0, "", "");
        (, value, decimals) = reputation.getSummary(agentId, _clients(carol), "", "");
        assertEq(value, type(int128).min);
        assertEq(decimals, 0);
    }
}

/// @dev Under the CI profile each fuzz test runs 2,500 cases (forge-config lines), fewer than the
/// profile's default, to keep the CI suite's run time bounded.
contract ReputationFuzzTest is ReputationBase {
    /// forge-config: ci.fuzz.runs = 2500
    function testFuzz_giveFeedback_roundTripsAnyValueAndTags(
        int128 value,
        uint8 decimals,
        string calldata tag1,
        string calldata tag2
    ) public {
        vm.prank(alice);
        if (decimals > 18) {
            vm.expectRevert(abi.encodeWithSelector(ReputationRegistry.InvalidValueDecimals.selector, decimals));
            reputation.giveFeedback(agentId, value, decimals, tag1, tag2, "", "", bytes32(0));
            return;
        }
        reputation.giveFeedback(agentId, value, decimals, tag1, tag2, "", "", bytes32(0));
        (int128 storedValue, uint8 storedDecimals, string memory storedTag1, string memory storedTag2, bool revoked) =
            reputation.readFeedback(agentId, alice, 1);
        assertEq(storedValue, value);
        assertEq(storedDecimals, decimals);
        assertEq(storedTag1, tag1);
        assertEq(storedTag2, tag2);
        assertFalse(revoked);

        (uint64 count,,) = reputation.getSummary(agentId, _clients(alice), tag1, tag2);
        assertEq(count, 1, "its own tags always match");
        (count,,) = reputation.getSummary(agentId, _clients(alice), string.concat(tag1, "x"), "");
        assertEq(count, 0, "another tag1 never matches");
    }

    /// @dev Scores 0..100 with 0 decimals, the way nanotoll rates a provider: the summary is their
    /// integer mean.
    /// forge-config: ci.fuzz.runs = 2500
    function testFuzz_getSummary_scoresMean(uint8[6] calldata scores, uint8 used) public {
        used = uint8(bound(used, 1, 6));
        address[] memory raters = new address[](used);
        int256 sum;
        for (uint256 i; i < used; ++i) {
            raters[i] = address(uint160(0x5000 + i));
            int128 score = int128(uint128(bound(scores[i], 0, 100)));
            _rate(raters[i], score, 0, "starred", "");
            sum += score;
        }
        (uint64 count, int128 value, uint8 decimals) = reputation.getSummary(agentId, raters, "starred", "");
        assertEq(count, used);
        assertEq(int256(value), sum / int256(uint256(used)));
        assertEq(decimals, 0);
    }

    /// @dev Mixed decimals: the summary equals the mean taken at the largest decimals, computed here
    /// independently in int256.
    /// forge-config: ci.fuzz.runs = 2500
    function testFuzz_getSummary_mixedDecimals(int64[4] calldata values, uint8[4] calldata decimalSeeds) public {
        address[] memory raters = new address[](4);
        uint8 maxDecimals;
        for (uint256 i; i < 4; ++i) {
            raters[i] = address(uint160(0x6000 + i));
            uint8 d = uint8(bound(decimalSeeds[i], 0, 18));
            if (d > maxDecimals) maxDecimals = d;
            _rate(raters[i], values[i], d, "", "");
        }
        int256 sum;
        for (uint256 i; i < 4; ++i) {
            (int128 v, uint8 d,,,) = reputation.readFeedback(agentId, raters[i], 1);
            sum += int256(v) * int256(10 ** uint256(maxDecimals - d));
        }
        (uint64 count, int128 value, uint8 decimals) = reputation.getSummary(agentId, raters, "", "");
        assertEq(count, 4);
        // |int64| * 10^18 / 4 fits int128, so no decimals are ever dropped here.
        assertEq(decimals, maxDecimals);
        assertEq(int256(value), sum / 4);
    }
}
