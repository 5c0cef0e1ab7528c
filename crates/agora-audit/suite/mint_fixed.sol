pragma solidity ^0.4.24;

contract Points {
    address public owner;
    mapping(address => uint) public points;
    uint public total;

    function Points() public {
        owner = msg.sender;
    }

    // Only the owner awards points, and never more than a cap.
    function award(address to, uint amount) public {
        require(msg.sender == owner);
        require(amount <= 1000);
        points[to] += amount;
        total += amount;
    }

    function give(address to, uint amount) public {
        require(points[msg.sender] >= amount);
        points[msg.sender] -= amount;
        points[to] += amount;
    }
}
