pragma solidity ^0.4.24;

contract Wallet {
    address owner;

    constructor() public {
        owner = msg.sender;
    }

    function transferTo(address dest, uint amount) public {
        require(msg.sender == owner);
        // Accounts only, not contracts: this asks what the caller is, not who.
        require(msg.sender == tx.origin);
        dest.transfer(amount);
    }
}
