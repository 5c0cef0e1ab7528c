pragma solidity ^0.4.10;

library SafeMath {
    function sub(uint a, uint b) internal pure returns (uint) { require(b <= a); return a - b; }
    function add(uint a, uint b) internal pure returns (uint) { uint c = a + b; require(c >= a); return c; }
}

contract Token {
    using SafeMath for uint;
    mapping(address => uint) balances;

    function transfer(address _to, uint _value) public returns (bool) {
        balances[msg.sender] = balances[msg.sender].sub(_value);
        balances[_to] = balances[_to].add(_value);
        return true;
    }
}
