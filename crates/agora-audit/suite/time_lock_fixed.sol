pragma solidity ^0.4.24;

// Each depositor's own weekly lock: a miner can shift it by seconds, which decides nothing.
contract TimeLock {
    mapping(address => uint) public balances;
    mapping(address => uint) public unlockAt;

    function deposit() public payable {
        balances[msg.sender] += msg.value;
        unlockAt[msg.sender] = now + 1 weeks;
    }

    function withdraw() public {
        require(now >= unlockAt[msg.sender]);
        uint amount = balances[msg.sender];
        balances[msg.sender] = 0;
        msg.sender.transfer(amount);
    }
}
