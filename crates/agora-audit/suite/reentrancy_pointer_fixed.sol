pragma solidity ^0.4.24;

contract Vault {
    struct Account { uint balance; uint since; }
    mapping(address => Account) public accounts;

    function put() public payable {
        Account storage acc = accounts[msg.sender];
        acc.balance += msg.value;
        acc.since = now;
    }

    function collect(uint amount) public {
        Account storage acc = accounts[msg.sender];
        require(acc.balance >= amount);
        acc.balance -= amount;
        require(msg.sender.call.value(amount)());
    }
}
