pragma solidity ^0.5.0;

contract Phishable {
    address payable public owner;

    modifier onlyOwner() {
        require(msg.sender == owner);
        _;
    }

    constructor(address payable _owner) public {
        owner = _owner;
    }

    function withdrawAll(address payable _recipient) public onlyOwner {
        _recipient.transfer(address(this).balance);
    }
}
