// SPDX-License-Identifier: MIT
pragma solidity ^0.8.4;

// Checked arithmetic: an overflow reverts.
contract Levels {
    uint8 public level;
    uint8 public floor;

    function climb(uint8 steps) external {
        level += steps;
    }

    function reset() external {
        uint8 start = 3;
        start -= 2;
        floor = start;
    }
}
