pragma solidity ^0.4.0;

contract Lottery {
    event GetBet(uint betAmount, uint blockNumber, bool won);

    address private organizer;

    function Lottery() { organizer = msg.sender; }

    function makeBet() {
        bool won = (block.number % 2) == 0;
        if (won) {
            if (!msg.sender.send(msg.value)) {
                throw;
            }
        }
        GetBet(msg.value, block.number, won);
    }
}
