// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

// Every function that touches a balance holds the lock: nothing can run during the call
// that reads the balance `withdraw` clears after it. `refund` takes its own lock by hand.
contract Bank {
    uint256 private constant NOT_ENTERED = 1;
    uint256 private constant ENTERED = 2;
    uint256 private status = NOT_ENTERED;
    bool private refunding;
    mapping(address => uint256) public balances;
    mapping(address => uint256) public refunds;

    modifier nonReentrant() {
        before();
        _;
        status = NOT_ENTERED;
    }

    function before() private {
        require(status != ENTERED, "reentrant call");
        status = ENTERED;
    }

    function deposit() external payable nonReentrant {
        balances[msg.sender] += msg.value;
    }

    function move(address to, uint256 amount) external nonReentrant {
        require(balances[msg.sender] >= amount);
        balances[msg.sender] -= amount;
        balances[to] += amount;
    }

    function withdraw() external nonReentrant {
        uint256 amount = balances[msg.sender];
        (bool ok, ) = msg.sender.call{value: amount}("");
        require(ok);
        balances[msg.sender] = 0;
    }

    function refund() external {
        require(!refunding);
        refunding = true;
        (bool ok, ) = msg.sender.call{value: refunds[msg.sender]}("");
        require(ok);
        refunding = false;
    }
}
