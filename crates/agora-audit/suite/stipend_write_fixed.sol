pragma solidity ^0.4.24;

// The record is cleared before the ether leaves (checks-effects-interactions).
contract Refunds {
    mapping(address => uint) public refunds;

    function deposit() public payable {
        refunds[msg.sender] += msg.value;
    }

    function refund() public {
        uint due = refunds[msg.sender];
        refunds[msg.sender] = 0;
        msg.sender.transfer(due);
    }
}
