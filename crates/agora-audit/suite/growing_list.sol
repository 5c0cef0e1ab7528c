pragma solidity ^0.4.24;

// Every call adds ten entries, and paying out clears the whole list: once it is long enough,
// clearing it costs more gas than a block holds and the pot is stuck.
contract GrowingList {
    address[] public entries;

    function enter() public payable {
        require(msg.value == 0.1 ether);
        for (uint i = 0; i < 10; i++) {
            entries.push(msg.sender);
        }
    }

    function draw(uint winner) public {
        require(winner < entries.length);
        address w = entries[winner];
        entries = new address[](0);
        w.transfer(address(this).balance);
    }
}
