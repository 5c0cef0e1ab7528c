// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

contract Payout {
    mapping(address => uint256) public owed;

    function pay(address payable to) external {
        uint256 amount = owed[to];
        owed[to] = 0;
        bool ok = to.send(amount);
        require(ok, "send failed");
    }
}
