pragma solidity ^0.4.24;

// Refunds sent with `send`, the record cleared after: safe only while 2,300 gas cannot re-enter.
contract Refunds {
    mapping(address => uint) public refunds;

    function deposit() public payable {
        refunds[msg.sender] += msg.value;
    }

    function refund() public {
        uint due = refunds[msg.sender];
        if (msg.sender.send(due)) {
            refunds[msg.sender] = 0;
        }
    }
}
