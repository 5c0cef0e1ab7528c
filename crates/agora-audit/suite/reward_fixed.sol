pragma solidity ^0.4.24;

// The reward is fixed when the bounty is made: no transaction can change it under a claim.
contract Bounty {
    address public owner;
    uint public reward;
    bool public claimed;

    function Bounty() public payable {
        owner = msg.sender;
        reward = msg.value;
    }

    function claim(uint answer) public {
        require(!claimed && answer * answer == 1369);
        claimed = true;
        msg.sender.transfer(reward);
    }
}
