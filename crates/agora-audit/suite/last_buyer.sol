pragma solidity ^0.4.24;

// The last buyer before the round ends takes the pot: the miner of the closing block decides
// whether one more purchase still counts.
contract LastBuyer {
    address public lastBuyer;
    uint public roundEnd = 1546300800;

    function buy() public payable {
        require(msg.value == 1 ether);
        require(block.timestamp < roundEnd);
        lastBuyer = msg.sender;
    }

    function claim() public {
        require(block.timestamp >= roundEnd);
        lastBuyer.transfer(address(this).balance);
    }
}
