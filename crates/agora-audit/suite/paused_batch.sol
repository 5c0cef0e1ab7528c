pragma solidity ^0.4.24;

contract PausableToken {
    address public owner;
    bool public paused;
    mapping(address => uint) public balances;

    modifier whenNotPaused() {
        require(!paused);
        _;
    }

    modifier onlyOwner() {
        require(msg.sender == owner);
        _;
    }

    function PausableToken() public {
        owner = msg.sender;
    }

    function pause() public onlyOwner {
        paused = true;
    }

    // `whenNotPaused` checks nothing about the caller: the count times the value wraps.
    function batchSend(address[] to, uint value) public whenNotPaused returns (bool) {
        uint total = to.length * value;
        require(balances[msg.sender] >= total);
        balances[msg.sender] -= total;
        for (uint i = 0; i < to.length; i++) {
            balances[to[i]] += value;
        }
        return true;
    }
}
