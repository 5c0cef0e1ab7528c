// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

// Only the owner takes tips out; a barista takes only what was set aside for them.
contract TipJar {
    address public owner = msg.sender;
    mapping(address => uint256) public owed;

    receive() external payable {}

    function cashOut() external {
        require(msg.sender == owner, "owner only");
        payable(msg.sender).transfer(address(this).balance);
    }

    function setAside(address barista) external payable {
        owed[barista] += msg.value;
    }

    function payBarista(address payable barista) public {
        uint256 amount = owed[barista];
        owed[barista] = 0;
        barista.transfer(amount);
    }
}
