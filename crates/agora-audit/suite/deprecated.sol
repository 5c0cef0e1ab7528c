pragma solidity ^0.4.11;

contract Old {
    address owner;
    uint total;

    function Old() {
        owner = msg.sender;
    }

    function add(uint x) constant returns (uint) {
        var y = x;
        if (y == 0) throw;
        return uint(sha3(y));
    }

    function kill() {
        if (msg.sender != owner) throw;
        suicide(owner);
    }
}
