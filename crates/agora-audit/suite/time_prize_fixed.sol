// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

// No second decides anything: each player takes back their own stake.
contract Round {
    mapping(address => uint256) public stake;

    function join() external payable {
        stake[msg.sender] += msg.value;
    }

    function leave() external {
        uint256 amount = stake[msg.sender];
        stake[msg.sender] = 0;
        payable(msg.sender).transfer(amount);
    }
}
