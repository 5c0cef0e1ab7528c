pragma solidity ^0.4.24;

contract Bounty {
    address public owner;
    uint public reward;
    bool public claimed;

    function Bounty() public {
        owner = msg.sender;
    }

    // The owner can see a winning claim in the mempool and cut the reward first.
    function setReward() public payable {
        require(msg.sender == owner && !claimed);
        owner.transfer(reward);
        reward = msg.value;
    }

    function claim(uint answer) public {
        require(!claimed && answer * answer == 1369);
        claimed = true;
        msg.sender.transfer(reward);
    }
}
