// SPDX-License-Identifier: MIT
pragma solidity ^0.8.4;

// A level counter in a byte, updated without the compiler's checks.
contract Levels {
    uint8 public level;
    uint8 public floor;

    function climb(uint8 steps) external {
        unchecked {
            level += steps;
        }
    }

    function reset() external {
        uint8 start = 3;
        unchecked {
            start -= 5;
        }
        floor = start;
    }
}
