// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title nanotoll prepaid channel escrow
/// @notice A payer locks an ERC-20 stablecoin in a channel for one device key (the signer) and one
/// payee. The device pays by signing EIP-712 `Voucher(uint32 channelId,uint64 cumulativeAmount)`
/// messages whose amount only grows; the payee (or anyone relaying for it) redeems the highest
/// voucher of many channels in one call and receives one aggregated transfer. After expiry the
/// payer takes back whatever was not redeemed.
/// @dev Wire format (docs/protocol.md, version 1): a voucher is 76 bytes, big-endian:
/// channelId u32 | cumulativeAmount u64 | r (32) | vs (32) where vs = yParity << 255 | s (EIP-2098).
/// `redeem` takes N such items back to back in one `bytes` argument, exactly as the gateway
/// received them.
///
/// Storage is laid out for the redeem path (see `_terms` and `_ledger`): per voucher it reads one
/// read-only slot of its own (signer, expiry, route) and one ledger slot that it shares with the
/// neighbouring channel id (paid and deposit of two channels). Channels opened together get
/// consecutive ids, so a batch over a fleet touches each ledger slot twice: once cold, once warm.
///
/// Time: a voucher pays while `block.timestamp < expiry`; the payer reclaims from `expiry` on.
/// Validators can skew the timestamp by seconds, which moves that boundary by as much and no more.
///
/// Tokens: plain ERC-20s, including ones that return nothing (SafeERC20). Fee-on-transfer and
/// other tokens whose balance moves by something other than the amount sent are refused when
/// funds come in (the balance delta is measured). Rebasing tokens are not supported: their
/// balance drifts away from the deposits this contract accounts for.
contract NanotollEscrow is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    // ------------------------------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------------------------------

    /// @notice EIP-712 type hash of `Voucher(uint32 channelId,uint64 cumulativeAmount)`.
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(uint32 channelId,uint64 cumulativeAmount)");

    /// @notice EIP-712 type hash of the provider-signed receipt (off-chain; exposed for tooling).
    bytes32 public constant RECEIPT_TYPEHASH =
        keccak256("Receipt(uint32 channelId,uint64 cumulativeAmount,bytes32 requestHash,bytes32 dataHash)");

    /// @notice Bytes per voucher in `redeem`'s packed argument.
    uint256 public constant VOUCHER_BYTES = 76;

    /// @notice Bytes per record in the `Redeemed` event's `items`: channelId u32 | cumulative u64 | amount u64.
    uint256 public constant REDEEMED_RECORD_BYTES = 20;

    /// @notice Largest number of vouchers one `redeem` call accepts.
    /// @dev Sized so that a batch stays below the 16,777,216 gas per-transaction cap of EIP-7825
    /// in the most expensive shapes this contract allows: every item on its own ledger slot (no
    /// warm neighbour), and either every item paying or every item failing at the last check
    /// (signature recovered, skip event emitted). `test_maxBatchFitsTransactionGasCap` measures
    /// about 13.35 million gas for 1,000 such items, base fee and calldata included, and fails
    /// above 90% of the cap.
    uint256 public constant MAX_REDEEM_BATCH = 1000;

    /// @notice Largest number of channels one `topUpMany` or `extendMany` call accepts.
    /// @dev A thousand channels keep either call well below the per-transaction gas cap of
    /// EIP-7825 (`test_fundingBatchesFitTransactionGasCap`).
    uint256 public constant MAX_FUNDING_BATCH = 1000;

    uint256 private constant _U64 = 0xffffffffffffffff;

    // ------------------------------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------------------------------

    /// @notice Why `redeem` passed over a voucher (see `VoucherSkipped`).
    enum SkipReason {
        UnknownChannel, // no channel has this id
        WrongRoute, // the channel pays another payee or in another token than this batch
        Expired, // block.timestamp >= expiry: the payer may reclaim, vouchers no longer pay
        Stale, // cumulative <= already paid: a replay or an older voucher
        OverDeposit, // cumulative > deposit: the device signed more than the channel holds
        BadSignature // malformed, high-s, or not signed by the channel's signer
    }

    /// @notice One channel of an `openMany` call (all funded by the caller in the same token).
    struct OpenParams {
        address signer;
        address payee;
        uint64 deposit;
        uint40 expiry;
    }

    /// @dev Read-only on the redeem path. 232 of 256 bits used; Solidity packs the members into
    /// one slot from the low bits up: signer [0,160), expiry [160,200), route [200,232).
    struct Terms {
        address signer;
        uint40 expiry;
        uint32 route;
    }

    /// @dev Touched only when funding, extending and reclaiming.
    struct Owner {
        address payer;
        bool closed;
    }

    /// @dev A (payee, token) pair. Channels name it by a 32-bit id so the redeem path compares
    /// one small integer per voucher instead of two addresses.
    struct Route {
        address payee;
        address token;
    }

    // ------------------------------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------------------------------

    /// @notice Id of the most recently opened channel (ids start at 1).
    uint32 public lastChannelId;

    /// @dev channel id => signer, expiry, route.
    mapping(uint256 channelId => Terms) private _terms;

    /// @dev channel id >> 1 => ledger word of two neighbouring channels. Channel `id` uses the
    /// 128-bit half starting at bit 128 * (id & 1): paid in the low 64 bits of that half, deposit
    /// in the high 64 bits. Sharing the slot halves the cold reads and the slot rewrites of a
    /// batch over consecutive channels (the second access to a slot is warm and already dirty).
    mapping(uint256 pairIndex => uint256) private _ledger;

    /// @dev channel id => payer and closed flag.
    mapping(uint256 channelId => Owner) private _owners;

    /// @notice Id of the most recently created route (ids start at 1; 0 means none).
    uint32 public lastRouteId;

    mapping(uint256 routeId => Route) private _routes;
    mapping(address payee => mapping(address token => uint32 routeId)) private _routeIds;

    // ------------------------------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------------------------------

    /// @notice A new (payee, token) route was registered by the first channel that used it.
    event RouteCreated(uint32 indexed route, address indexed payee, address indexed token);

    /// @notice A channel was opened and funded with `deposit`.
    event ChannelOpened(
        uint32 indexed channelId,
        address indexed payer,
        address indexed signer,
        uint32 route,
        uint64 deposit,
        uint40 expiry
    );

    /// @notice The payer added `amount`; `deposit` is the new total.
    event ChannelToppedUp(uint32 indexed channelId, uint64 amount, uint64 deposit);

    /// @notice The payer moved the expiry to `expiry`.
    event ExpiryExtended(uint32 indexed channelId, uint40 expiry);

    /// @notice One redeem batch paid `total` to `payee` in one transfer.
    /// @param items One 20-byte record per paid voucher, in batch order:
    /// channelId u32 | cumulative u64 (the channel's new paid total) | amount u64 (paid now).
    event Redeemed(uint32 indexed route, address indexed payee, uint256 total, bytes items);

    /// @notice The voucher at position `index` of a redeem batch paid nothing, for `reason`.
    event VoucherSkipped(uint32 indexed channelId, uint256 index, uint64 cumulative, SkipReason reason);

    /// @notice After expiry the payer took back `refund` (deposit minus paid) and closed the channel.
    event ChannelReclaimed(uint32 indexed channelId, address indexed payer, uint64 refund);

    // ------------------------------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------------------------------

    error ZeroAddress();
    error ZeroAmount();
    error ExpiryNotInFuture(uint40 expiry, uint256 nowTimestamp);
    error ExpiryNotExtended(uint40 current, uint40 requested);
    error DepositOverflow(uint256 deposit);
    error UnsupportedToken(address token, uint256 expected, uint256 received);
    error PermitFailed(address token);
    error UnknownChannel(uint32 channelId);
    error UnknownRoute(uint32 route);
    error NotPayer(uint32 channelId, address caller);
    error ChannelClosed(uint32 channelId);
    error NotExpired(uint32 channelId, uint40 expiry);
    error ChannelIdsExhausted();
    error RouteIdsExhausted();
    error EmptyBatch();
    error MalformedBatch(uint256 length);
    error BatchTooLarge(uint256 count, uint256 max);
    error LengthMismatch(uint256 channels, uint256 amounts);
    error MixedTokens(uint32 channelId, address token, address expected);

    constructor() EIP712("nanotoll", "1") {}

    // ------------------------------------------------------------------------------------------
    // Opening and funding
    // ------------------------------------------------------------------------------------------

    /// @notice Open a channel funded by the caller, who becomes its payer.
    /// @param signer The device key whose vouchers pay from this channel.
    /// @param payee Who redeemed vouchers pay.
    /// @param token The ERC-20 to lock; the caller must have approved `deposit`.
    /// @param deposit Amount locked, in token units (> 0).
    /// @param expiry Unix time from which vouchers stop paying and the payer may reclaim.
    /// @return channelId The new channel's id.
    function open(address signer, address payee, address token, uint64 deposit, uint40 expiry)
        external
        nonReentrant
        returns (uint32 channelId)
    {
        channelId = _open(signer, _route(payee, token), deposit, expiry);
        _pull(token, deposit);
    }

    /// @notice `open`, approving the escrow through the token's EIP-2612 permit in the same call.
    /// @dev If the permit call fails (for instance because someone already submitted the same
    /// permit), opening goes on as long as the allowance already covers the deposit.
    function openWithPermit(
        address signer,
        address payee,
        address token,
        uint64 deposit,
        uint40 expiry,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint32 channelId) {
        _permit(token, deposit, permitDeadline, v, r, s);
        channelId = _open(signer, _route(payee, token), deposit, expiry);
        _pull(token, deposit);
    }

    /// @notice Open many channels in one token, all funded by the caller with one transfer.
    /// @dev The channels get consecutive ids `firstId .. firstId + params.length - 1`, which also
    /// puts them on shared ledger slots (cheaper to redeem together).
    /// @return firstId Id of the first channel opened.
    function openMany(address token, OpenParams[] calldata params)
        external
        nonReentrant
        returns (uint32 firstId)
    {
        uint256 n = params.length;
        if (n == 0) revert ZeroAmount();
        uint256 total;
        address lastPayee;
        uint32 route;
        for (uint256 i; i < n; ++i) {
            OpenParams calldata p = params[i];
            if (i == 0 || p.payee != lastPayee) {
                route = _route(p.payee, token);
                lastPayee = p.payee;
            }
            uint32 id = _open(p.signer, route, p.deposit, p.expiry);
            if (i == 0) firstId = id;
            total += p.deposit;
        }
        _pull(token, total);
    }

    /// @notice Add `amount` to a channel's deposit. Only the payer; not after reclaim.
    function topUp(uint32 channelId, uint64 amount) external nonReentrant {
        uint32 route = _addDeposit(channelId, amount);
        _pull(_routes[route].token, amount);
    }

    /// @notice Add `amounts[i]` to channel `channelIds[i]`'s deposit for every i, with one token
    /// transfer for the sum. The caller must be the payer of every channel, none may be
    /// reclaimed, and all must lock the same token; otherwise nothing changes.
    /// @dev Emits `ChannelToppedUp` per channel, as `topUp` does. Ids listed in increasing order
    /// share ledger slots two by two, which makes the second write of a slot warm.
    /// @param channelIds The channels to fund (at most `MAX_FUNDING_BATCH`).
    /// @param amounts One amount (> 0) per channel, in token units.
    function topUpMany(uint32[] calldata channelIds, uint64[] calldata amounts) external nonReentrant {
        uint256 n = _checkBatch(channelIds.length, amounts.length);
        uint32 route = _addDeposit(channelIds[0], amounts[0]);
        uint256 total = amounts[0];
        for (uint256 i = 1; i < n; ++i) {
            uint32 next = _addDeposit(channelIds[i], amounts[i]);
            // Routes differ between payees of one token, so compare the tokens themselves.
            if (next != route && _routes[next].token != _routes[route].token) {
                revert MixedTokens(channelIds[i], _routes[next].token, _routes[route].token);
            }
            total += amounts[i]; // n <= 1000 amounts of 64 bits each: no overflow
        }
        _pull(_routes[route].token, total);
    }

    /// @notice Move a channel's expiry later. Only the payer; not after reclaim. A channel that
    /// has lapsed but was not reclaimed can be revived this way.
    function extendExpiry(uint32 channelId, uint40 expiry) external {
        _extend(channelId, expiry);
    }

    /// @notice Move the expiry of every channel in `channelIds` to `expiry`. The caller must be
    /// the payer of every channel, none may be reclaimed, and `expiry` must be later than each
    /// channel's current expiry; otherwise nothing changes.
    /// @dev Emits `ExpiryExtended` per channel, as `extendExpiry` does.
    /// @param channelIds The channels to extend (at most `MAX_FUNDING_BATCH`).
    /// @param expiry The new expiry of all of them (unix seconds).
    function extendMany(uint32[] calldata channelIds, uint40 expiry) external {
        uint256 n = _checkBatch(channelIds.length, channelIds.length);
        for (uint256 i; i < n; ++i) {
            _extend(channelIds[i], expiry);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Redeeming
    // ------------------------------------------------------------------------------------------

    /// @notice Redeem a batch of vouchers that all pay `route`'s payee in `route`'s token, and pay
    /// the payee the sum in one transfer. Anyone may submit a batch: vouchers only ever pay the
    /// payee of their own channel, so a relayer can pay the gas.
    /// @dev Each voucher pays `cumulative - paid` and sets the channel's paid total to
    /// `cumulative`, provided that the channel belongs to `route`, has not expired,
    /// `paid < cumulative <= deposit`, and the signature (EIP-2098, low-s) recovers to the
    /// channel's signer. Replay protection is the channel's paid total: a voucher never pays
    /// twice and an older voucher never pays after a newer one, whatever its signature bytes.
    ///
    /// A voucher that fails is skipped with a `VoucherSkipped` event instead of reverting the
    /// batch: a batch mixes channels of many payers, and one stale, late or forged item (a payer
    /// reclaiming at the wrong moment, a voucher already redeemed by a relayer, a misbehaving
    /// device) must not cost the payee the rest of the batch or the gas spent on it. Only
    /// malformed input (length not a multiple of 76, empty, more than `MAX_REDEEM_BATCH` items,
    /// unknown route) reverts.
    ///
    /// All state is written before the single token transfer at the end (checks-effects-
    /// interactions), and the function is guarded against re-entry.
    /// @param route The (payee, token) route every voucher of the batch must belong to.
    /// @param vouchers N × 76 packed vouchers.
    /// @return total Amount transferred to the payee.
    function redeem(uint32 route, bytes calldata vouchers) external nonReentrant returns (uint256 total) {
        uint256 len = vouchers.length;
        uint256 n = len / VOUCHER_BYTES;
        if (len == 0) revert EmptyBatch();
        if (n * VOUCHER_BYTES != len) revert MalformedBatch(len);
        if (n > MAX_REDEEM_BATCH) revert BatchTooLarge(n, MAX_REDEEM_BATCH);
        Route memory rt = _routes[route];
        if (rt.payee == address(0)) revert UnknownRoute(route);

        bytes32 separator = _domainSeparatorV4();
        // Event records are written into one buffer allocated up front; its length is trimmed
        // to what was actually written before emitting. 32 spare bytes let each record be
        // written with a single full-word mstore.
        bytes memory items = new bytes(n * REDEEMED_RECORD_BYTES + 32);
        uint256 written;
        uint256 base;
        assembly ("memory-safe") {
            base := vouchers.offset
        }

        for (uint256 i; i < n; ++i) {
            uint256 record = _redeemItem(base + i * VOUCHER_BYTES, i, route, separator);
            if (record != 0) {
                unchecked {
                    total += record & _U64; // at most 1000 * 2^64: cannot overflow
                    // Store the 160-bit record in the top bits of a word at the write position;
                    // the next record overwrites the 12 trailing zero bytes.
                    assembly ("memory-safe") {
                        mstore(add(add(items, 0x20), written), shl(96, record))
                    }
                    written += REDEEMED_RECORD_BYTES;
                }
            }
        }

        if (total != 0) {
            assembly ("memory-safe") {
                mstore(items, written) // trim the buffer to the records written
            }
            emit Redeemed(route, rt.payee, total, items);
            // Interaction last: one transfer for the whole batch.
            IERC20(rt.token).safeTransfer(rt.payee, total);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Reclaiming
    // ------------------------------------------------------------------------------------------

    /// @notice After expiry, the payer takes back what was not redeemed and closes the channel.
    /// @dev A closed channel cannot be topped up or extended, so its expiry stays in the past and
    /// no voucher can pay from it again (redeem checks expiry before anything else that pays).
    /// @return refund Amount sent back to the payer (deposit minus paid).
    function reclaim(uint32 channelId) external nonReentrant returns (uint64 refund) {
        Owner storage o = _owners[channelId];
        address payer = o.payer;
        if (payer == address(0)) revert UnknownChannel(channelId);
        if (payer != msg.sender) revert NotPayer(channelId, msg.sender);
        if (o.closed) revert ChannelClosed(channelId);
        Terms memory t = _terms[channelId];
        if (block.timestamp < t.expiry) revert NotExpired(channelId, t.expiry);
        (uint256 pairIndex, uint256 shift) = _ledgerPosition(channelId);
        uint256 word = _ledger[pairIndex] >> shift;
        refund = uint64(((word >> 64) & _U64) - (word & _U64));
        o.closed = true;
        emit ChannelReclaimed(channelId, payer, refund);
        if (refund != 0) IERC20(_routes[t.route].token).safeTransfer(payer, refund);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /// @notice Everything known about a channel; all zero for an unknown id.
    function channel(uint32 channelId)
        external
        view
        returns (
            address payer,
            address signer,
            address payee,
            address token,
            uint32 route,
            uint64 deposit,
            uint64 paid,
            uint40 expiry,
            bool closed
        )
    {
        Owner memory o = _owners[channelId];
        Terms memory t = _terms[channelId];
        Route memory rt = _routes[t.route];
        (uint256 pairIndex, uint256 shift) = _ledgerPosition(channelId);
        uint256 word = _ledger[pairIndex] >> shift;
        // casting to 'uint64' is safe because both values are masked to 64 bits
        // forge-lint: disable-start(unsafe-typecast)
        return (
            o.payer,
            t.signer,
            rt.payee,
            rt.token,
            t.route,
            uint64((word >> 64) & _U64),
            uint64(word & _U64),
            t.expiry,
            o.closed
        );
        // forge-lint: disable-end(unsafe-typecast)
    }

    /// @notice The payee and token of a route.
    function routeInfo(uint32 route) external view returns (address payee, address token) {
        Route memory rt = _routes[route];
        return (rt.payee, rt.token);
    }

    /// @notice The route id of (payee, token), or 0 if no channel uses that pair yet.
    function routeOf(address payee, address token) external view returns (uint32) {
        return _routeIds[payee][token];
    }

    /// @notice The EIP-712 domain separator for the current chain id and this contract.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The EIP-712 digest a device signs for `(channelId, cumulative)`.
    function voucherDigest(uint32 channelId, uint64 cumulative) external view returns (bytes32) {
        return _voucherDigest(_domainSeparatorV4(), channelId, cumulative);
    }

    /// @notice The EIP-712 digest of a provider receipt (signed off-chain, never checked here).
    function receiptDigest(uint32 channelId, uint64 cumulative, bytes32 requestHash, bytes32 dataHash)
        external
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(RECEIPT_TYPEHASH, channelId, cumulative, requestHash, dataHash)));
    }

    /// @notice The largest batch `redeem` accepts (same as `MAX_REDEEM_BATCH`).
    function maxRedeemBatch() external pure returns (uint256) {
        return MAX_REDEEM_BATCH;
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    function _open(address signer, uint32 route, uint64 deposit, uint40 expiry) private returns (uint32 id) {
        if (signer == address(0)) revert ZeroAddress();
        if (deposit == 0) revert ZeroAmount();
        if (expiry <= block.timestamp) revert ExpiryNotInFuture(expiry, block.timestamp);
        uint32 last = lastChannelId;
        if (last == type(uint32).max) revert ChannelIdsExhausted();
        unchecked {
            id = last + 1;
        }
        lastChannelId = id;
        _terms[id] = Terms({signer: signer, expiry: expiry, route: route});
        _owners[id] = Owner({payer: msg.sender, closed: false});
        (uint256 pairIndex, uint256 shift) = _ledgerPosition(id);
        // A fresh id's half of the ledger word is zero: paid = 0, deposit = deposit.
        _ledger[pairIndex] |= uint256(deposit) << (shift + 64);
        emit ChannelOpened(id, msg.sender, signer, route, deposit, expiry);
    }

    /// @dev The route id of (payee, token), created on first use.
    function _route(address payee, address token) private returns (uint32 id) {
        if (payee == address(0) || token == address(0)) revert ZeroAddress();
        id = _routeIds[payee][token];
        if (id == 0) {
            uint32 last = lastRouteId;
            if (last == type(uint32).max) revert RouteIdsExhausted();
            unchecked {
                id = last + 1;
            }
            lastRouteId = id;
            _routeIds[payee][token] = id;
            _routes[id] = Route({payee: payee, token: token});
            emit RouteCreated(id, payee, token);
        }
    }

    /// @dev Pull `amount` from the caller and refuse tokens whose balance does not move by
    /// exactly `amount` (fee-on-transfer, rebasing on transfer, ...). Runs after the state
    /// writes; the whole call reverts if the token misbehaves.
    function _pull(address token, uint256 amount) private {
        IERC20 t = IERC20(token);
        uint256 before = t.balanceOf(address(this));
        t.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = t.balanceOf(address(this)) - before;
        if (received != amount) revert UnsupportedToken(token, amount, received);
    }

    function _permit(address token, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) private {
        try IERC20Permit(token).permit(msg.sender, address(this), amount, deadline, v, r, s) {}
        catch {
            if (IERC20(token).allowance(msg.sender, address(this)) < amount) revert PermitFailed(token);
        }
    }

    /// @dev Raise an open channel's deposit by `amount` for its payer (the caller); the token is
    /// pulled by the caller of this function. Returns the channel's route.
    function _addDeposit(uint32 channelId, uint64 amount) private returns (uint32 route) {
        if (amount == 0) revert ZeroAmount();
        Owner memory o = _ownerOf(channelId);
        if (o.payer != msg.sender) revert NotPayer(channelId, msg.sender);
        if (o.closed) revert ChannelClosed(channelId);
        (uint256 pairIndex, uint256 shift) = _ledgerPosition(channelId);
        uint256 word = _ledger[pairIndex];
        uint256 deposit = ((word >> (shift + 64)) & _U64) + amount;
        if (deposit > _U64) revert DepositOverflow(deposit);
        _ledger[pairIndex] = (word & ~(_U64 << (shift + 64))) | (deposit << (shift + 64));
        // casting to 'uint64' is safe because deposit <= _U64 was checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        emit ChannelToppedUp(channelId, amount, uint64(deposit));
        route = _terms[channelId].route;
    }

    /// @dev Move an open channel's expiry later, for its payer (the caller).
    function _extend(uint32 channelId, uint40 expiry) private {
        Owner memory o = _ownerOf(channelId);
        if (o.payer != msg.sender) revert NotPayer(channelId, msg.sender);
        if (o.closed) revert ChannelClosed(channelId);
        Terms storage t = _terms[channelId];
        uint40 current = t.expiry;
        if (expiry <= current) revert ExpiryNotExtended(current, expiry);
        t.expiry = expiry;
        emit ExpiryExtended(channelId, expiry);
    }

    /// @dev The length of a funding batch, refused when empty, too long or unpaired.
    function _checkBatch(uint256 channels, uint256 amounts) private pure returns (uint256) {
        if (channels == 0) revert EmptyBatch();
        if (channels != amounts) revert LengthMismatch(channels, amounts);
        if (channels > MAX_FUNDING_BATCH) revert BatchTooLarge(channels, MAX_FUNDING_BATCH);
        return channels;
    }

    function _ownerOf(uint32 channelId) private view returns (Owner memory o) {
        o = _owners[channelId];
        if (o.payer == address(0)) revert UnknownChannel(channelId);
    }

    function _ledgerPosition(uint256 channelId) private pure returns (uint256 pairIndex, uint256 shift) {
        return (channelId >> 1, (channelId & 1) << 7);
    }

    function _voucherDigest(bytes32 separator, uint256 channelId, uint256 cumulative)
        private
        pure
        returns (bytes32 digest)
    {
        bytes32 structHash;
        bytes32 typeHash = VOUCHER_TYPEHASH;
        // keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulative)) in scratch memory past
        // the free memory pointer (not allocated: nothing else is written in between).
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typeHash)
            mstore(add(p, 0x20), channelId)
            mstore(add(p, 0x40), cumulative)
            structHash := keccak256(p, 0x60)
        }
        digest = MessageHashUtils.toTypedDataHash(separator, structHash);
    }

    function _signedBy(bytes32 separator, uint256 channelId, uint256 cumulative, bytes32 r, bytes32 vs, address signer)
        private
        pure
        returns (bool)
    {
        (address recovered, ECDSA.RecoverError err,) =
            ECDSA.tryRecover(_voucherDigest(separator, channelId, cumulative), r, vs);
        return err == ECDSA.RecoverError.NoError && recovered == signer;
    }

    /// @dev Check and apply the voucher at calldata offset `p` (position `index` in the batch).
    /// @return record 0 if skipped, else channelId (bits 159..128) | cumulative (127..64) |
    /// amount paid (63..0), amount > 0.
    function _redeemItem(uint256 p, uint256 index, uint256 route, bytes32 separator)
        private
        returns (uint256 record)
    {
        uint256 channelId;
        uint256 cumulative;
        bytes32 r;
        bytes32 vs;
        // Calldata decoding: the item's first word holds channelId (bits 255..224) and
        // cumulative (bits 223..160) followed by the first 20 bytes of r, so r and vs are read at
        // offsets 12 and 44. The caller checked that the whole item lies inside the argument.
        assembly ("memory-safe") {
            let w := calldataload(p)
            channelId := shr(224, w)
            cumulative := and(shr(160, w), 0xffffffffffffffff)
            r := calldataload(add(p, 12))
            vs := calldataload(add(p, 44))
        }

        // Cold read 1: the channel's terms (signer, expiry, route), never written here.
        uint256 terms;
        assembly ("memory-safe") {
            mstore(0x00, channelId)
            mstore(0x20, _terms.slot)
            terms := sload(keccak256(0x00, 0x40))
        }
        if ((terms >> 200) != route) {
            _skip(channelId, index, cumulative, terms == 0 ? SkipReason.UnknownChannel : SkipReason.WrongRoute);
            return 0;
        }
        if (block.timestamp >= ((terms >> 160) & 0xffffffffff)) {
            _skip(channelId, index, cumulative, SkipReason.Expired);
            return 0;
        }

        // Cold read 2 (warm for the second channel of a pair): paid and deposit.
        uint256 slot;
        uint256 word;
        uint256 shift = (channelId & 1) << 7; // 0 or 128
        assembly ("memory-safe") {
            mstore(0x00, shr(1, channelId))
            mstore(0x20, _ledger.slot)
            slot := keccak256(0x00, 0x40)
            word := sload(slot)
        }
        uint256 paid = (word >> shift) & _U64;
        if (cumulative <= paid) {
            _skip(channelId, index, cumulative, SkipReason.Stale);
            return 0;
        }
        if (cumulative > ((word >> (shift + 64)) & _U64)) {
            _skip(channelId, index, cumulative, SkipReason.OverDeposit);
            return 0;
        }

        // Signature last: it is the most expensive check. The signer is the low 160 bits of terms.
        // casting to 'uint160' is safe because it keeps exactly the signer field
        // forge-lint: disable-next-line(unsafe-typecast)
        if (!_signedBy(separator, channelId, cumulative, r, vs, address(uint160(terms)))) {
            _skip(channelId, index, cumulative, SkipReason.BadSignature);
            return 0;
        }

        // Effect: the new paid total replaces the old one in place (the XOR only touches this
        // channel's 64-bit paid field, since both values fit in 64 bits).
        assembly ("memory-safe") {
            sstore(slot, xor(word, shl(shift, xor(paid, cumulative))))
        }
        unchecked {
            record = (channelId << 128) | (cumulative << 64) | (cumulative - paid);
        }
    }

    function _skip(uint256 channelId, uint256 index, uint256 cumulative, SkipReason reason) private {
        // casting is safe because both were decoded from 4 and 8 calldata bytes
        // forge-lint: disable-next-line(unsafe-typecast)
        emit VoucherSkipped(uint32(channelId), index, uint64(cumulative), reason);
    }
}
