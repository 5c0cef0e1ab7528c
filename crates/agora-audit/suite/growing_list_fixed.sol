pragma solidity ^0.4.24;

// One entry per call, and rounds are numbered instead of cleared: no call's gas grows with the
// number of entries.
contract GrowingList {
    mapping(uint => address[]) public entries;
    uint public round;

    function enter() public payable {
        require(msg.value == 0.1 ether);
        entries[round].push(msg.sender);
    }

    function draw(uint winner) public {
        require(winner < entries[round].length);
        address w = entries[round][winner];
        round += 1;
        w.transfer(address(this).balance);
    }
}
