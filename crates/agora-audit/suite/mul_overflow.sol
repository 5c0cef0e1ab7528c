pragma solidity ^0.4.19;

contract Multiplier {
    uint public count = 2;
    mapping(address => uint) public credit;

    function run(uint256 input) public {
        uint res = count * input;
        credit[msg.sender] = res;
    }
}
