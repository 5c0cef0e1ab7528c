pragma solidity ^0.4.24;

contract Distributor {
    address[] public payees;
    address owner;

    constructor() public { owner = msg.sender; }

    function addPayee(address p) public {
        require(msg.sender == owner);
        payees.push(p);
    }

    function distribute() public {
        for (uint i = 0; i < payees.length; i++) {
            payees[i].call.value(1 ether)();
        }
    }
}
