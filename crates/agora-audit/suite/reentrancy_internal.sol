pragma solidity ^0.4.24;

contract Bonus {
    mapping(address => bool) public claimed;

    function pay(address to) internal {
        require(to.call.value(1 ether)());
    }

    // The helper calls out before the claim is recorded.
    function claim() public {
        require(!claimed[msg.sender]);
        pay(msg.sender);
        claimed[msg.sender] = true;
    }
}
