// SPDX-License-Identifier: MIT
pragma solidity ^0.8.4;

contract Vault {
    mapping(address => uint256) public balances;

    function deposit() external payable {
        balances[msg.sender] += msg.value;
    }

    function withdraw(uint256 amount) external {
        unchecked {
            balances[msg.sender] -= amount;
        }
        payable(msg.sender).transfer(amount);
    }
}
