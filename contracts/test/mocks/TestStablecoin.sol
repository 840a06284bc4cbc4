// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title Test stablecoin for tests and the demo: 6 decimals, EIP-2612 permit, open minting.
/// @dev Never deploy this anywhere that matters: anyone can mint.
contract TestStablecoin is ERC20, ERC20Permit {
    constructor() ERC20("nanotoll Test USD", "tUSD") ERC20Permit("nanotoll Test USD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mint `amount` to `to`. Open to anyone (test token).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
