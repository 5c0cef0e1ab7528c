// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

// The library contract keeps the time in its first slot; the caller keeps the library's
// address there. `setTime` through delegatecall overwrites the address with a number the
// caller chose: the next call runs whatever code lives at that number.
contract TimeLibrary {
    uint256 storedTime;

    function setTime(uint256 time) public {
        storedTime = time;
    }
}

contract Clock {
    address public library_;
    address public owner;
    uint256 storedTime;

    constructor(address lib) {
        library_ = lib;
        owner = msg.sender;
    }

    function setTime(uint256 time) public {
        (bool ok, ) = library_.delegatecall(abi.encodeWithSignature("setTime(uint256)", time));
        require(ok);
    }
}
