pragma solidity ^0.4.25;

contract Sale {
    uint public endBlock = 1000000;
    address public owner = msg.sender;
    mapping(address => uint) public bought;

    function buy() public payable {
        require(block.number < endBlock);
        bought[msg.sender] += msg.value;
    }

    function collect() public {
        require(msg.sender == owner);
        owner.transfer(address(this).balance);
    }
}
