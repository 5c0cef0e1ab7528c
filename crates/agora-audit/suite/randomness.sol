pragma solidity ^0.4.25;

contract Roulette {
    uint public pastBlockTime;

    function spin() external payable {
        require(msg.value == 10 ether);
        uint random = uint(keccak256(abi.encodePacked(block.difficulty, now))) % 37;
        if (random == 0) {
            msg.sender.transfer(address(this).balance);
        }
    }

    function lucky() external view returns (bool) {
        return block.number % 2 == 0;
    }
}
