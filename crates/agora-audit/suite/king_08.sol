// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

contract Auction {
    address payable public highestBidder;
    uint256 public highestBid;

    function bid() external payable {
        require(msg.value > highestBid, "too low");
        if (highestBidder != address(0)) {
            highestBidder.transfer(highestBid);
        }
        highestBidder = payable(msg.sender);
        highestBid = msg.value;
    }
}
