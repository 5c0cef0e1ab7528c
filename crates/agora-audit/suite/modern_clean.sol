// SPDX-License-Identifier: MIT
pragma solidity ^0.7.6;

contract Escrow {
    address payable public immutable beneficiary;
    uint256 public released;
    event Released(uint256 amount);

    constructor(address payable b) {
        beneficiary = b;
    }

    receive() external payable {}

    function release() external {
        require(msg.sender == beneficiary, "not beneficiary");
        uint256 amount = address(this).balance;
        (bool ok, ) = beneficiary.call{value: amount}("");
        require(ok, "transfer failed");
        emit Released(amount);
    }
}
