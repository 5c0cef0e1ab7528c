pragma solidity ^0.4.24;

contract Locked {
    function receive() public payable {
    }
}
