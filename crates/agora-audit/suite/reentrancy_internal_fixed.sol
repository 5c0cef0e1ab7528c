pragma solidity ^0.4.24;

contract Bonus {
    mapping(address => bool) public claimed;

    function pay(address to) internal {
        require(to.call.value(1 ether)());
    }

    function claim() public {
        require(!claimed[msg.sender]);
        claimed[msg.sender] = true;
        pay(msg.sender);
    }
}
