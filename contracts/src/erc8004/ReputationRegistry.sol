// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";

/// @title ERC-8004 reputation registry
/// @notice Clients rate agents of one identity registry. A feedback is a signed fixed-point value
/// (`value` with `valueDecimals` decimals, for example a 0-100 score with 0 decimals), two optional
/// tags, and an endpoint, a URI and a hash that are only emitted. Each client numbers its own
/// feedback for an agent from 1; it may revoke any of it; anyone may append responses to it.
/// @dev The identity registry is fixed at construction and used through ERC-721 calls only
/// (`ownerOf`, `getApproved`, `isApprovedForAll`), so this registry works beside any ERC-8004
/// identity registry. Reads walk storage and are meant for `eth_call`; their cost grows with the
/// feedback they scan, which the client filter of `getSummary` bounds.
contract ReputationRegistry {
    /// @notice Largest `valueDecimals` a feedback may carry.
    uint8 public constant MAX_VALUE_DECIMALS = 18;

    /// @dev value, valueDecimals and isRevoked share the first slot.
    struct Feedback {
        int128 value;
        uint8 valueDecimals;
        bool isRevoked;
        string tag1;
        string tag2;
    }

    /// @dev The columns `readAllFeedback` returns, gathered in memory to keep the stack shallow.
    struct FeedbackColumns {
        address[] clients;
        uint64[] feedbackIndexes;
        int128[] values;
        uint8[] valueDecimals;
        string[] tag1s;
        string[] tag2s;
        bool[] revokedStatuses;
    }

    /// @dev `NewFeedback`'s fields gathered in memory: eleven arguments (five of them calldata
    /// strings) do not fit the legacy code generator's stack in one function.
    struct NewFeedbackLog {
        uint256 agentId;
        uint64 feedbackIndex;
        int128 value;
        uint8 valueDecimals;
        string tag1;
        string tag2;
        string endpoint;
        string feedbackURI;
        bytes32 feedbackHash;
    }

    IERC721 private immutable _identityRegistry;

    /// @dev Feedback `i` (1-based) of a client for an agent is element `i - 1`.
    mapping(uint256 agentId => mapping(address client => Feedback[])) private _feedback;
    /// @dev Every client that ever rated the agent, in order of its first feedback.
    mapping(uint256 agentId => address[]) private _clients;
    mapping(uint256 agentId => mapping(address client => mapping(uint64 feedbackIndex => uint64))) private
        _responseCount;
    mapping(
        uint256 agentId
            => mapping(address client => mapping(uint64 feedbackIndex => mapping(address responder => uint64)))
    ) private _responseCountBy;

    /// @notice `clientAddress` rated `agentId`; its `feedbackIndex`-th feedback for this agent.
    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        int128 value,
        uint8 valueDecimals,
        string indexed indexedTag1,
        string tag1,
        string tag2,
        string endpoint,
        string feedbackURI,
        bytes32 feedbackHash
    );
    /// @notice `clientAddress` withdrew its feedback `feedbackIndex` for `agentId`.
    event FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex);
    /// @notice `responder` answered `clientAddress`'s feedback `feedbackIndex` for `agentId`.
    event ResponseAppended(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        address indexed responder,
        string responseURI,
        bytes32 responseHash
    );

    /// @notice The identity registry address holds no code.
    error IdentityRegistryNotContract(address identityRegistry);
    /// @notice No agent with this id exists in the identity registry.
    error UnknownAgent(uint256 agentId);
    /// @notice The agent's owner and its approved operators may not rate the agent.
    error SelfFeedback(uint256 agentId, address caller);
    /// @notice `valueDecimals` is above `MAX_VALUE_DECIMALS`.
    error InvalidValueDecimals(uint8 valueDecimals);
    /// @notice The client has no feedback with this index for this agent.
    error UnknownFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex);
    /// @notice The feedback was revoked already.
    error FeedbackAlreadyRevoked(uint256 agentId, address clientAddress, uint64 feedbackIndex);
    /// @notice A response needs a URI.
    error EmptyResponseURI();
    /// @notice `getSummary` needs at least one client: an unfiltered average invites Sybil ratings.
    error ClientAddressesRequired();

    /// @param identityRegistry_ The ERC-8004 identity registry whose agents are rated here.
    constructor(address identityRegistry_) {
        if (identityRegistry_.code.length == 0) revert IdentityRegistryNotContract(identityRegistry_);
        _identityRegistry = IERC721(identityRegistry_);
    }

    /// @notice The identity registry whose agents this registry rates.
    /// @return identityRegistry Its address.
    function getIdentityRegistry() external view returns (address identityRegistry) {
        return address(_identityRegistry);
    }

    // ------------------------------------------------------------------------------------------
    // Writes
    // ------------------------------------------------------------------------------------------

    /// @notice Records the caller's feedback for `agentId`.
    /// @param agentId An agent of the identity registry, not owned by the caller nor managed by it.
    /// @param value The signed fixed-point rating.
    /// @param valueDecimals Decimals of `value`, 0 to 18.
    /// @param tag1 Optional tag (stored, filterable, indexed in the event).
    /// @param tag2 Optional second tag (stored, filterable).
    /// @param endpoint Optional URI of the endpoint that was used (emitted only).
    /// @param feedbackURI Optional URI of an off-chain feedback file (emitted only).
    /// @param feedbackHash Optional keccak256 of that file (emitted only; zero for content-addressed URIs).
    function giveFeedback(
        uint256 agentId,
        int128 value,
        uint8 valueDecimals,
        string calldata tag1,
        string calldata tag2,
        string calldata endpoint,
        string calldata feedbackURI,
        bytes32 feedbackHash
    ) external {
        if (valueDecimals > MAX_VALUE_DECIMALS) revert InvalidValueDecimals(valueDecimals);
        _requireNotManager(agentId);

        uint64 feedbackIndex = _store(agentId, value, valueDecimals, tag1, tag2);
        NewFeedbackLog memory log;
        log.agentId = agentId;
        log.feedbackIndex = feedbackIndex;
        log.value = value;
        log.valueDecimals = valueDecimals;
        log.tag1 = tag1;
        log.tag2 = tag2;
        log.endpoint = endpoint;
        log.feedbackURI = feedbackURI;
        log.feedbackHash = feedbackHash;
        _emitNewFeedback(log);
    }

    /// @notice Withdraws one of the caller's feedback (it stays readable, marked revoked, and stops
    /// counting in `getSummary`).
    /// @param agentId The rated agent.
    /// @param feedbackIndex The caller's feedback index for this agent (1-based).
    function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external {
        Feedback storage feedback = _storedFeedback(agentId, msg.sender, feedbackIndex);
        if (feedback.isRevoked) revert FeedbackAlreadyRevoked(agentId, msg.sender, feedbackIndex);
        feedback.isRevoked = true;
        emit FeedbackRevoked(agentId, msg.sender, feedbackIndex);
    }

    /// @notice Attaches the caller's response (a refund notice, a spam flag...) to a feedback.
    /// Anyone may respond, any number of times; revoked feedback may be answered too.
    /// @param agentId The rated agent.
    /// @param clientAddress The client that gave the feedback.
    /// @param feedbackIndex That client's feedback index (1-based).
    /// @param responseURI URI of the response (required).
    /// @param responseHash keccak256 of the response file (zero for content-addressed URIs).
    function appendResponse(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        string calldata responseURI,
        bytes32 responseHash
    ) external {
        if (bytes(responseURI).length == 0) revert EmptyResponseURI();
        _storedFeedback(agentId, clientAddress, feedbackIndex);
        ++_responseCount[agentId][clientAddress][feedbackIndex];
        ++_responseCountBy[agentId][clientAddress][feedbackIndex][msg.sender];
        emit ResponseAppended(agentId, clientAddress, feedbackIndex, msg.sender, responseURI, responseHash);
    }

    // ------------------------------------------------------------------------------------------
    // Reads
    // ------------------------------------------------------------------------------------------

    /// @notice Count and mean of the non-revoked feedback of the given clients, optionally only
    /// feedback whose tags match.
    /// @dev The mean is truncated toward zero and expressed with the largest `valueDecimals` among
    /// the feedback counted; only if that would not fit an int128 are decimals dropped until it
    /// does. A client listed twice counts once.
    /// @param agentId The agent.
    /// @param clientAddresses The clients whose feedback counts (at least one).
    /// @param tag1 Only feedback with this tag1 (empty: any).
    /// @param tag2 Only feedback with this tag2 (empty: any).
    /// @return count Feedback counted.
    /// @return summaryValue Their mean value (0 when none).
    /// @return summaryValueDecimals Decimals of `summaryValue`.
    function getSummary(uint256 agentId, address[] calldata clientAddresses, string calldata tag1, string calldata tag2)
        external
        view
        returns (uint64 count, int128 summaryValue, uint8 summaryValueDecimals)
    {
        if (clientAddresses.length == 0) revert ClientAddressesRequired();
        int256 sum18;
        (count, sum18, summaryValueDecimals) =
            _sum(agentId, _selectClients(agentId, clientAddresses), _filterHash(tag1), _filterHash(tag2));
        if (count == 0) return (0, 0, 0);
        // Truncating twice (by count, then by the decimals dropped) equals truncating once, because
        // every term was an exact multiple of 10^(18 - summaryValueDecimals).
        int256 mean = (sum18 / int256(uint256(count))) / _pow10(MAX_VALUE_DECIMALS - summaryValueDecimals);
        // With 0 decimals the mean lies between two int128 values, so this loop ends.
        while (mean > type(int128).max || mean < type(int128).min) {
            mean /= 10;
            --summaryValueDecimals;
        }
        // forge-lint: disable-next-line(unsafe-typecast) the loop above brought it into range
        summaryValue = int128(mean);
    }

    /// @dev Count, sum scaled to 18 decimals and largest decimals of the counted feedback. Every
    /// term is below 2^127 * 10^18 < 2^187, so 2^64 of them stay below 2^251: the sum cannot overflow.
    function _sum(uint256 agentId, address[] memory clients, bytes32 tag1Hash, bytes32 tag2Hash)
        private
        view
        returns (uint64 count, int256 sum18, uint8 maxDecimals)
    {
        for (uint256 c; c < clients.length; ++c) {
            Feedback[] storage given = _feedback[agentId][clients[c]];
            for (uint256 i; i < given.length; ++i) {
                Feedback storage feedback = given[i];
                if (feedback.isRevoked || !_tagsMatch(feedback, tag1Hash, tag2Hash)) continue;
                uint8 decimals = feedback.valueDecimals;
                sum18 += int256(feedback.value) * _pow10(MAX_VALUE_DECIMALS - decimals);
                if (decimals > maxDecimals) maxDecimals = decimals;
                ++count;
            }
        }
    }

    /// @notice One feedback.
    /// @param agentId The agent.
    /// @param clientAddress The client.
    /// @param feedbackIndex The client's feedback index for this agent (1-based; reverts with
    /// `UnknownFeedback` outside 1..getLastIndex).
    /// @return value The value.
    /// @return valueDecimals Its decimals.
    /// @return tag1 The first tag.
    /// @return tag2 The second tag.
    /// @return isRevoked Whether the client revoked it.
    function readFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        external
        view
        returns (int128 value, uint8 valueDecimals, string memory tag1, string memory tag2, bool isRevoked)
    {
        Feedback storage feedback = _storedFeedback(agentId, clientAddress, feedbackIndex);
        return (feedback.value, feedback.valueDecimals, feedback.tag1, feedback.tag2, feedback.isRevoked);
    }

    /// @notice Every feedback for `agentId` that passes the filters, client by client (in the order
    /// given, or of first feedback when no clients are given), each client's in index order.
    /// @param agentId The agent.
    /// @param clientAddresses Only these clients (empty: all; a client listed twice appears once).
    /// @param tag1 Only feedback with this tag1 (empty: any).
    /// @param tag2 Only feedback with this tag2 (empty: any).
    /// @param includeRevoked Whether revoked feedback is listed.
    /// @return clients The client of each row.
    /// @return feedbackIndexes Its feedback index.
    /// @return values Its value.
    /// @return valueDecimals Its decimals.
    /// @return tag1s Its first tag.
    /// @return tag2s Its second tag.
    /// @return revokedStatuses Whether it is revoked.
    function readAllFeedback(
        uint256 agentId,
        address[] memory clientAddresses,
        string memory tag1,
        string memory tag2,
        bool includeRevoked
    )
        external
        view
        returns (
            address[] memory clients,
            uint64[] memory feedbackIndexes,
            int128[] memory values,
            uint8[] memory valueDecimals,
            string[] memory tag1s,
            string[] memory tag2s,
            bool[] memory revokedStatuses
        )
    {
        FeedbackColumns memory rows = _collect(
            agentId, _selectClients(agentId, clientAddresses), _filterHash(tag1), _filterHash(tag2), includeRevoked
        );
        return (
            rows.clients,
            rows.feedbackIndexes,
            rows.values,
            rows.valueDecimals,
            rows.tag1s,
            rows.tag2s,
            rows.revokedStatuses
        );
    }

    /// @notice Number of responses appended to feedback of `agentId`.
    /// @param agentId The agent.
    /// @param clientAddress Only feedback of this client (zero address: all clients).
    /// @param feedbackIndex Only this feedback index (0: all of each client's feedback).
    /// @param responders Only responses by these addresses (empty: anyone's; listing an address
    /// twice counts its responses twice).
    /// @return count The number of responses.
    function getResponseCount(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        address[] calldata responders
    ) external view returns (uint64 count) {
        address[] memory clients;
        if (clientAddress == address(0)) {
            clients = _clients[agentId];
        } else {
            clients = new address[](1);
            clients[0] = clientAddress;
        }
        for (uint256 c; c < clients.length; ++c) {
            uint64 last = uint64(_feedback[agentId][clients[c]].length);
            if (feedbackIndex != 0) {
                if (feedbackIndex <= last) count += _responsesTo(agentId, clients[c], feedbackIndex, responders);
                continue;
            }
            for (uint64 index = 1; index <= last; ++index) {
                count += _responsesTo(agentId, clients[c], index, responders);
            }
        }
    }

    /// @notice Every client that has rated `agentId`, in order of its first feedback.
    /// @param agentId The agent.
    /// @return The clients.
    function getClients(uint256 agentId) external view returns (address[] memory) {
        return _clients[agentId];
    }

    /// @notice Number of feedback `clientAddress` has given `agentId` (its last index; 0 if none).
    /// @param agentId The agent.
    /// @param clientAddress The client.
    /// @return The last index.
    function getLastIndex(uint256 agentId, address clientAddress) external view returns (uint64) {
        return uint64(_feedback[agentId][clientAddress].length);
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    /// @dev Reverts unless `agentId` exists and the caller is neither its owner nor approved for it.
    /// The three calls are view calls (STATICCALL): the identity registry cannot re-enter.
    function _requireNotManager(uint256 agentId) private view {
        address owner;
        try _identityRegistry.ownerOf(agentId) returns (address agentOwner) {
            owner = agentOwner;
        } catch {
            revert UnknownAgent(agentId);
        }
        if (
            msg.sender == owner || _identityRegistry.getApproved(agentId) == msg.sender
                || _identityRegistry.isApprovedForAll(owner, msg.sender)
        ) revert SelfFeedback(agentId, msg.sender);
    }

    function _store(uint256 agentId, int128 value, uint8 valueDecimals, string calldata tag1, string calldata tag2)
        private
        returns (uint64 feedbackIndex)
    {
        Feedback[] storage given = _feedback[agentId][msg.sender];
        if (given.length == 0) {
            _clients[agentId].push(msg.sender);
        }
        // Pushed through the mapping rather than `given`: the same slot, and slither's
        // uninitialized-state detector does not see writes made through a storage pointer.
        _feedback[agentId][msg.sender].push(
            Feedback({value: value, valueDecimals: valueDecimals, isRevoked: false, tag1: tag1, tag2: tag2})
        );
        // A client would need 2^64 transactions to overflow this: the cast cannot truncate.
        feedbackIndex = uint64(given.length);
    }

    function _emitNewFeedback(NewFeedbackLog memory log) private {
        emit NewFeedback(
            log.agentId,
            msg.sender,
            log.feedbackIndex,
            log.value,
            log.valueDecimals,
            log.tag1,
            log.tag1,
            log.tag2,
            log.endpoint,
            log.feedbackURI,
            log.feedbackHash
        );
    }

    function _storedFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        private
        view
        returns (Feedback storage)
    {
        Feedback[] storage given = _feedback[agentId][clientAddress];
        if (feedbackIndex == 0 || feedbackIndex > given.length) {
            revert UnknownFeedback(agentId, clientAddress, feedbackIndex);
        }
        return given[feedbackIndex - 1];
    }

    function _responsesTo(uint256 agentId, address client, uint64 feedbackIndex, address[] calldata responders)
        private
        view
        returns (uint64 count)
    {
        if (responders.length == 0) return _responseCount[agentId][client][feedbackIndex];
        for (uint256 r; r < responders.length; ++r) {
            count += _responseCountBy[agentId][client][feedbackIndex][responders[r]];
        }
    }

    /// @dev The requested clients without repeats, or all of the agent's clients when none are given.
    function _selectClients(uint256 agentId, address[] memory requested)
        private
        view
        returns (address[] memory clients)
    {
        if (requested.length == 0) return _clients[agentId];
        clients = new address[](requested.length);
        uint256 kept;
        for (uint256 i; i < requested.length; ++i) {
            bool repeated;
            for (uint256 j; j < kept && !repeated; ++j) {
                repeated = clients[j] == requested[i];
            }
            if (!repeated) clients[kept++] = requested[i];
        }
        // Shrink the array to the clients kept (memory is not reused after this point).
        assembly ("memory-safe") {
            mstore(clients, kept)
        }
    }

    /// @dev Two passes over storage: count the rows, then fill arrays of exactly that length.
    function _collect(
        uint256 agentId,
        address[] memory clients,
        bytes32 tag1Hash,
        bytes32 tag2Hash,
        bool includeRevoked
    ) private view returns (FeedbackColumns memory rows) {
        uint256 total;
        for (uint256 c; c < clients.length; ++c) {
            Feedback[] storage given = _feedback[agentId][clients[c]];
            for (uint256 i; i < given.length; ++i) {
                if (_listed(given[i], tag1Hash, tag2Hash, includeRevoked)) ++total;
            }
        }
        rows = FeedbackColumns({
            clients: new address[](total),
            feedbackIndexes: new uint64[](total),
            values: new int128[](total),
            valueDecimals: new uint8[](total),
            tag1s: new string[](total),
            tag2s: new string[](total),
            revokedStatuses: new bool[](total)
        });
        uint256 row;
        for (uint256 c; c < clients.length; ++c) {
            Feedback[] storage given = _feedback[agentId][clients[c]];
            for (uint256 i; i < given.length; ++i) {
                Feedback storage feedback = given[i];
                if (!_listed(feedback, tag1Hash, tag2Hash, includeRevoked)) continue;
                rows.clients[row] = clients[c];
                // forge-lint: disable-next-line(unsafe-typecast) indexes are given one per transaction
                rows.feedbackIndexes[row] = uint64(i + 1);
                rows.values[row] = feedback.value;
                rows.valueDecimals[row] = feedback.valueDecimals;
                rows.tag1s[row] = feedback.tag1;
                rows.tag2s[row] = feedback.tag2;
                rows.revokedStatuses[row] = feedback.isRevoked;
                ++row;
            }
        }
    }

    function _listed(Feedback storage feedback, bytes32 tag1Hash, bytes32 tag2Hash, bool includeRevoked)
        private
        view
        returns (bool)
    {
        return (includeRevoked || !feedback.isRevoked) && _tagsMatch(feedback, tag1Hash, tag2Hash);
    }

    /// @dev A zero filter hash stands for "any tag" (an empty filter string).
    function _tagsMatch(Feedback storage feedback, bytes32 tag1Hash, bytes32 tag2Hash) private view returns (bool) {
        return (tag1Hash == 0 || keccak256(bytes(feedback.tag1)) == tag1Hash)
            && (tag2Hash == 0 || keccak256(bytes(feedback.tag2)) == tag2Hash);
    }

    function _pow10(uint8 exponent) private pure returns (int256) {
        return int256(10 ** uint256(exponent));
    }

    function _filterHash(string memory tag) private pure returns (bytes32) {
        return bytes(tag).length == 0 ? bytes32(0) : keccak256(bytes(tag));
    }
}
