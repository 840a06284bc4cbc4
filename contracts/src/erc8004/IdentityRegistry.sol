// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @title ERC-8004 identity registry
/// @notice Every agent is an ERC-721 token: its id is the agentId, its owner owns the agent, and its
/// token URI (the agentURI) names the agent's registration file. Owners and their approved
/// operators manage the URI and free-form on-chain metadata. The reserved `agentWallet` entry says
/// where the agent is paid; it starts as the registering address, changes only with an EIP-712
/// signature from the new wallet (ERC-1271 for contract wallets), and is cleared on transfer.
/// @dev agentIds start at 1, so 0 never names an agent. The wallet proof is the typed message
/// `AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)` in the
/// domain ("ERC8004IdentityRegistry", "1", chainId, this contract), the same message the public
/// ERC-8004 deployments check, so one signer serves both. It carries no nonce: binding it to the
/// current owner and to a deadline at most `MAX_WALLET_PROOF_TTL` ahead bounds any replay to that
/// owner, that wallet and those few minutes.
contract IdentityRegistry is ERC721URIStorage, EIP712 {
    /// @notice One `register` metadata entry.
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    /// @notice EIP-712 type hash of the wallet's consent to be an agent's wallet.
    bytes32 public constant AGENT_WALLET_SET_TYPEHASH =
        keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)");

    /// @notice Metadata key reserved for the verified wallet (readable, never set through metadata).
    string public constant AGENT_WALLET_KEY = "agentWallet";

    /// @notice Longest time a wallet proof may stay valid after it is submitted.
    uint256 public constant MAX_WALLET_PROOF_TTL = 5 minutes;

    bytes32 private constant _AGENT_WALLET_KEY_HASH = keccak256("agentWallet");

    uint256 private _lastAgentId;
    mapping(uint256 agentId => mapping(string metadataKey => bytes metadataValue)) private _metadata;
    mapping(uint256 agentId => address wallet) private _agentWallet;

    /// @notice A new agent was minted to `owner` with `agentURI` (empty when set later).
    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    /// @notice A metadata entry changed; `agentWallet` changes are reported here too (20 bytes, or
    /// empty when cleared), with the value `getMetadata` returns afterwards.
    event MetadataSet(
        uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue
    );
    /// @notice `updatedBy` (the owner or an approved operator) changed the agent's URI.
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);

    /// @notice `caller` is neither the owner of `agentId` nor approved for it.
    error NotAgentManager(uint256 agentId, address caller);
    /// @notice `agentWallet` can only change through `setAgentWallet`, `unsetAgentWallet` or a transfer.
    error ReservedMetadataKey();
    /// @notice The zero address cannot be a wallet; `unsetAgentWallet` clears it.
    error ZeroWallet();
    /// @notice The wallet proof's deadline has passed.
    error WalletProofExpired(uint256 deadline);
    /// @notice The wallet proof's deadline is further ahead than `MAX_WALLET_PROOF_TTL`.
    error WalletProofDeadlineTooFar(uint256 deadline);
    /// @notice The signature is not `newWallet`'s consent for this agent, owner and deadline.
    error InvalidWalletSignature(address newWallet);

    constructor() ERC721("ERC-8004 Agent", "AGENT") EIP712("ERC8004IdentityRegistry", "1") {}

    // ------------------------------------------------------------------------------------------
    // Registration
    // ------------------------------------------------------------------------------------------

    /// @notice Mints a new agent to the caller without a URI (set it later with `setAgentURI`).
    /// @return agentId The new agent's id.
    function register() external returns (uint256 agentId) {
        agentId = _mintAgent("");
        emit Registered(agentId, "", msg.sender);
    }

    /// @notice Mints a new agent to the caller whose registration file is at `agentURI`.
    /// @param agentURI The registration file's URI (any scheme, including `data:`).
    /// @return agentId The new agent's id.
    function register(string calldata agentURI) external returns (uint256 agentId) {
        agentId = _mintAgent(agentURI);
        emit Registered(agentId, agentURI, msg.sender);
    }

    /// @notice Mints a new agent to the caller with a URI and on-chain metadata entries.
    /// @dev Entries are written in order, so a repeated key keeps its last value. `agentWallet` is
    /// refused: it starts as the caller's address.
    /// @param agentURI The registration file's URI.
    /// @param metadata Key/value pairs to store; emits one `MetadataSet` each.
    /// @return agentId The new agent's id.
    function register(string calldata agentURI, MetadataEntry[] calldata metadata) external returns (uint256 agentId) {
        agentId = _mintAgent(agentURI);
        for (uint256 i; i < metadata.length; ++i) {
            _writeMetadata(agentId, metadata[i].metadataKey, metadata[i].metadataValue);
        }
        emit Registered(agentId, agentURI, msg.sender);
    }

    /// @dev Mints with `_mint`, not `_safeMint`: the recipient is the caller, who asked for the
    /// token, and no receiver hook means no call out of this contract during registration. Events
    /// come in the order the spec lists: Transfer, the wallet's MetadataSet, then (in the caller)
    /// the entries' MetadataSet and Registered.
    function _mintAgent(string memory agentURI) private returns (uint256 agentId) {
        agentId = ++_lastAgentId;
        _mint(msg.sender, agentId);
        if (bytes(agentURI).length != 0) {
            _setTokenURI(agentId, agentURI);
        }
        _agentWallet[agentId] = msg.sender;
        emit MetadataSet(agentId, AGENT_WALLET_KEY, AGENT_WALLET_KEY, abi.encodePacked(msg.sender));
    }

    // ------------------------------------------------------------------------------------------
    // URI and metadata
    // ------------------------------------------------------------------------------------------

    /// @notice Points the agent at a new registration file.
    /// @param agentId The agent; the caller must own it or be approved for it.
    /// @param newURI The new URI (empty clears it).
    function setAgentURI(uint256 agentId, string calldata newURI) external {
        _requireManager(agentId);
        _setTokenURI(agentId, newURI);
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    /// @notice Stores `metadataValue` under `metadataKey` for the agent.
    /// @param agentId The agent; the caller must own it or be approved for it.
    /// @param metadataKey Any key except `agentWallet`.
    /// @param metadataValue The value (empty deletes the entry).
    function setMetadata(uint256 agentId, string calldata metadataKey, bytes calldata metadataValue) external {
        _requireManager(agentId);
        _writeMetadata(agentId, metadataKey, metadataValue);
    }

    /// @notice The value stored under `metadataKey`; for `agentWallet`, the wallet's 20 bytes (empty
    /// when unset).
    /// @param agentId An existing agent (reverts with `ERC721NonexistentToken` otherwise).
    /// @param metadataKey The key.
    /// @return The stored bytes, empty when nothing is stored.
    function getMetadata(uint256 agentId, string calldata metadataKey) external view returns (bytes memory) {
        _requireOwned(agentId);
        if (keccak256(bytes(metadataKey)) == _AGENT_WALLET_KEY_HASH) {
            return _walletBytes(_agentWallet[agentId]);
        }
        return _metadata[agentId][metadataKey];
    }

    function _writeMetadata(uint256 agentId, string calldata metadataKey, bytes calldata metadataValue) private {
        if (keccak256(bytes(metadataKey)) == _AGENT_WALLET_KEY_HASH) revert ReservedMetadataKey();
        _metadata[agentId][metadataKey] = metadataValue;
        emit MetadataSet(agentId, metadataKey, metadataKey, metadataValue);
    }

    // ------------------------------------------------------------------------------------------
    // Agent wallet
    // ------------------------------------------------------------------------------------------

    /// @notice Makes `newWallet` the agent's wallet, with `newWallet`'s signature as proof of consent.
    /// @param agentId The agent; the caller must own it or be approved for it.
    /// @param newWallet The wallet (an EOA, or a contract answering ERC-1271).
    /// @param deadline Last second (block time) the proof is good for, at most `MAX_WALLET_PROOF_TTL`
    /// from now.
    /// @param signature `newWallet`'s signature over `walletProofDigest(agentId, newWallet, owner,
    /// deadline)`, where owner is the agent's current owner: 65-byte ECDSA r | s | v (low s) for
    /// an EOA, whatever its `isValidSignature` accepts for a contract wallet.
    function setAgentWallet(uint256 agentId, address newWallet, uint256 deadline, bytes calldata signature) external {
        address owner = _requireManager(agentId);
        if (newWallet == address(0)) revert ZeroWallet();
        if (block.timestamp > deadline) revert WalletProofExpired(deadline);
        if (deadline > block.timestamp + MAX_WALLET_PROOF_TTL) revert WalletProofDeadlineTooFar(deadline);
        // Last: it is the most expensive check, and for a contract wallet a (static) call out.
        bytes32 digest = walletProofDigest(agentId, newWallet, owner, deadline);
        if (!SignatureChecker.isValidSignatureNowCalldata(newWallet, digest, signature)) {
            revert InvalidWalletSignature(newWallet);
        }
        _agentWallet[agentId] = newWallet;
        emit MetadataSet(agentId, AGENT_WALLET_KEY, AGENT_WALLET_KEY, abi.encodePacked(newWallet));
    }

    /// @notice Clears the agent's wallet (it reads as the zero address until set again).
    /// @param agentId The agent; the caller must own it or be approved for it.
    function unsetAgentWallet(uint256 agentId) external {
        _requireManager(agentId);
        _clearWallet(agentId);
    }

    /// @notice The agent's verified wallet, or the zero address when none is set.
    /// @param agentId An existing agent (reverts with `ERC721NonexistentToken` otherwise).
    /// @return The wallet.
    function getAgentWallet(uint256 agentId) external view returns (address) {
        _requireOwned(agentId);
        return _agentWallet[agentId];
    }

    /// @notice The EIP-712 digest a wallet signs to become `agentId`'s wallet under `owner`.
    /// @param agentId The agent.
    /// @param newWallet The wallet that signs.
    /// @param owner The agent's owner when the proof is submitted.
    /// @param deadline Last second the proof is good for.
    /// @return The digest.
    function walletProofDigest(uint256 agentId, address newWallet, address owner, uint256 deadline)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(AGENT_WALLET_SET_TYPEHASH, agentId, newWallet, owner, deadline)));
    }

    /// @notice Id of the most recently registered agent (0 before the first).
    /// @return The id.
    function lastAgentId() external view returns (uint256) {
        return _lastAgentId;
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    /// @dev A new owner has not proved anything about the old wallet, so a transfer clears it.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address from) {
        from = super._update(to, tokenId, auth);
        if (from != address(0)) {
            _clearWallet(tokenId);
        }
    }

    function _clearWallet(uint256 agentId) private {
        if (_agentWallet[agentId] == address(0)) return;
        delete _agentWallet[agentId];
        emit MetadataSet(agentId, AGENT_WALLET_KEY, AGENT_WALLET_KEY, "");
    }

    /// @dev Reverts unless the caller owns `agentId` or is approved for it; returns the owner.
    function _requireManager(uint256 agentId) private view returns (address owner) {
        owner = _requireOwned(agentId);
        if (!_isAuthorized(owner, msg.sender, agentId)) revert NotAgentManager(agentId, msg.sender);
    }

    function _walletBytes(address wallet) private pure returns (bytes memory) {
        return wallet == address(0) ? bytes("") : abi.encodePacked(wallet);
    }
}
