pragma solidity ^0.4.24;

contract Distributor {
    address owner;
    mapping(address => uint) public owed;

    constructor() public { owner = msg.sender; }

    function credit(address p) public {
        require(msg.sender == owner);
        owed[p] += 1 ether;
    }

    function claim() public {
        uint amount = owed[msg.sender];
        owed[msg.sender] = 0;
        msg.sender.transfer(amount);
    }
}
