// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

// `withdraw` holds a lock, but `move` does not: during the call, the receiver moves the
// balance that `withdraw` has not cleared yet, and withdraws it again from another account.
contract Bank {
    uint256 private constant NOT_ENTERED = 1;
    uint256 private constant ENTERED = 2;
    uint256 private status = NOT_ENTERED;
    mapping(address => uint256) public balances;

    modifier nonReentrant() {
        before();
        _;
        status = NOT_ENTERED;
    }

    function before() private {
        require(status != ENTERED, "reentrant call");
        status = ENTERED;
    }

    function deposit() external payable {
        balances[msg.sender] += msg.value;
    }

    function move(address to, uint256 amount) external {
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
}
