// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

// Both contracts inherit one storage layout: the library's code finds the time where the
// caller keeps it.
contract ClockStorage {
    address public library_;
    address public owner;
    uint256 storedTime;
}

contract TimeLibrary is ClockStorage {
    function setTime(uint256 time) public {
        storedTime = time;
    }
}

contract Clock is ClockStorage {
    constructor(address lib) {
        library_ = lib;
        owner = msg.sender;
    }

    function setTime(uint256 time) public {
        (bool ok, ) = library_.delegatecall(abi.encodeCall(TimeLibrary.setTime, (time)));
        require(ok);
    }
}
