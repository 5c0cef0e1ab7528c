pragma solidity ^0.4.24;

contract Draw {
    struct Ticket { address player; uint blockNumber; }
    mapping(address => Ticket) public tickets;

    function buy() public payable {
        require(msg.value == 0.01 ether);
        tickets[msg.sender] = Ticket(msg.sender, block.number);
    }

    // The outcome comes from a block hash anyone can read (and, after 256 blocks, is zero).
    function settle() public {
        Ticket storage t = tickets[msg.sender];
        uint outcome = uint(blockhash(t.blockNumber + 1)) & 0xff;
        if (outcome < 16) {
            msg.sender.transfer(0.1 ether);
        }
        delete tickets[msg.sender];
    }

    function randomPick(uint n) internal view returns (uint) {
        uint seed = block.number * 7;
        return seed / 3 % n;
    }
}
