// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

interface IERC20 {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 value) external returns (bool);
}

// One heir's lock, both set when it is built: a miner who moves the time by seconds moves only
// when the heir is paid, never who is paid or how much.
contract HeirLock {
    IERC20 public immutable token;
    address payable public immutable heir;
    uint256 public immutable opensAt;

    constructor(IERC20 token_, address payable heir_, uint256 opensAt_) {
        token = token_;
        heir = heir_;
        opensAt = opensAt_;
    }

    receive() external payable {}

    function release() external {
        require(block.timestamp >= opensAt, "locked");
        token.transfer(heir, token.balanceOf(address(this)));
        heir.transfer(address(this).balance);
    }
}
