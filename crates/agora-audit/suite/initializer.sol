pragma solidity ^0.4.23;

contract WalletLibrary {
    address public m_owner;

    function initWallet(address _owner) public {
        m_owner = _owner;
    }

    function execute(address _to, uint _value) external {
        require(msg.sender == m_owner);
        _to.transfer(_value);
    }
}
