// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

interface IClaimer {
    function accepts() external returns (bool);
}

// The caller's contract is asked first; the claim is read after it answers, so a claim
// made from inside `accepts()` is seen and the outer one fails.
contract Faucet {
    mapping(address => uint256) public claimed;

    modifier once() {
        require(claimed[msg.sender] == 0);
        _;
    }

    modifier acceptsTokens() {
        require(IClaimer(msg.sender).accepts());
        _;
    }

    function claim() external acceptsTokens once {
        claimed[msg.sender] += 10;
    }
}
