pragma solidity ^0.4.22;

contract CommitRevealPuzzle {
    bytes32 constant public hash = 0xb5b5b97fafd9855eec9b41f74dfb6c38f5951141f9a3ecd7f44d5479b630ee0a;
    mapping(address => bytes32) public commitments;
    mapping(address => uint) public committedAt;

    constructor() public payable {}

    function commit(bytes32 c) public {
        commitments[msg.sender] = c;
        committedAt[msg.sender] = block.number;
    }

    function reveal(string solution) public {
        require(block.number > committedAt[msg.sender]);
        require(keccak256(abi.encodePacked(msg.sender, solution)) == commitments[msg.sender]);
        require(hash == keccak256(abi.encodePacked(solution)));
        msg.sender.transfer(1000 ether);
    }
}
