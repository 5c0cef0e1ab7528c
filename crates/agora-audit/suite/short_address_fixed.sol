pragma solidity ^0.4.11;

contract MyToken {
    mapping(address => uint) balances;

    modifier onlyPayloadSize(uint size) {
        require(msg.data.length >= size + 4);
        _;
    }

    function MyToken() {
        balances[msg.sender] = 10000;
    }

    function sendCoin(address to, uint amount) onlyPayloadSize(2 * 32) returns (bool sufficient) {
        if (balances[msg.sender] < amount) return false;
        balances[msg.sender] -= amount;
        balances[to] += amount;
        return true;
    }
}
