pragma solidity ^0.4.25;

contract Sale {
    uint public end = 1000;

    function buy() public payable {
        require(block.timestamp < end);
        if (now % 15 == 0) {
            msg.sender.transfer(1 ether);
        }
    }
}
