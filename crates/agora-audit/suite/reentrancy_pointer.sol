pragma solidity ^0.4.24;

contract Vault {
    struct Account { uint balance; uint since; }
    mapping(address => Account) public accounts;

    function put() public payable {
        Account storage acc = accounts[msg.sender];
        acc.balance += msg.value;
        acc.since = now;
    }

    // The balance is reduced through a storage pointer, after the call.
    function collect(uint amount) public {
        Account storage acc = accounts[msg.sender];
        if (acc.balance >= amount) {
            if (msg.sender.call.value(amount)()) {
                acc.balance -= amount;
            }
        }
    }
}
