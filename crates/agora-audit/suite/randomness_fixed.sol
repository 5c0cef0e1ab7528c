pragma solidity ^0.8.0;

contract Commit {
    mapping(address => bytes32) public commits;

    function commit(bytes32 h) external {
        commits[msg.sender] = h;
    }

    function reveal(uint256 secret) external view returns (bool) {
        return keccak256(abi.encodePacked(secret)) == commits[msg.sender];
    }
}
