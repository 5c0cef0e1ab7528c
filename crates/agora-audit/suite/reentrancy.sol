pragma solidity ^0.4.19;

contract Bank {
    mapping(address => uint) public balances;

    function deposit() public payable {
        balances[msg.sender] += msg.value;
    }

    function withdraw(uint amount) public {
        if (balances[msg.sender] >= amount) {
            if (msg.sender.call.value(amount)()) {
                balances[msg.sender] -= amount;
            }
        }
    }
}
