pragma solidity ^0.4.24;

contract KingOfTheEther {
    address public king;
    uint public prize;
    mapping(address => uint) public pending;

    function claimThrone() public payable {
        require(msg.value > prize);
        pending[king] += prize;
        king = msg.sender;
        prize = msg.value;
    }

    function withdraw() public {
        uint amount = pending[msg.sender];
        pending[msg.sender] = 0;
        msg.sender.transfer(amount);
    }
}
