pragma solidity ^0.4.25;

contract Airdrop {
    address[] public holders;
    mapping(address => uint) public balance;

    function join() public {
        holders.push(msg.sender);
    }

    function reward() public {
        for (uint i = 0; i < holders.length; i++) {
            balance[holders[i]] = balance[holders[i]] + 1;
        }
    }
}
