// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

// A tip jar whose owner forgot to restrict the way out.
contract TipJar {
    address public owner = msg.sender;

    receive() external payable {}

    function cashOut() external {
        payable(msg.sender).transfer(address(this).balance);
    }

    function payBarista(address payable barista, uint256 amount) public {
        barista.transfer(amount);
    }
}
