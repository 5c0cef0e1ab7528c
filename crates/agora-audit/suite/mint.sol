pragma solidity ^0.4.24;

contract Points {
    address public owner;
    mapping(address => uint) public points;
    uint public total;

    function Points() public {
        owner = msg.sender;
    }

    // Anyone can add any amount: the balance and the total wrap around.
    function award(address to, uint amount) public {
        points[to] += amount;
        total += amount;
    }

    // Moving points between accounts after checking the sender has them cannot wrap.
    function give(address to, uint amount) public {
        require(points[msg.sender] >= amount);
        points[msg.sender] -= amount;
        points[to] += amount;
    }
}
