// SPDX-License-Identifier: MIT
pragma solidity ^0.8.10;

contract Vault {
    address public owner;
    mapping(address => uint256) public shares;

    function initialize(address _owner) external {
        owner = _owner;
    }

    function sweep(address payable to) external {
        require(msg.sender == owner, "owner");
        to.transfer(address(this).balance);
    }

    receive() external payable {
        shares[msg.sender] += msg.value;
    }
}
