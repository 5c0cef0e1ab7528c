pragma solidity ^0.6.0;

contract Killable {
    address payable owner;

    modifier onlyOwner() {
        require(msg.sender == owner, "owner only");
        _;
    }

    constructor() public {
        owner = msg.sender;
    }

    function kill() external onlyOwner {
        selfdestruct(owner);
    }
}
