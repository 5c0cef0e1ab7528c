pragma solidity ^0.4.24;

contract Deposits {
    mapping(address => uint) public balances;

    function deposit() public payable {
        balances[msg.sender] += msg.value;
    }

    // Pays the balance and keeps it: call again, get paid again.
    function refund() public {
        msg.sender.transfer(balances[msg.sender]);
    }

    // Checks the amount against the balance the wrong way round.
    function withdraw(uint amount) public {
        require(amount >= balances[msg.sender]);
        msg.sender.transfer(amount);
        balances[msg.sender] -= amount;
    }
}
