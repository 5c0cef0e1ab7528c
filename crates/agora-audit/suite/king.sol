pragma solidity ^0.4.24;

contract KingOfTheEther {
    address public king;
    uint public prize;

    function claimThrone() public payable {
        require(msg.value > prize);
        king.transfer(prize);
        king = msg.sender;
        prize = msg.value;
    }
}
