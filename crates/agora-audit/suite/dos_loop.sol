pragma solidity ^0.4.24;

contract Refunder {
    address[] private refundAddresses;
    mapping(address => uint) public refunds;

    function refundAll() public {
        for (uint x = 0; x < refundAddresses.length; x++) {
            require(refundAddresses[x].send(refunds[refundAddresses[x]]));
        }
    }
}
