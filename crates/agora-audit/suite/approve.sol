pragma solidity ^0.4.24;

contract Token {
    mapping(address => uint256) balances;
    mapping(address => mapping(address => uint256)) allowed;

    function approve(address _spender, uint256 _value) public returns (bool) {
        allowed[msg.sender][_spender] = _value;
        return true;
    }
}
