// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

interface IClaimer {
    function accepts() external returns (bool);
}

// `once` reads the claim, then `acceptsTokens` asks the caller's contract, which can claim
// again from inside `accepts()`: the claim is still zero until the body writes it.
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

    function claim() external once acceptsTokens {
        claimed[msg.sender] += 10;
    }
}
