pragma solidity ^0.4.24;

// Forwards donations and counts them: the count is written after the call but decides nothing,
// and an amount paid out of the balance cannot overflow it.
contract Forwarder {
    address public charity;
    uint public totalDonated;

    function Forwarder(address c) public {
        charity = c;
    }

    function donate(uint amount) public {
        require(charity.call.value(amount)());
        totalDonated += amount;
    }

    function() public payable {}
}
